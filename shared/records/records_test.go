package records

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// attributes lists the top-level dynamodbav names of a record type (a
// projection names top-level attributes; nested ones come with them).
func attributes(t reflect.Type, out map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeOf(Token{}).PkgPath() && !strings.Contains(t.PkgPath(), "kms-reimport") {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("dynamodbav"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
}

// TestReadableCoversEveryRecord: a projected read returns every attribute
// of every record but the import token and the wrapped material. A missing
// name would be dropped silently by a read, and lost by a read-modify-write.
func TestReadableCoversEveryRecord(t *testing.T) {
	secret := map[string]bool{"importToken": true, "encryptedKeyMaterial": true}
	for _, v := range []any{Token{}, Import{}, Material{}} {
		names := map[string]bool{}
		attributes(reflect.TypeOf(v), names)
		for n := range names {
			switch {
			case secret[n] && slices.Contains(Readable, n):
				t.Errorf("%T: %s is readable by every role; only the import stage may read it", v, n)
			case !secret[n] && !slices.Contains(Readable, n):
				t.Errorf("%T: attribute %s is not in Readable", v, n)
			}
		}
	}
}

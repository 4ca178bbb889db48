package registry

import (
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

func TestIsDue(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	cases := []struct {
		name string
		e    Entry
		due  bool
		why  string
	}{
		{"never imported", Entry{Status: Active, Policy: flow.Policy{RenewBefore: "336h", ValidFor: "2160h"}}, true, "never imported"},
		{"expired", Entry{Status: Active, CurrentValidTo: at(-time.Hour), LastSuccess: at(-90 * 24 * time.Hour), Policy: flow.Policy{RenewBefore: "336h"}}, true, "expired"},
		{"inside window", Entry{Status: Active, CurrentValidTo: at(10 * 24 * time.Hour), NextDue: at(-4 * 24 * time.Hour), LastSuccess: at(-time.Hour), Policy: flow.Policy{RenewBefore: "336h"}}, true, "within renew-before window"},
		{"not yet", Entry{Status: Active, CurrentValidTo: at(20 * 24 * time.Hour), NextDue: at(6 * 24 * time.Hour), LastSuccess: at(-time.Hour), Policy: flow.Policy{RenewBefore: "336h"}}, false, "not due"},
		{"no expiry", Entry{Status: Active, LastSuccess: at(-time.Hour), Policy: flow.Policy{ExpirationModel: flow.DoesNotExpire, RenewBefore: "336h"}}, false, "no expiry"},
		// Blocked keys are planned on every run, however far their expiry.
		{"blocked, not due by date", Entry{Status: Blocked, StatusReason: "KeyNotEligible: key is in state Disabled", CurrentValidTo: at(200 * 24 * time.Hour), NextDue: at(186 * 24 * time.Hour), LastSuccess: at(-time.Hour), Policy: flow.Policy{RenewBefore: "336h"}}, true, "blocked: KeyNotEligible"},
		{"blocked, never imported", Entry{Status: Blocked, StatusReason: "KeyNotFound: KMS key not found", Policy: flow.Policy{RenewBefore: "336h"}}, true, "blocked: KeyNotFound"},
		{"written ineligible by an earlier version", Entry{Status: Ineligible, StatusReason: "KeyNotFound: gone", Policy: flow.Policy{RenewBefore: "336h"}}, true, "blocked: KeyNotFound"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			due, why := c.e.IsDue(now)
			if due != c.due || why != c.why {
				t.Fatalf("IsDue = %v %q, want %v %q", due, why, c.due, c.why)
			}
		})
	}
}

func TestDue(t *testing.T) {
	v := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	e := Entry{CurrentValidTo: &v, Policy: flow.Policy{RenewBefore: "14d"}}
	if d := e.due(); d == nil || !d.Equal(v.Add(-14*24*time.Hour)) {
		t.Fatalf("due %v", d)
	}
}

func TestValidate(t *testing.T) {
	ok := Entry{KeyARN: "arn", SecretID: "s", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(*Entry)
		want string
	}{
		{"no key", func(e *Entry) { e.KeyARN = "" }, "key ARN"},
		{"bad renewBefore", func(e *Entry) { e.RenewBefore = "soon" }, "renewBefore"},
		{"validFor too long", func(e *Entry) { e.ValidFor = "400d" }, "365 days"},
		{"window too wide", func(e *Entry) { e.RenewBefore = "90d" }, "shorter than validFor"},
		{"no expiry with validFor", func(e *Entry) { e.ExpirationModel = flow.DoesNotExpire }, "conflicts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ok
			c.mod(&e)
			err := e.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

// TestReadableCoversTheRegistry: registry reads are projected on
// records.Readable; an attribute missing there would be lost when an entry
// is read, changed and written back.
func TestReadableCoversTheRegistry(t *testing.T) {
	typ := reflect.TypeOf(Entry{})
	var walk func(t2 reflect.Type)
	walk = func(t2 reflect.Type) {
		for t2.Kind() == reflect.Pointer || t2.Kind() == reflect.Slice || t2.Kind() == reflect.Map {
			t2 = t2.Elem()
		}
		if t2.Kind() != reflect.Struct || !strings.Contains(t2.PkgPath(), "kms-reimport") {
			return
		}
		for i := 0; i < t2.NumField(); i++ {
			f := t2.Field(i)
			if f.Anonymous && f.Tag.Get("dynamodbav") == "" {
				walk(f.Type) // flow.Policy: its attributes are the entry's
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("dynamodbav"), ","); name != "" && name != "-" && !slices.Contains(records.Readable, name) {
				t.Errorf("%s.%s: attribute %s is not in records.Readable", t2.Name(), f.Name, name)
			}
		}
	}
	walk(typ)
}

// TestAccountAndBudget: an entry's account is its key ARN's; a budget is
// an account and a Region.
func TestAccountAndBudget(t *testing.T) {
	e := Entry{KeyARN: "arn:aws:kms:eu-west-1:444455556666:key/mrk-1234abcd12ab34cd56ef1234567890ab"}
	if e.Account() != "444455556666" {
		t.Errorf("account %q", e.Account())
	}
	if b := Budget(e.KeyARN, "us-east-1"); b != "444455556666/us-east-1" {
		t.Errorf("budget %q", b)
	}
	if b := Budget(e.KeyARN, ""); b != "444455556666/eu-west-1" {
		t.Errorf("budget %q", b)
	}
}

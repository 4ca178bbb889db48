package flow

import (
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 27, 10, 0, 0, 500_000_000, time.UTC)

var opts = RequestOptions{DefaultValidFor: 24 * time.Hour, DefaultRenewBefore: 30 * time.Minute}

const arn = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

func TestParseValid(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		validTo string // "" = none
		model   string
		stage   string
	}{
		{"validFor hours", `{"keyId":"` + arn + `","secretId":"s","validFor":"720h"}`, "2026-12-27T10:00:00Z", Expires, "AWSCURRENT"},
		{"validFor days", `{"keyId":"alias/x","secretId":"s","validFor":"30d"}`, "2026-12-27T10:00:00Z", Expires, "AWSCURRENT"},
		{"validTo", `{"keyId":"1234abcd-12ab-34cd-56ef-1234567890ab","secretId":"s","validTo":"2027-01-01T00:00:00Z"}`, "2027-01-01T00:00:00Z", Expires, "AWSCURRENT"},
		{"validTo with offset", `{"keyId":"mrk-1234abcd12ab34cd56ef1234567890ab","secretId":"s","validTo":"2027-01-01T02:00:00+02:00"}`, "2027-01-01T00:00:00Z", Expires, "AWSCURRENT"},
		{"no expiry", `{"keyId":"` + arn + `","secretId":"s","expirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}`, "", DoesNotExpire, "AWSCURRENT"},
		{"default validity", `{"keyId":"` + arn + `","secretId":"arn:aws:secretsmanager:eu-west-2:111122223333:secret:kms/x-AbCdEf"}`, "2026-11-28T10:00:00Z", Expires, "AWSCURRENT"},
		{"stage", `{"keyId":"` + arn + `","secretId":"s","secretVersionStage":"AWSPENDING","validFor":"1h"}`, "2026-11-27T11:00:00Z", Expires, "AWSPENDING"},
		{"pinned version", `{"keyId":"` + arn + `","secretId":"s","secretVersionId":"5f045e18-bc0c-4d39-a6c1-4770ea5d6ea1","validFor":"1h"}`, "2026-11-27T11:00:00Z", Expires, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(c.in), now, opts)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.ExpirationModel) != c.model || r.SecretVersionStage != c.stage {
				t.Fatalf("got %+v", r)
			}
			got := ""
			if r.ValidTo != nil {
				got = r.ValidTo.Format(time.RFC3339)
				if r.ValidTo.Nanosecond() != 0 {
					t.Fatal("ValidTo has a fraction of a second; KMS wants whole seconds")
				}
			}
			if got != c.validTo {
				t.Fatalf("validTo %s, want %s", got, c.validTo)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", ``, []string{"empty"}},
		{"null", `null`, []string{"empty"}},
		{"not json", `{"keyId":`, []string{"not valid JSON"}},
		{"array", `[1]`, []string{"must be a JSON"}},
		{"trailing data", `{"keyId":"alias/a","secretId":"s","validFor":"1h"} {}`, []string{"after the JSON object"}},
		{"unknown field", `{"keyId":"alias/a","secretId":"s","validFor":"1h","ttl":3}`, []string{`"ttl"`, "allowed:", "keyId"}},
		{"missing keyId", `{"secretId":"s","validFor":"1h"}`, []string{`"keyId"`, "required"}},
		{"bad keyId", `{"keyId":"key/123","secretId":"s","validFor":"1h"}`, []string{`"keyId"`, `"key/123"`, "alias"}},
		{"bad key ARN", `{"keyId":"arn:aws:kms:eu-west-2:1:key/x","secretId":"s","validFor":"1h"}`, []string{`"keyId"`}},
		{"missing secretId", `{"keyId":"alias/a","validFor":"1h"}`, []string{`"secretId"`, "required"}},
		{"bad secretId", `{"keyId":"alias/a","secretId":"a b","validFor":"1h"}`, []string{`"secretId"`, `"a b"`}},
		{"bad version", `{"keyId":"alias/a","secretId":"s","secretVersionId":"v1","validFor":"1h"}`, []string{`"secretVersionId"`, `"v1"`}},
		{"version and stage", `{"keyId":"alias/a","secretId":"s","secretVersionId":"5f045e18-bc0c-4d39-a6c1-4770ea5d6ea1","secretVersionStage":"AWSCURRENT","validFor":"1h"}`, []string{"exclude each other"}},
		{"validFor and validTo", `{"keyId":"alias/a","secretId":"s","validFor":"1h","validTo":"2027-01-01T00:00:00Z"}`, []string{`"validFor"`, `"validTo"`, "exclude"}},
		{"bad validFor", `{"keyId":"alias/a","secretId":"s","validFor":"soon"}`, []string{`"validFor"`, `"soon"`, "720h"}},
		{"negative validFor", `{"keyId":"alias/a","secretId":"s","validFor":"-1h"}`, []string{`"validFor"`}},
		{"validFor too long", `{"keyId":"alias/a","secretId":"s","validFor":"366d"}`, []string{`"validFor"`, "365 days"}},
		{"validTo past", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T09:00:00Z"}`, []string{`"validTo"`, "not in the future"}},
		{"validTo now", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T10:00:00Z"}`, []string{`"validTo"`, "not in the future"}},
		{"validTo too far", `{"keyId":"alias/a","secretId":"s","validTo":"2027-11-28T10:00:01Z"}`, []string{`"validTo"`, "365 days"}},
		{"validTo not RFC 3339", `{"keyId":"alias/a","secretId":"s","validTo":"tomorrow"}`, []string{`"validTo"`, "RFC 3339"}},
		{"no expiry with validFor", `{"keyId":"alias/a","secretId":"s","validFor":"1h","expirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}`, []string{`"expirationModel"`, "must not"}},
		{"bad model", `{"keyId":"alias/a","secretId":"s","expirationModel":"NEVER"}`, []string{`"expirationModel"`, `"NEVER"`, "KEY_MATERIAL_EXPIRES"}},
		{"bad algorithm", `{"keyId":"alias/a","secretId":"s","validFor":"1h","wrappingAlgorithm":"AES"}`, []string{`"wrappingAlgorithm"`, `"AES"`, "RSAES_OAEP_SHA_256"}},
		{"bad spec", `{"keyId":"alias/a","secretId":"s","validFor":"1h","wrappingKeySpec":"RSA_1024"}`, []string{`"wrappingKeySpec"`, `"RSA_1024"`, "RSA_4096"}},
		{"wrong type", `{"keyId":"alias/a","secretId":"s","validFor":720}`, []string{`"validFor"`, "string"}},
		{"bad renewBefore", `{"keyId":"alias/a","secretId":"s","validFor":"720h","renewBefore":"later"}`, []string{`"renewBefore"`, `"later"`}},
		{"renewBefore not shorter", `{"keyId":"alias/a","secretId":"s","validFor":"24h","renewBefore":"24h"}`, []string{`"renewBefore"`, "shorter"}},
		{"register not bool", `{"keyId":"alias/a","secretId":"s","validFor":"24h","register":"no"}`, []string{`"register"`, "boolean"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.in), now, opts)
			if err == nil {
				t.Fatal("accepted")
			}
			if NameOf(err) != InvalidInput {
				t.Fatalf("error name %s", NameOf(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNoDefaultValidity(t *testing.T) {
	_, err := ParseRequest([]byte(`{"keyId":"alias/a","secretId":"s"}`), now, RequestOptions{})
	if err == nil || !strings.Contains(err.Error(), "no default validity") {
		t.Fatalf("got %v", err)
	}
}

func TestRegistrationPolicy(t *testing.T) {
	r, err := ParseRequest([]byte(`{"keyId":"alias/a","secretId":"s","validTo":"2027-01-01T00:00:00Z"}`), now, opts)
	if err != nil || !r.Register || r.ValidFor != "24h0m0s" || r.RenewBefore != "30m0s" {
		t.Fatalf("validTo input: %+v %v", r, err)
	}
	r, err = ParseRequest([]byte(`{"keyId":"alias/a","secretId":"s","validFor":"90d","renewBefore":"14d","register":true}`), now, opts)
	if err != nil || r.ValidFor != "90d" || r.RenewBefore != "14d" {
		t.Fatalf("policy: %+v %v", r, err)
	}
	r, err = ParseRequest([]byte(`{"keyId":"alias/a","secretId":"s","validFor":"24h"}`), now, RequestOptions{DefaultRenewBefore: 336 * time.Hour})
	if err != nil || r.RenewBefore != "8h0m0s" {
		t.Fatalf("short validity: %+v %v", r, err)
	}
	r, err = ParseRequest([]byte(`{"keyId":"alias/a","secretId":"s","validFor":"1h","register":false}`), now, RequestOptions{})
	if err != nil || r.Register {
		t.Fatalf("register false: %+v %v", r, err)
	}
}

// TestScheduleFitsPolicy: with a daily schedule, a registered key's
// renewBefore is at least two days and its validity at least renewBefore
// plus a day; a short validity is not registered by default, refused with
// "register": true, registered with "allowShortValidity": true.
func TestScheduleFitsPolicy(t *testing.T) {
	o := RequestOptions{DefaultValidFor: 720 * time.Hour, DefaultRenewBefore: 336 * time.Hour, SchedulePeriod: 24 * time.Hour}
	cases := []struct {
		name, in string
		register bool
		renew    string
		err      []string
	}{
		{"default policy", `{"keyId":"alias/a","secretId":"s"}`, true, "336h0m0s", nil},
		{"renewBefore 1s", `{"keyId":"alias/a","secretId":"s","validFor":"90d","renewBefore":"1s"}`, false, "", []string{`"renewBefore"`, "1s", "two schedule periods", "48h"}},
		{"renewBefore 2d", `{"keyId":"alias/a","secretId":"s","validFor":"90d","renewBefore":"2d"}`, true, "2d", nil},
		{"test import", `{"keyId":"alias/a","secretId":"s","validFor":"1h"}`, false, "", nil},
		{"short, register true", `{"keyId":"alias/a","secretId":"s","validFor":"1h","register":true}`, false, "", []string{`"validFor"`, "1h", "allowShortValidity"}},
		{"short validity asked for", `{"keyId":"alias/a","secretId":"s","validFor":"1h","register":true,"allowShortValidity":true}`, true, "20m0s", nil},
		{"validity under renewBefore plus a day", `{"keyId":"alias/a","secretId":"s","validFor":"360h","renewBefore":"345h","register":true}`, false, "", []string{`"validFor"`, "360h", "345h"}},
		{"defaulted window raised to two days", `{"keyId":"alias/a","secretId":"s","validFor":"4d"}`, true, "48h0m0s", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(c.in), now, o)
			if c.err != nil {
				if err == nil || NameOf(err) != InvalidInput {
					t.Fatalf("got %+v, %v: want InvalidInput", r, err)
				}
				for _, w := range c.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil || r.Register != c.register || (c.register && r.RenewBefore != c.renew) {
				t.Fatalf("got %+v, %v: want register %v, renewBefore %s", r, err, c.register, c.renew)
			}
		})
	}
}

// TestServedAccountAndRegion: a key or alias ARN of another account or
// Region is refused naming what the deployment serves; ids and aliases
// are not checked here (KMS resolves them in the served Region).
func TestServedAccountAndRegion(t *testing.T) {
	o := opts
	o.Accounts, o.ServedRegion = []string{"111122223333"}, "eu-west-2"
	for _, c := range []struct {
		keyID string
		ok    bool
	}{
		{"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"arn:aws:kms:eu-west-2:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws:kms:eu-west-2:444455556666:alias/x", false},
		{"alias/x", true},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", true},
	} {
		_, err := ParseRequest([]byte(`{"keyId":"`+c.keyID+`","secretId":"s","validFor":"90d"}`), now, o)
		if c.ok != (err == nil) {
			t.Errorf("%s: %v, want ok %v", c.keyID, err, c.ok)
		}
		if err != nil && (NameOf(err) != InvalidInput || !(strings.Contains(err.Error(), "it serves 111122223333") || strings.Contains(err.Error(), "serves keys in Region eu-west-2"))) {
			t.Errorf("%s: %v: want InvalidInput naming what is served", c.keyID, err)
		}
	}
}

// TestParseStrictKeys: encoding/json folds the case of field names and keeps
// the last of duplicate fields; ParseRequest refuses both, naming the field
// (and for a case variant, the expected spelling).
func TestParseStrictKeys(t *testing.T) {
	const rest = `"secretId":"s","validFor":"1h"`
	cases := []struct {
		name, in string
		want     []string // substrings of the error; nil: accepted
	}{
		{"exact spelling", `{"keyId":"alias/a",` + rest + `}`, nil},
		{"escaped exact spelling", `{"key\u0049d":"alias/a",` + rest + `}`, nil},
		{"upper case", `{"KEYID":"alias/a",` + rest + `}`, []string{`"KEYID"`, `"keyId"`, "case-sensitive"}},
		{"one letter", `{"keyID":"alias/a",` + rest + `}`, []string{`"keyID"`, `"keyId"`}},
		{"lower case secretId", `{"keyId":"alias/a","secretid":"s","validFor":"1h"}`, []string{`"secretid"`, `"secretId"`}},
		{"capitalised bool", `{"keyId":"alias/a",` + rest + `,"Register":false}`, []string{`"Register"`, `"register"`}},
		{"Kelvin sign folds to k", `{"\u212AeyId":"alias/a",` + rest + `}`, []string{`"\u212aeyId"`, `"keyId"`}},
		{"case variant after the field", `{"keyId":"alias/a",` + rest + `,"KeyId":"alias/b"}`, []string{`"KeyId"`, `"keyId"`}},
		{"unknown field", `{"keyId":"alias/a",` + rest + `,"ttl":3}`, []string{`"ttl"`, "unknown", "allowed:", "renewBefore"}},
		{"unknown field first", `{"x":{"keyId":"alias/b"},"keyId":"alias/a",` + rest + `}`, []string{`"x"`, "unknown"}},
		{"register twice", `{"keyId":"alias/a",` + rest + `,"register":true,"register":false}`, []string{`"register"`, "twice", "true, then false"}},
		{"keyId twice, same value", `{"keyId":"alias/a",` + rest + `,"keyId":"alias/a"}`, []string{`"keyId"`, "twice"}},
		{"keyId twice, escaped", `{"keyId":"alias/a",` + rest + `,"key\u0049d":"alias/b"}`, []string{`"keyId"`, "twice", `"alias/a", then "alias/b"`}},
		{"regions twice", `{"keyId":"alias/a",` + rest + `,"regions":["eu-west-1"],"regions":["eu-west-2"]}`, []string{`"regions"`, "twice"}},
		{"null twice", `{"keyId":"alias/a",` + rest + `,"renewBefore":null,"renewBefore":"1d"}`, []string{`"renewBefore"`, "is null"}},
		{"register null", `{"keyId":"alias/a",` + rest + `,"register":null}`, []string{`"register"`, "is null", "leave the field out"}},
		{"keyId null", `{"keyId":null,` + rest + `}`, []string{`"keyId"`, "is null"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.in), now, opts)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if NameOf(err) != InvalidInput {
				t.Fatalf("error name %s", NameOf(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestRequestFieldsNamesEveryField: the field list in error messages and
// the key check follow RequestInput's json tags.
func TestRequestFieldsNamesEveryField(t *testing.T) {
	if got := strings.Join(requestFieldNames, ", "); got != RequestFields {
		t.Fatalf("RequestFields is\n%s\nRequestInput's fields are\n%s", RequestFields, got)
	}
}

// TestMinValidity: a validity the import cannot honour is refused up front,
// naming the field, the value and the minimum.
func TestMinValidity(t *testing.T) {
	if MinValidity <= 1500*time.Second+10*time.Minute {
		t.Fatalf("MinValidity %s does not cover the rotation timeout (25m) and MIN_TOKEN_VALIDITY's default (10m)", MinValidity)
	}
	short := RequestOptions{DefaultValidFor: 30 * time.Minute, DefaultRenewBefore: 10 * time.Minute}
	cases := []struct {
		name string
		in   string
		opt  RequestOptions
		want []string // substrings of the error; nil: accepted
	}{
		{"validFor 1h", `{"keyId":"alias/a","secretId":"s","validFor":"1h"}`, opts, nil},
		{"validFor 60m", `{"keyId":"alias/a","secretId":"s","validFor":"60m"}`, opts, nil},
		{"validFor 59m", `{"keyId":"alias/a","secretId":"s","validFor":"59m"}`, opts, []string{`"validFor"`, `"59m"`, "minimum validity 1h"}},
		{"validFor 1s", `{"keyId":"alias/a","secretId":"s","validFor":"1s"}`, opts, []string{`"validFor"`, `"1s"`, "minimum validity 1h"}},
		{"validFor 3599s", `{"keyId":"alias/a","secretId":"s","validFor":"3599s"}`, opts, []string{`"validFor"`, `"3599s"`, "1h"}},
		{"validTo one second ahead", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T10:00:01Z"}`, opts, []string{`"validTo"`, "2026-11-27T10:00:01Z", "minimum validity 1h", "from 2026-11-27T11:00:01Z"}},
		{"validTo 59m59s ahead", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T10:59:59Z"}`, opts, []string{`"validTo"`, "2026-11-27T10:59:59Z", "59m58s", "minimum validity 1h"}},
		{"validTo an hour ahead", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T11:00:01Z"}`, opts, nil},
		{"validTo short, with offset", `{"keyId":"alias/a","secretId":"s","validTo":"2026-11-27T12:30:00+02:00"}`, opts, []string{`"validTo"`, "2026-11-27T12:30:00+02:00", "29m59s"}},
		{"short default validity", `{"keyId":"alias/a","secretId":"s"}`, short, []string{"DEFAULT_VALID_FOR", "30m0s", "minimum validity 1h", `"validFor"`}},
		{"short default, validFor given", `{"keyId":"alias/a","secretId":"s","validFor":"2h"}`, short, nil},
		{"validTo registered with a short default", `{"keyId":"alias/a","secretId":"s","validTo":"2027-01-01T00:00:00Z"}`, short, []string{`"validTo"`, "DEFAULT_VALID_FOR", "30m0s", `"register": false`}},
		{"validTo not registered, short default", `{"keyId":"alias/a","secretId":"s","validTo":"2027-01-01T00:00:00Z","register":false}`, short, nil},
		{"no expiry, short default", `{"keyId":"alias/a","secretId":"s","expirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}`, short, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.in), now, c.opt)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if NameOf(err) != InvalidInput {
				t.Fatalf("error name %s", NameOf(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

package flow

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestCauseRoundTrip: the facts written into a cause come back as they
// were, whatever the message says; a cause without a well-formed facts
// line gives no facts and the whole cause.
func TestCauseRoundTrip(t *testing.T) {
	f := &Facts{Check: CheckKMSRefused, KeyARN: "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", Region: "us-east-1",
		Operation: "ImportKeyMaterial", KMSError: "KMSInvalidStateException", KeyState: "Disabled"}
	cases := []struct {
		name, msg string
	}{
		{"plain", "ImportKeyMaterial for key: KMSInvalidStateException: whatever KMS says"},
		{"empty message", ""},
		{"message with the marker", "a\nfacts: {\"check\":\"origin\"}\nb"},
		{"message ending in the marker", "a\nfacts: "},
		{"multi-line message", "line one\nline two"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cause := EncodeCause(c.msg, f)
			msg, got := ParseCause(cause)
			if got == nil || *got != *f {
				t.Fatalf("facts %+v, want %+v (cause %q)", got, f, cause)
			}
			if strings.Count(cause, factsMarker) != 1 || !strings.HasPrefix(msg, strings.SplitN(c.msg, "\n", 2)[0]) {
				t.Fatalf("message %q from cause %q", msg, cause)
			}
			// Through Step Functions' Cause for a Lambda error (a JSON
			// string) and back.
			b, _ := json.Marshal(map[string]string{"errorType": KeyNotEligible, "errorMessage": cause})
			var p struct{ ErrorMessage string }
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			if _, again := ParseCause(p.ErrorMessage); again == nil || *again != *f {
				t.Fatalf("facts lost through JSON: %+v", again)
			}
		})
	}
	if got := EncodeCause("msg", nil); got != "msg" {
		t.Errorf("no facts: cause %q, want the message alone", got)
	}

	for name, cause := range map[string]string{
		"no facts line (an older function's)": "key x is in state Disabled",
		"not JSON":                            "m\nfacts: {check: origin}",
		"trailing data":                       "m\nfacts: {\"check\":\"origin\"} {}",
		"not an object":                       "m\nfacts: \"origin\"",
		"no check":                            "m\nfacts: {\"keyState\":\"Disabled\"}",
		"oversized":                           "m\nfacts: {\"check\":\"origin\",\"keyArn\":\"" + strings.Repeat("a", maxFactsJSON) + "\"}",
		"States.Timeout's cause":              "the execution ended TIMED_OUT",
	} {
		if msg, got := ParseCause(cause); got != nil || msg != cause {
			t.Errorf("%s: ParseCause = %q, %+v; want the cause and no facts", name, msg, got)
		}
	}
}

// TestFactsOf: the facts of the outermost named error that has some,
// through fmt.Errorf's %w and flow's own wrapping.
func TestFactsOf(t *testing.T) {
	inner := Facts{Check: CheckKeyState, KeyState: "Disabled"}.Errorf(KeyNotEligible, "key x is in state Disabled")
	outer := Facts{Check: CheckOrigin, Origin: "AWS_KMS"}.Wrap(KeyNotEligible, inner, "outer")
	cases := []struct {
		name string
		err  error
		want Check
	}{
		{"own", inner, CheckKeyState},
		{"through %w", fmt.Errorf("ctx: %w", inner), CheckKeyState},
		{"through a named error without facts", Wrap(Internal, inner, "wrapped"), CheckKeyState},
		{"outermost wins", outer, CheckOrigin},
		{"none", Errorf(KeyNotEligible, "x"), ""},
		{"not named", fmt.Errorf("plain"), ""},
		{"nil", nil, ""},
	}
	for _, c := range cases {
		got := FactsOf(c.err)
		if (got == nil) != (c.want == "") || (got != nil && got.Check != c.want) {
			t.Errorf("%s: FactsOf = %+v, want check %q", c.name, got, c.want)
		}
	}
	if (Facts{}).Wrap(Internal, nil, "x") != nil {
		t.Error("nil error wrapped")
	}
}

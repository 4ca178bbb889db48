package lambdarun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// TestHandler: the event is decoded into the stage's type; a named error
// reaches the runtime as errorType (what Retry/Catch match), its message
// sanitized; an event of the wrong shape is InvalidInput that describes,
// never echoes, what it got.
func TestHandler(t *testing.T) {
	secretish := strings.Repeat("QUJD", 20) // what a leaked token would look like
	stage := func(_ context.Context, s flow.State) (flow.State, error) {
		switch s.Execution.ID {
		case "fail":
			return s, flow.Errorf(flow.ImportTokenExpiring, "token %s too close to expiry", secretish)
		case "crash":
			return s, errors.New("plain")
		}
		s.FailedStage = "seen " + s.Execution.ID
		return s, nil
	}
	h := Handler("test", stage)
	cases := []struct {
		event, wantType, wantNot string
	}{
		{`{"execution":{"id":"ok"}}`, "", ""},
		{`{"execution":{"id":"fail"}}`, flow.ImportTokenExpiring, secretish},
		{`{"execution":{"id":"crash"}}`, flow.Internal, ""},
		{`{"execution":{"id":42}}`, flow.InvalidInput, "42"},
		{`not json ` + secretish, flow.InvalidInput, secretish},
	}
	for _, c := range cases {
		out, err := h(context.Background(), json.RawMessage(c.event))
		if c.wantType == "" {
			if err != nil || out.FailedStage != "seen ok" {
				t.Errorf("%s: %+v, %v", c.event, out, err)
			}
			continue
		}
		var ie messages.InvokeResponse_Error
		if !errors.As(err, &ie) || ie.Type != c.wantType {
			t.Errorf("%s: error %v, want errorType %s", c.event, err, c.wantType)
			continue
		}
		if c.wantNot != "" && strings.Contains(ie.Message, c.wantNot) {
			t.Errorf("%s: the error message %q carries %q", c.event, ie.Message, c.wantNot)
		}
	}
}

// TestFactsInErrorMessage: an error's facts follow its sanitized message
// in errorMessage (flow.EncodeCause), whole even when the message is cut
// to its limit; an error without facts has the message alone.
func TestFactsInErrorMessage(t *testing.T) {
	facts := flow.Facts{Check: flow.CheckKeyState, KeyARN: "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", KeyState: "PendingDeletion"}
	for name, c := range map[string]struct {
		err   error
		facts *flow.Facts
	}{
		"facts":             {facts.Errorf(flow.KeyNotEligible, "key is in state PendingDeletion"), &facts},
		"long message":      {facts.Errorf(flow.KeyNotEligible, "%s", strings.Repeat("word ", 400)), &facts},
		"wrapped by %w":     {fmt.Errorf("outer: %w", facts.Errorf(flow.KeyNotEligible, "inner")), &facts},
		"no facts":          {flow.Errorf(flow.IncorrectKeyMaterial, "wrong material"), nil},
		"not a named error": {errors.New("plain"), nil},
	} {
		h := Handler("test", func(context.Context, flow.State) (flow.State, error) { return flow.State{}, c.err })
		_, err := h(context.Background(), json.RawMessage(`{}`))
		var ie messages.InvokeResponse_Error
		if !errors.As(err, &ie) {
			t.Fatalf("%s: %v", name, err)
		}
		msg, got := flow.ParseCause(ie.Message)
		if (got == nil) != (c.facts == nil) || (got != nil && *got != *c.facts) {
			t.Errorf("%s: facts %+v, want %+v", name, got, c.facts)
		}
		if msg != flow.Sanitize(c.err.Error()) {
			t.Errorf("%s: message %q, want the sanitized error", name, msg)
		}
	}
}

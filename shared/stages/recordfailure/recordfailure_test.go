package recordfailure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

const (
	keyARN     = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	replicaARN = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
)

type fixture struct {
	st     *Stage
	audit  *audit
	tokens *tokens
	leases *leases
	reg    *reg
	keys   *keys
	topic  *topic
	fails  *failures
}

func newFixture() fixture {
	f := fixture{audit: &audit{}, tokens: &tokens{}, leases: &leases{}, reg: &reg{}, keys: &keys{md: map[string]*types.KeyMetadata{}}, topic: &topic{}, fails: &failures{}}
	f.st = &Stage{KMS: f.keys, Audit: f.audit, Tokens: f.tokens, Leases: f.leases, Registry: f.reg, Notify: f.topic, Failures: f.fails, Topic: "arn:aws:sns:eu-west-2:111122223333:t"}
	return f
}

// openExecution leaves what a running execution holds: its lease and an
// open token record with its bytes.
func (f fixture) openExecution(exec string) records.Token {
	f.leases.acquire(keyARN, exec)
	now := time.Now().UTC()
	tok := records.Token{KeyARN: keyARN, TokenID: "t1", IssuedAt: now, ParametersValidTo: now.Add(24 * time.Hour), ExecutionID: exec,
		Status: records.TokenWrapped, ImportToken: []byte("token"), EncryptedKeyMaterial: []byte("wrapped")}
	tok.SK = records.TokenSK(now, tok.TokenID)
	f.tokens.put(tok)
	return tok
}

// settled: one import record for exec, failed with errName; its token
// without bytes; no lease left.
func (f fixture) settled(t *testing.T, exec, errName string, tok records.Token) {
	t.Helper()
	n := 0
	for _, r := range f.audit.recs {
		if r.ExecutionID == exec {
			n++
			if r.Outcome != records.ImportFailed || r.ErrorName != errName {
				t.Errorf("import record %+v: want failed with %s", r, errName)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d import records for %s, want exactly 1", n, exec)
	}
	if got := f.tokens.get(tok.SK); len(got.ImportToken) != 0 || len(got.EncryptedKeyMaterial) != 0 || got.Status == records.TokenWrapped {
		t.Errorf("token record %+v: want settled, without its bytes", got)
	}
	if h := f.leases.held(keyARN); h != "" && !strings.HasPrefix(h, "fenced "+exec+" ") {
		t.Errorf("lease still held by %s", h)
	}
}

// execStart is every test execution's start: EventBridge's redeliveries
// of one execution's status change carry the same startDate, and the audit
// record's key is made from it (a start read from the clock per event made
// two records whenever the millisecond turned between deliveries).
var execStart = time.Now().Add(-time.Minute).UnixMilli()

func statusChange(exec, status, errName, cause string) Event {
	in, _ := json.Marshal(map[string]any{"keyId": keyARN, "secretId": "s", "validFor": "720h"})
	return Event{DetailType: StatusChangeType, Detail: &StatusChange{ExecutionArn: exec, Name: "n", Status: status,
		StartDate: execStart, Input: string(in), Error: errName, Cause: cause}}
}

// TestEndedExecutionsRecordedOnce: an execution that timed out or was
// stopped (no Catch ran) is recorded, notified and cleaned up from
// EventBridge's status change; one whose Catch recorded it already is
// only settled, never recorded or notified twice.
func TestEndedExecutionsRecordedOnce(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		status, wantErr string
	}{{"TIMED_OUT", "States.Timeout"}, {"ABORTED", "States.Aborted"}, {"FAILED", "States.Failed"}} {
		t.Run(c.status, func(t *testing.T) {
			f := newFixture()
			exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:" + c.status
			tok := f.openExecution(exec)
			for delivery := 1; delivery <= 2; delivery++ { // EventBridge delivers at least once
				if _, err := f.st.Run(ctx, statusChange(exec, c.status, "", "")); err != nil {
					t.Fatal(err)
				}
				f.settled(t, exec, c.wantErr, tok)
				// A stopped or timed-out execution may have a stage still
				// running: its lease is fenced out, not freed.
				if h, fenced := f.leases.held(keyARN), c.status != "FAILED"; fenced != strings.HasPrefix(h, "fenced "+exec+" ") {
					t.Errorf("%s: lease %q; want fenced %v", c.status, h, fenced)
				}
				if len(f.topic.subjects) != 1 || len(f.reg.failures[keyARN]) != 1 {
					t.Fatalf("delivery %d: %d notifications, %d registry updates; want 1 each", delivery, len(f.topic.subjects), len(f.reg.failures[keyARN]))
				}
			}
			if got := f.reg.failures[keyARN][0]; got.Error != c.wantErr || registry.FailureEffect(got.Error, got.Facts) != registry.Keeps {
				t.Errorf("registry told %+v: want %s, which keeps the key's status", got, c.wantErr)
			}
		})
	}

	t.Run("recorded by its Catch first", func(t *testing.T) {
		f := newFixture()
		exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:caught"
		tok := f.openExecution(exec)
		s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: keyARN},
			Error: &flow.StateError{Error: flow.IncorrectKeyMaterial, Cause: "{}"}, FailedStage: "import-material"}
		if _, err := f.st.Run(ctx, Event{State: s}); err != nil {
			t.Fatal(err)
		}
		f.leases.acquire(keyARN, exec) // as if the Catch had not released it
		if _, err := f.st.Run(ctx, statusChange(exec, "FAILED", flow.IncorrectKeyMaterial, "")); err != nil {
			t.Fatal(err)
		}
		f.settled(t, exec, flow.IncorrectKeyMaterial, tok)
		if len(f.topic.subjects) != 1 || len(f.reg.failures[keyARN]) != 1 {
			t.Fatalf("%d notifications, %d registry updates; want 1 each", len(f.topic.subjects), len(f.reg.failures[keyARN]))
		}
	})
}

func TestStatusChangeRefused(t *testing.T) {
	f := newFixture()
	for _, ev := range []Event{
		{DetailType: "Something Else", Detail: &StatusChange{ExecutionArn: "e", Status: "FAILED"}},
		{DetailType: StatusChangeType, Detail: &StatusChange{ExecutionArn: "e", Status: "SUCCEEDED"}},
		{DetailType: StatusChangeType},
		{}, // no error at $.error
	} {
		if _, err := f.st.Run(context.Background(), ev); flow.NameOf(err) != flow.InvalidInput {
			t.Errorf("%s: %v, want InvalidInput", fmt.Sprint(ev.DetailType, ev.Detail), err)
		}
	}
	if len(f.audit.recs) != 0 || len(f.topic.subjects) != 0 {
		t.Fatalf("a refused event wrote %d records, %d notifications", len(f.audit.recs), len(f.topic.subjects))
	}
}

// lambdaCause is the Cause Step Functions gives a Catch for err returned
// by a stage: the function's error payload as lambdarun writes it.
func lambdaCause(t *testing.T, err error) string {
	t.Helper()
	h := lambdarun.Handler("test", func(context.Context, flow.State) (flow.State, error) { return flow.State{}, err })
	_, herr := h(context.Background(), json.RawMessage(`{}`))
	var ie messages.InvokeResponse_Error
	if !errors.As(herr, &ie) {
		t.Fatalf("handler error %v is not a Lambda error", herr)
	}
	b, _ := json.Marshal(ie)
	return string(b)
}

func metadata(arn string, state types.KeyState) *types.KeyMetadata {
	return &types.KeyMetadata{Arn: aws.String(arn), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSymmetricDefault, KeyState: state}
}

func invalidState(op, arn string) error {
	// KMS's own words are arbitrary here: nothing reads them.
	return kmsaccess.Refused(op, arn, &smithy.OperationError{ServiceID: "KMS", OperationName: op,
		Err: &types.KMSInvalidStateException{Message: aws.String("whatever KMS says")}})
}

// TestFactsReachTheRegistry: a stage's facts cross Lambda (errorMessage)
// and Step Functions (the Catch's Cause; the execution's Cause, which
// EventBridge's status change carries) to the registry's decision; a
// refusal by KMS is completed with the state DescribeKey shows, in the
// refused key's Region. The record keeps the message only.
func TestFactsReachTheRegistry(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		kms       map[string]types.KeyState // what DescribeKey shows
		kmsErr    error
		wantCheck flow.Check // "" = no facts
		wantState string
		wantCall  string // the DescribeKey made, "" = none
		effect    registry.Effect
	}{
		{name: "disabled key at fetch", err: kmsaccess.CheckImportable(metadata(keyARN, types.KeyStateDisabled)),
			wantCheck: flow.CheckKeyState, wantState: "Disabled", effect: registry.Blocks},
		{name: "origin AWS_KMS", err: kmsaccess.CheckImportable(&types.KeyMetadata{Arn: aws.String(keyARN), Origin: types.OriginTypeAwsKms, KeyState: types.KeyStateEnabled}),
			wantCheck: flow.CheckOrigin, wantState: "Enabled", effect: registry.Blocks},
		{name: "GetParametersForImport refused, key pending deletion", err: invalidState("GetParametersForImport", keyARN), kms: map[string]types.KeyState{keyARN: types.KeyStatePendingDeletion},
			wantCheck: flow.CheckKMSRefused, wantState: "PendingDeletion", wantCall: "eu-west-2 " + keyARN, effect: registry.Blocks},
		{name: "ImportKeyMaterial refused, key reads Enabled", err: invalidState("ImportKeyMaterial", keyARN), kms: map[string]types.KeyState{keyARN: types.KeyStateEnabled},
			wantCheck: flow.CheckKMSRefused, wantState: "Enabled", wantCall: "eu-west-2 " + keyARN, effect: registry.Clears},
		{name: "replica refused, described in its Region", err: invalidState("ImportKeyMaterial", replicaARN), kms: map[string]types.KeyState{replicaARN: types.KeyStateDisabled},
			wantCheck: flow.CheckKMSRefused, wantState: "Disabled", wantCall: "us-east-1 " + replicaARN, effect: registry.Blocks},
		{name: "refused, DescribeKey throttled", err: invalidState("ImportKeyMaterial", keyARN), kmsErr: flow.Errorf(flow.AWSTransient, "DescribeKey: throttled"),
			wantCheck: flow.CheckKMSRefused, wantCall: "eu-west-2 " + keyARN, effect: registry.Keeps},
		{name: "an older function's error, no facts", err: flow.Errorf(flow.KeyNotEligible, "key %s is in state Creating", keyARN), effect: registry.Blocks},
		{name: "past KMS's checks", err: flow.Errorf(flow.IncorrectKeyMaterial, "ImportKeyMaterial for %s", keyARN), effect: registry.Clears},
	}
	ctx := context.Background()
	for _, c := range cases {
		for _, path := range []string{"Catch", "EventBridge"} {
			t.Run(c.name+" via "+path, func(t *testing.T) {
				f := newFixture()
				for arn, st := range c.kms {
					f.keys.md[arn] = metadata(arn, st)
				}
				f.keys.err = c.kmsErr
				exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:" + strings.ReplaceAll(c.name, " ", "-")
				cause := lambdaCause(t, c.err)
				ev := statusChange(exec, "FAILED", flow.NameOf(c.err), cause) // RecordFailure failed: the Catch's error as it was
				if path == "Catch" {
					ev = Event{State: flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: keyARN},
						Error: &flow.StateError{Error: flow.NameOf(c.err), Cause: cause}, FailedStage: "fetch-parameters"}}
				}
				out, err := f.st.Run(ctx, ev)
				if err != nil {
					t.Fatal(err)
				}
				fs := f.reg.failures[keyARN]
				if len(fs) != 1 {
					t.Fatalf("%d registry updates, want 1", len(fs))
				}
				got := fs[0]
				checkFacts(t, got.Facts, c.wantCheck, c.wantState)
				if e := registry.FailureEffect(got.Error, got.Facts); e != c.effect {
					t.Errorf("FailureEffect(%s, %+v) = %s, want %s", got.Error, got.Facts, e, c.effect)
				}
				if strings.Join(f.keys.calls, ",") != c.wantCall {
					t.Errorf("DescribeKey calls %v, want %q", f.keys.calls, c.wantCall)
				}
				// The record and the registry keep the message alone.
				msg := f.audit.recs[0].Cause
				if strings.Contains(msg, "facts") || got.Cause != msg || !strings.Contains(msg, keyARN[len(keyARN)-12:]) && !strings.Contains(msg, "mrk-") {
					t.Errorf("recorded cause %q, registry's %q: want the message alone", msg, got.Cause)
				}
				if c.wantCheck != "" && !strings.Contains(f.topic.bodies[0], `"check":"`+string(c.wantCheck)+`"`) {
					t.Errorf("notification without the facts:\n%s", f.topic.bodies[0])
				}

				// What RecordFailure returns becomes the execution's Cause
				// (RotationFailed); its status change, recorded afresh,
				// gives the registry the same facts, without asking KMS
				// again.
				g := newFixture()
				if _, err := g.st.Run(ctx, statusChange(exec, "FAILED", out.Error.Error, out.Error.Cause)); err != nil {
					t.Fatal(err)
				}
				checkFacts(t, g.reg.failures[keyARN][0].Facts, c.wantCheck, c.wantState)
				if g.audit.recs[0].Cause != msg {
					t.Errorf("second cause %q, want %q", g.audit.recs[0].Cause, msg)
				}
				if c.wantState != "" && len(g.keys.calls) != 0 {
					t.Errorf("facts with a state asked KMS again: %v", g.keys.calls)
				}
			})
		}
	}
}

func checkFacts(t *testing.T, f *flow.Facts, check flow.Check, state string) {
	t.Helper()
	switch {
	case check == "" && f != nil:
		t.Errorf("facts %+v, want none", f)
	case check == "":
	case f == nil:
		t.Errorf("no facts, want check %s", check)
	case f.Check != check || f.KeyState != state:
		t.Errorf("facts %+v, want check %s, key state %q", f, check, state)
	}
}

// TestRegistryFailureRetried: a registry that can't be written fails the
// invocation before the import record is written, so the retried
// invocation updates the registry (it is not skipped as recorded already)
// and notifies once.
func TestRegistryFailureRetried(t *testing.T) {
	ctx := context.Background()
	f := newFixture()
	exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:retried"
	tok := f.openExecution(exec)
	disabled := kmsaccess.CheckImportable(metadata(keyARN, types.KeyStateDisabled))
	ev := Event{State: flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: keyARN},
		Error: &flow.StateError{Error: flow.KeyNotEligible, Cause: lambdaCause(t, disabled)}, FailedStage: "fetch-parameters"}}
	f.reg.fail = &smithy.GenericAPIError{Code: "ThrottlingException"}
	if _, err := f.st.Run(ctx, ev); flow.NameOf(err) != flow.AWSTransient {
		t.Fatalf("with the registry throttled: %v, want AWSTransient (retried)", err)
	}
	if len(f.audit.recs) != 0 || len(f.topic.subjects) != 0 {
		t.Fatalf("recorded (%d) or notified (%d) before the registry was updated", len(f.audit.recs), len(f.topic.subjects))
	}
	f.reg.fail = nil
	ev.Error.Cause = lambdaCause(t, disabled) // the retry gets the Catch's state again
	if _, err := f.st.Run(ctx, ev); err != nil {
		t.Fatal(err)
	}
	f.settled(t, exec, flow.KeyNotEligible, tok)
	if len(f.reg.failures[keyARN]) != 1 || len(f.topic.subjects) != 1 {
		t.Fatalf("%d registry updates, %d notifications; want 1 each", len(f.reg.failures[keyARN]), len(f.topic.subjects))
	}
}

// TestNotificationFailureRetried: a topic that can't be reached fails the
// invocation after the failure is recorded, the registry told and the
// lease released (the key is not kept locked); the retry sends the one
// notification, and a later delivery sends none.
func TestNotificationFailureRetried(t *testing.T) {
	f := newFixture()
	f.topic.err = errors.New("topic gone")
	exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:no-topic"
	tok := f.openExecution(exec)
	s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: keyARN},
		Error: &flow.StateError{Error: flow.InvalidSecret, Cause: "x"}, FailedStage: "wrap-material", Progress: &flow.Progress{Token: &flow.TokenRef{ID: tok.SK, Fetches: 1}}}
	if _, err := f.st.Run(context.Background(), Event{State: s}); err == nil {
		t.Fatal("a notification not sent: want an error, so the invocation is retried")
	}
	f.settled(t, exec, flow.InvalidSecret, tok)
	if got := f.tokens.get(tok.SK); got.Status != records.TokenFailed {
		t.Errorf("the execution's current token is %s, want failed", got.Status)
	}
	if len(f.reg.failures[keyARN]) != 1 {
		t.Fatal("registry not told")
	}
	f.topic.err = nil
	for i := 0; i < 2; i++ {
		if _, err := f.st.Run(context.Background(), statusChange(exec, "FAILED", flow.InvalidSecret, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.topic.subjects) != 1 || len(f.reg.failures[keyARN]) != 1 {
		t.Fatalf("%d notifications, %d registry updates; want 1 each", len(f.topic.subjects), len(f.reg.failures[keyARN]))
	}
}

// TestExactlyOnce: one failure record, one registry update, one import
// record and one notification per execution, whatever the paths, aliases,
// retries after a partial failure; a success record written before a
// later failure is replaced by the failed one.
func TestExactlyOnce(t *testing.T) {
	ctx := context.Background()
	alias := "alias/payments"
	t.Run("alias on the Catch path, ARN on EventBridge's", func(t *testing.T) {
		f := newFixture()
		f.keys.md[alias] = &types.KeyMetadata{Arn: aws.String(keyARN)}
		exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:alias"
		in, _ := json.Marshal(map[string]any{"keyId": alias, "secretId": "s"})
		s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Input: in,
			Error: &flow.StateError{Error: flow.KeyNotReady, Cause: "x"}, FailedStage: "fetch-parameters"}
		if _, err := f.st.Run(ctx, Event{State: s}); err != nil {
			t.Fatal(err)
		}
		ev := statusChange(exec, "FAILED", flow.KeyNotReady, "x")
		ev.Detail.Input = string(in)
		if _, err := f.st.Run(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if len(f.audit.recs) != 1 || f.audit.recs[0].KeyARN != keyARN || len(f.topic.subjects) != 1 || len(f.reg.failures[keyARN]) != 1 {
			t.Fatalf("records %+v, %d notifications, %d registry updates: want one of each, under the key ARN", f.audit.recs, len(f.topic.subjects), len(f.reg.failures[keyARN]))
		}
	})
	for _, step := range []string{records.StepRegistry, records.StepAudit, records.StepCounted, records.StepNotified} {
		t.Run("retry after "+step+" failed to be marked", func(t *testing.T) {
			f := newFixture()
			exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:partial"
			f.fails.failStep = step
			if _, err := f.st.Run(ctx, statusChange(exec, "FAILED", flow.KeyNotReady, "x")); err == nil {
				t.Fatal("want the first attempt to fail")
			}
			f.fails.failStep = ""
			for i := 0; i < 2; i++ {
				if _, err := f.st.Run(ctx, statusChange(exec, "FAILED", flow.KeyNotReady, "x")); err != nil {
					t.Fatal(err)
				}
			}
			fr := f.fails.recs[exec]
			for _, st := range []string{records.StepRegistry, records.StepAudit, records.StepCounted, records.StepNotified} {
				if !fr.Done(st) && (st != records.StepNotified || !fr.NotifyClaimed()) {
					// A send whose mark failed leaves its claim: no
					// second send while it holds.
					t.Errorf("step %s not done after the retries", st)
				}
			}
			if len(f.audit.recs) != 1 || len(f.topic.subjects) != 1 {
				t.Fatalf("%d records, %d notifications: want 1 each", len(f.audit.recs), len(f.topic.subjects))
			}
		})
	}
	t.Run("a refused input touches no key", func(t *testing.T) {
		f := newFixture()
		exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:typo"
		s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"},
			Input: json.RawMessage(`{"keyId":"` + keyARN + `","validFor":"1s"}`),
			Error: &flow.StateError{Error: flow.InvalidInput, Cause: "field validFor"}, FailedStage: "fetch-parameters"}
		if _, err := f.st.Run(ctx, Event{State: s}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Run(ctx, statusChange(exec, "FAILED", flow.InvalidInput, "field validFor")); err != nil {
			t.Fatal(err)
		}
		if len(f.audit.recs) != 0 || len(f.topic.subjects) != 0 || len(f.reg.failures) != 0 {
			t.Fatalf("records %+v, %d notifications, registry %v: want none", f.audit.recs, len(f.topic.subjects), f.reg.failures)
		}
		if fr := f.fails.recs[exec]; fr == nil || fr.Outcome != records.FailureRefused || fr.ErrorName != flow.InvalidInput {
			t.Fatalf("failure record %+v: want the execution recorded as refused", fr)
		}
	})
}

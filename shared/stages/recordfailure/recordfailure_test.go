package recordfailure

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

// topic counts what was published.
type topic struct{ subjects []string }

func (p *topic) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	p.subjects = append(p.subjects, *in.Subject)
	return &sns.PublishOutput{}, nil
}

const keyARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

type fixture struct {
	st      *Stage
	imports *records.Imports
	tokens  *records.Tokens
	leases  *records.Leases
	topic   *topic
}

func newFixture(t *testing.T) fixture {
	db, table := ddblocal.Table(t)
	f := fixture{imports: &records.Imports{DB: db, Table: table}, tokens: &records.Tokens{DB: db, Table: table},
		leases: &records.Leases{DB: db, Table: table, Duration: time.Hour}, topic: &topic{}}
	f.st = &Stage{Audit: f.imports, Tokens: f.tokens, Leases: f.leases, Registry: &registry.Store{DB: db, Table: table}, Notify: f.topic, Topic: "arn:aws:sns:eu-west-2:111122223333:t"}
	return f
}

// openExecution leaves what a running execution holds: its lease and an
// open token record with its bytes.
func (f fixture) openExecution(t *testing.T, exec string) records.Token {
	t.Helper()
	ctx := context.Background()
	if err := f.leases.Acquire(ctx, keyARN, exec, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	tok := records.Token{KeyARN: keyARN, TokenID: "t1", IssuedAt: now, ParametersValidTo: now.Add(24 * time.Hour), ExecutionID: exec,
		Status: records.TokenWrapped, ImportToken: []byte("token"), EncryptedKeyMaterial: []byte("wrapped")}
	tok.SK = records.TokenSK(now, tok.TokenID)
	if err := f.tokens.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// settled: one import record for exec, failed with errName; its token
// without bytes; no lease left.
func (f fixture) settled(t *testing.T, exec, errName string, tok records.Token) {
	t.Helper()
	ctx := context.Background()
	recs, err := f.imports.List(ctx, keyARN)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
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
	got, err := f.tokens.GetWithToken(ctx, keyARN, tok.SK)
	if err != nil || len(got.ImportToken) != 0 || len(got.EncryptedKeyMaterial) != 0 || got.Status == records.TokenWrapped {
		t.Errorf("token record %+v (%v): want settled, without its bytes", got, err)
	}
	if err := f.leases.Acquire(ctx, keyARN, "someone-else", time.Now()); err != nil {
		t.Errorf("lease still held: %v", err)
	}
}

func statusChange(exec, status, errName string) Event {
	in, _ := json.Marshal(map[string]any{"keyId": keyARN, "secretId": "s", "validFor": "720h"})
	return Event{DetailType: StatusChangeType, Detail: &StatusChange{ExecutionArn: exec, Name: "n", Status: status,
		StartDate: time.Now().Add(-time.Minute).UnixMilli(), Input: string(in), Error: errName}}
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
			f := newFixture(t)
			exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:" + c.status
			tok := f.openExecution(t, exec)
			if _, err := f.st.Run(ctx, statusChange(exec, c.status, "")); err != nil {
				t.Fatal(err)
			}
			f.settled(t, exec, c.wantErr, tok)
			if len(f.topic.subjects) != 1 {
				t.Fatalf("%d notifications, want 1", len(f.topic.subjects))
			}
			// EventBridge delivers at least once.
			if _, err := f.st.Run(ctx, statusChange(exec, c.status, "")); err != nil {
				t.Fatal(err)
			}
			f.settled(t, exec, c.wantErr, tok)
			if len(f.topic.subjects) != 1 {
				t.Fatalf("%d notifications after a second delivery, want 1", len(f.topic.subjects))
			}
		})
	}

	t.Run("recorded by its Catch first", func(t *testing.T) {
		f := newFixture(t)
		exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:caught"
		tok := f.openExecution(t, exec)
		s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: keyARN},
			Error: &flow.StateError{Error: flow.IncorrectKeyMaterial, Cause: "{}"}, FailedStage: "import-material"}
		if _, err := f.st.Run(ctx, Event{State: s}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Run(ctx, statusChange(exec, "FAILED", flow.IncorrectKeyMaterial)); err != nil {
			t.Fatal(err)
		}
		f.settled(t, exec, flow.IncorrectKeyMaterial, tok)
		if len(f.topic.subjects) != 1 {
			t.Fatalf("%d notifications, want 1", len(f.topic.subjects))
		}
	})
}

func TestStatusChangeRefused(t *testing.T) {
	f := newFixture(t)
	for _, ev := range []Event{
		{DetailType: "Something Else", Detail: &StatusChange{ExecutionArn: "e", Status: "FAILED"}},
		{DetailType: StatusChangeType, Detail: &StatusChange{ExecutionArn: "e", Status: "SUCCEEDED"}},
		{DetailType: StatusChangeType},
	} {
		if _, err := f.st.Run(context.Background(), ev); flow.NameOf(err) != flow.InvalidInput {
			t.Errorf("%s: %v, want InvalidInput", fmt.Sprint(ev.DetailType, ev.Detail), err)
		}
	}
}

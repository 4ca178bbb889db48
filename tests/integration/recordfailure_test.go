package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/recordfailure"
)

// topic counts what was published.
type topic struct{ subjects []string }

func (p *topic) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	p.subjects = append(p.subjects, *in.Subject)
	return &sns.PublishOutput{}, nil
}

// rfFixture is the record-failure stage over the stack's DynamoDB: the
// stores' own conditional writes (import record written once, token
// transitions, lease release by its holder) as DynamoDB checks them. The
// stage's logic is unit-tested with in-memory stores in
// shared/stages/recordfailure.
type rfFixture struct {
	st     *recordfailure.Stage
	leases *records.Leases
	topic  *topic
	key    string
}

func newRFFixture(t *testing.T) rfFixture {
	f := rfFixture{leases: &records.Leases{DB: db, Table: st.Table, Duration: time.Hour}, topic: &topic{},
		key: fmt.Sprintf("arn:aws:kms:eu-west-2:111122223333:key/%s", uniq("rf"))}
	f.st = &recordfailure.Stage{Audit: aud, Tokens: toks, Leases: f.leases, Registry: &registry.Store{DB: db, Table: st.Table}, Failures: &records.Failures{DB: db, Table: st.Table},
		Notify: f.topic, Topic: "arn:aws:sns:eu-west-2:111122223333:t"}
	return f
}

// openExecution leaves what a running execution holds: its lease and an
// open token record with its bytes.
func (f rfFixture) openExecution(t *testing.T, exec string) records.Token {
	t.Helper()
	ctx := context.Background()
	if err := f.leases.Acquire(ctx, f.key, exec, time.Now()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	tok := records.Token{KeyARN: f.key, TokenID: "t1", IssuedAt: now, ParametersValidTo: now.Add(24 * time.Hour), ExecutionID: exec,
		Status: records.TokenWrapped, ImportToken: []byte("token"), EncryptedKeyMaterial: []byte("wrapped")}
	tok.SK = records.TokenSK(now, tok.TokenID)
	if err := toks.Put(ctx, tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

// settled: one import record for exec, failed with errName; its token
// without bytes; no lease left.
func (f rfFixture) settled(t *testing.T, exec, errName string, tok records.Token) {
	t.Helper()
	ctx := context.Background()
	recs, err := aud.List(ctx, f.key)
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
	got, err := toks.GetWithToken(ctx, f.key, tok.SK)
	if err != nil || len(got.ImportToken) != 0 || len(got.EncryptedKeyMaterial) != 0 || got.Status == records.TokenWrapped {
		t.Errorf("token record %+v (%v): want settled, without its bytes", got, err)
	}
	// A stopped or timed-out execution's lease is fenced out for
	// DefaultFenceHold; anyone else's execution takes it after that.
	if err := f.leases.Acquire(ctx, f.key, "someone-else", time.Now().Add(recordfailure.DefaultFenceHold+time.Second)); err != nil {
		t.Errorf("lease still held: %v", err)
	}
}

func (f rfFixture) statusChange(exec, status, errName string) recordfailure.Event {
	in, _ := json.Marshal(map[string]any{"keyId": f.key, "secretId": "s", "validFor": "720h"})
	return recordfailure.Event{DetailType: recordfailure.StatusChangeType, Detail: &recordfailure.StatusChange{ExecutionArn: exec, Name: "n", Status: status,
		StartDate: time.Now().Add(-time.Minute).UnixMilli(), Input: string(in), Error: errName}}
}

// TestRecordFailureOnDynamoDB: an execution that timed out or was stopped
// (no Catch ran) is recorded, notified and cleaned up from EventBridge's
// status change; delivered twice, or after the execution's own Catch
// recorded it, it is recorded and notified once: the import record's
// conditional put, the token transitions and the lease's conditional
// release, on DynamoDB.
func TestRecordFailureOnDynamoDB(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		status, wantErr string
	}{{"TIMED_OUT", "States.Timeout"}, {"ABORTED", "States.Aborted"}, {"FAILED", "States.Failed"}} {
		t.Run(c.status, func(t *testing.T) {
			f := newRFFixture(t)
			exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:" + uniq(c.status)
			tok := f.openExecution(t, exec)
			for delivery := 1; delivery <= 2; delivery++ { // EventBridge delivers at least once
				if _, err := f.st.Run(ctx, f.statusChange(exec, c.status, "")); err != nil {
					t.Fatal(err)
				}
				var held *records.LeaseHeld
				err := f.leases.Acquire(ctx, f.key, "next", time.Now())
				if delivery == 1 && (c.status == "FAILED") == errors.As(err, &held) {
					t.Errorf("%s: another execution's Acquire right after: %v; want the lease free only after FAILED (fenced out after TIMED_OUT, ABORTED)", c.status, err)
				}
				if err == nil {
					_ = f.leases.Release(ctx, f.key, "next")
				}
				f.settled(t, exec, c.wantErr, tok)
				if len(f.topic.subjects) != 1 {
					t.Fatalf("delivery %d: %d notifications, want 1", delivery, len(f.topic.subjects))
				}
			}
		})
	}

	t.Run("recorded by its Catch first", func(t *testing.T) {
		f := newRFFixture(t)
		exec := "arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:" + uniq("caught")
		tok := f.openExecution(t, exec)
		s := flow.State{Execution: flow.Execution{ID: exec, StartTime: "2026-01-15T06:00:00.000Z"}, Key: &flow.Key{ARN: f.key},
			Error: &flow.StateError{Error: flow.IncorrectKeyMaterial, Cause: "{}"}, FailedStage: "import-material"}
		if _, err := f.st.Run(ctx, recordfailure.Event{State: s}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Run(ctx, f.statusChange(exec, "FAILED", flow.IncorrectKeyMaterial)); err != nil {
			t.Fatal(err)
		}
		f.settled(t, exec, flow.IncorrectKeyMaterial, tok)
		if len(f.topic.subjects) != 1 {
			t.Fatalf("%d notifications, want 1", len(f.topic.subjects))
		}
	})
}

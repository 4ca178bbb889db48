package integration

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// registeredKey is a key renewed once under its ARN (and so registered),
// with an alias.
func registeredKey(t *testing.T) (arn, alias, secret string) {
	t.Helper()
	arn = externalKey(t)
	secret = materialSecret(t, randomBytes(t, 32))
	mustSucceed(t, execute(t, input{"keyId": arn, "secretId": secret, "validFor": "30d", "wrappingKeySpec": spec}, stack.ExecuteOptions{}))
	alias = "alias/" + uniq("eo")
	if _, err := kc.CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	return arn, alias, secret
}

// TestFailureUnderAliasRecordedOnce (issue 16 scenarios 5 and 7): a
// rotation named by an alias fails before the fetch stage resolved the key
// (the key is disabled). Its Catch and EventBridge's status change both
// run record-failure: the failure is recorded once, under the key's ARN
// (nothing under the alias), the registry is told once, and the failure
// record has each step done once: registry, import record, count,
// notification.
func TestFailureUnderAliasRecordedOnce(t *testing.T) {
	ctx := context.Background()
	arn, alias, secret := registeredKey(t)
	if _, err := kc.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	ex := execute(t, input{"keyId": alias, "secretId": secret, "validFor": "30d", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	mustFail(t, ex, flow.KeyNotEligible)
	if recs := importRecords(t, alias); len(recs) != 0 {
		t.Errorf("import records under the alias: %+v; want none (the key's ARN names the key)", recs)
	}
	failed := 0
	for _, r := range importRecords(t, arn) {
		if r.ExecutionID == ex.ExecutionArn {
			failed++
			if r.Outcome != records.ImportFailed {
				t.Errorf("record of the failed execution: %+v", r)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d import records of the failed execution under %s, want 1", failed, arn)
	}
	fr, err := (&records.Failures{DB: db, Table: st.Table}).Get(ctx, ex.ExecutionArn)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{records.StepRegistry, records.StepAudit, records.StepCounted, records.StepNotified} {
		if !fr.Done(step) {
			t.Errorf("failure record %+v: step %s not done", fr, step)
		}
	}
	if fr.KeyARN != arn || fr.Outcome != records.FailureFailed {
		t.Errorf("failure record %+v: want failed, under %s", fr, arn)
	}
	e, err := (&registry.Store{DB: db, Table: st.Table}).Get(ctx, arn)
	if err != nil || e.LastExecution != ex.ExecutionArn || e.LastError != flow.KeyNotEligible || e.Status != registry.Blocked {
		t.Fatalf("registry entry %+v, %v: want blocked by %s", e, err, ex.ExecutionArn)
	}
}

// TestRefusedInputLeavesTheKeyAlone (issue 18): a manual run with a typo
// is refused (InvalidInput, reported to its caller) and recorded as a
// refused execution; the key's registry entry, import records and
// failure count are untouched.
func TestRefusedInputLeavesTheKeyAlone(t *testing.T) {
	ctx := context.Background()
	arn, _, secret := registeredKey(t)
	before := importRecords(t, arn)
	ex := executeRaw(t, []byte(`{"keyId":"`+arn+`","secretId":"`+secret+`","validFor":"1s"}`), stack.ExecuteOptions{})
	mustFail(t, ex, flow.InvalidInput)
	if after := importRecords(t, arn); len(after) != len(before) {
		t.Errorf("import records %+v after the refusal, want the %d of before", after, len(before))
	}
	e, err := (&registry.Store{DB: db, Table: st.Table}).Get(ctx, arn)
	if err != nil || e.LastError != "" || e.Status != registry.Active || e.LastExecution == ex.ExecutionArn {
		t.Fatalf("registry entry %+v, %v: want it untouched by the refused execution", e, err)
	}
	fr, err := (&records.Failures{DB: db, Table: st.Table}).Get(ctx, ex.ExecutionArn)
	if err != nil || fr.Outcome != records.FailureRefused || fr.Done(records.StepCounted) || fr.Done(records.StepNotified) {
		t.Fatalf("failure record %+v, %v: want refused, not counted, not notified", fr, err)
	}
}

// fleetInput is the child input a fleet run gives the rotation of e: the
// planner's item as JSON.
func fleetInput(t *testing.T, e registry.Entry) []byte {
	t.Helper()
	b, err := json.Marshal(planner.ItemOf(e))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFleetRunKeepsOperatorsChanges (issue 16 scenario 6): a key planned
// by a fleet run, then given a new policy, or deregistered, by an operator
// before its rotation ends: the rotation renews the key, but the registry
// keeps the operator's policy, and the deregistered key stays
// deregistered.
func TestFleetRunKeepsOperatorsChanges(t *testing.T) {
	ctx := context.Background()
	reg := &registry.Store{DB: db, Table: st.Table}
	t.Run("policy changed after planning", func(t *testing.T) {
		arn, _, _ := registeredKey(t)
		planned, err := reg.Get(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		in := fleetInput(t, *planned)
		changed := *planned
		changed.ValidFor, changed.RenewBefore = "60d", "20d"
		if err := reg.Put(ctx, changed); err != nil {
			t.Fatal(err)
		}
		mustSucceed(t, executeRaw(t, in, stack.ExecuteOptions{}))
		e, err := reg.Get(ctx, arn)
		if err != nil || e.ValidFor != "60d" || e.RenewBefore != "20d" || e.LastSuccess == nil || !e.LastSuccess.After(*planned.LastSuccess) {
			t.Fatalf("registry entry %+v, %v: want the operator's policy (60d, 20d) with the renewal noted", e, err)
		}
	})
	t.Run("deregistered after planning", func(t *testing.T) {
		arn, _, _ := registeredKey(t)
		planned, err := reg.Get(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		in := fleetInput(t, *planned)
		if err := reg.Delete(ctx, arn); err != nil {
			t.Fatal(err)
		}
		mustSucceed(t, executeRaw(t, in, stack.ExecuteOptions{}))
		if e, err := reg.Get(ctx, arn); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("deregistered key brought back: %+v, %v", e, err)
		}
	})
}

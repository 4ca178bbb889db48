package rotation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// AWS behaviours the product lives with (docs/aws-behaviour.md), end to
// end through the state machine on the stand-in, whose delays this suite
// shortens but never turns off.

// waits counts the Wait states an execution went through between verify
// passes.
func waits(r result) int {
	n := 0
	for _, s := range r.ex.States {
		if s.Name == "WaitForKMS" {
			n++
		}
	}
	return n
}

func count(reqs []string, op string) int {
	n := 0
	for _, o := range reqs {
		if o == op {
			n++
		}
	}
	return n
}

func rawOps(r result) []string {
	var o []string
	for _, q := range r.reqs {
		s := q.Operation
		if q.Error != "" {
			s += "!" + q.Error
		}
		o = append(o, s)
	}
	return o
}

// onDemandRotations counts the completed on-demand rotations KMS lists.
func onDemandRotations(t *testing.T, arn string) int {
	t.Helper()
	out, err := kc.ListKeyRotations(context.Background(), &kms.ListKeyRotationsInput{KeyId: &arn})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range out.Rotations {
		if e.RotationType == types.RotationTypeOnDemand {
			n++
		}
	}
	return n
}

// TestDelayedRotationIsWaitedFor: RotateKeyOnDemand only starts the
// rotation. The execution waits (Wait states, not a sleeping Lambda) and
// polls GetKeyRotationStatus until KMS has finished, then verifies.
func TestDelayedRotationIsWaitedFor(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	mustSucceed(t, r)
	raw := rawOps(r)
	if count(raw, "RotateKeyOnDemand") != 1 {
		t.Fatalf("RotateKeyOnDemand %d times, want once: %v", count(raw, "RotateKeyOnDemand"), raw)
	}
	if waits(r) < 1 || count(raw, "GetKeyRotationStatus") < 2 {
		t.Fatalf("%d waits and %d GetKeyRotationStatus: the execution did not wait for the rotation to finish", waits(r), count(raw, "GetKeyRotationStatus"))
	}
	if n := onDemandRotations(t, arn); n != 1 {
		t.Fatalf("%d on-demand rotations listed, want 1", n)
	}
	if rec := lastAudit(t, arn); !rec.Rotated || rec.Outcome != "succeeded" {
		t.Fatalf("audit record %+v", rec)
	}
}

// TestRenewalVerifiedThroughStaleReads: right after the import, DescribeKey
// still shows the key as it was; the verify stage checks again after a
// wait instead of failing.
func TestRenewalVerifiedThroughStaleReads(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	time.Sleep(400 * time.Millisecond) // the first import's writes are visible
	valid := vt(40 * 24 * time.Hour)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validTo": valid.Format(time.RFC3339)})
	mustSucceed(t, r)
	if waits(r) < 1 {
		t.Fatalf("no wait between verify passes: the reads after the import were not stale (states %+v)", r.ex.States)
	}
	rec := lastAudit(t, arn)
	if rec.ValidTo == nil || !rec.ValidTo.Equal(valid) {
		t.Fatalf("audit ValidTo %v, want %s", rec.ValidTo, valid)
	}
}

// TestRotationConflictThenSucceeds: ConflictException (a rotation in
// progress) is RotationConflict, retried with backoff; the rotation then
// goes through.
func TestRotationConflictThenSucceeds(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	fault(t, "RotateKeyOnDemand", "ConflictException", 2)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	fault(t, "", "", 0)
	mustSucceed(t, r)
	raw := rawOps(r)
	if count(raw, "RotateKeyOnDemand!ConflictException") != 2 || count(raw, "RotateKeyOnDemand") != 1 {
		t.Fatalf("requests %v: want two conflicts, then one rotation", raw)
	}
	retried := 0
	for _, s := range r.ex.States {
		if s.Name == "VerifyImport" && s.Error == "RotationConflict" {
			retried++
		}
	}
	if retried != 2 {
		t.Errorf("VerifyImport failed with RotationConflict %d times, want 2 (retried): %+v", retried, r.ex.States)
	}
	if n := onDemandRotations(t, arn); n != 1 {
		t.Fatalf("%d on-demand rotations, want 1", n)
	}
}

// TestRotationQuotaRefusedUpFront: a key that has had the 25 on-demand
// rotations KMS allows over its life is refused with RotationLimitExceeded
// before anything changes: no material generated, nothing imported.
func TestRotationQuotaRefusedUpFront(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	for i := 0; onDemandRotations(t, arn) < 25; i++ {
		if i > 40 {
			t.Fatalf("could not reach 25 rotations (%d)", onDemandRotations(t, arn))
		}
		r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
		mustSucceed(t, r)
	}
	versions := versionIDs(t, name)
	materials := len(rotations(t, arn))
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	if r.ex.Status != "FAILED" || r.ex.Error != "RotationLimitExceeded" || !strings.Contains(r.ex.Cause, "25") {
		t.Fatalf("at the quota: %s %s: %s; want FAILED with RotationLimitExceeded naming the quota", r.ex.Status, r.ex.Error, r.ex.Cause)
	}
	for _, op := range rawOps(r) {
		if op != "DescribeKey" && op != "ListKeyRotations" {
			t.Fatalf("at the quota the execution called %s: %v", op, rawOps(r))
		}
	}
	if v := versionIDs(t, name); len(v) != len(versions) {
		t.Errorf("secret versions %d -> %d: material generated for a refused rotation", len(versions), len(v))
	}
	if n := len(rotations(t, arn)); n != materials {
		t.Errorf("materials %d -> %d", materials, n)
	}
}

// TestResumedRotationAlreadyCurrent: an execution imported new material
// and started its rotation, then failed before it could see the rotation
// finish. The next execution finds the material current: a resumed
// success. Exactly one rotation in KMS, none started again, lastRotation
// recorded.
func TestResumedRotationAlreadyCurrent(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	reg := &registry.Store{DB: db, Table: st.Table}
	// Registered, so lastRotation has somewhere to go.
	mustSucceed(t, execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "register": true, "renewBefore": "7d"}))
	// Every verify pass fails after RotateKeyOnDemand went through.
	fault(t, "GetKeyRotationStatus", "KMSInternalException", 1000)
	fault(t, "RotateKeyOnDemand", "ThrottlingException", 1000)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	fault(t, "", "", 0)
	if r.ex.Status != "FAILED" {
		t.Fatalf("first run %s, want FAILED", r.ex.Status)
	}
	// What the failed execution's RotateKeyOnDemand would have done: the
	// rotation, finished in the background.
	if _, err := kc.RotateKeyOnDemand(context.Background(), &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for onDemandRotations(t, arn) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the rotation never finished")
		}
		time.Sleep(100 * time.Millisecond)
	}
	versions := versionIDs(t, name)

	r = execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	mustSucceed(t, r)
	if n := count(rawOps(r), "RotateKeyOnDemand"); n != 0 {
		t.Fatalf("the resumed run rotated %d times: %v", n, rawOps(r))
	}
	if n := count(rawOps(r), "ImportKeyMaterial"); n != 0 {
		t.Fatalf("the resumed run imported %d times: %v", n, rawOps(r))
	}
	if n := onDemandRotations(t, arn); n != 1 {
		t.Fatalf("%d on-demand rotations, want exactly 1", n)
	}
	if v := versionIDs(t, name); len(v) != len(versions) {
		t.Errorf("secret versions %d -> %d: new material generated again", len(versions), len(v))
	}
	rec := lastAudit(t, arn)
	if !rec.Resumed || !rec.Rotated {
		t.Errorf("audit record: resumed %v rotated %v", rec.Resumed, rec.Rotated)
	}
	e, err := reg.Get(context.Background(), arn)
	if err != nil || e.LastRotation == nil {
		t.Fatalf("registry entry %+v (%v): lastRotation not recorded", e, err)
	}
}

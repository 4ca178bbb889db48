package rotation

import (
	"bytes"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

// TestCrashAfterNewMaterialImportRecovered is issue 16's scenario 3: the
// import function dies right after KMS took a NEW_KEY_MATERIAL import,
// before anything recorded it. Step Functions retries the stage
// (Runtime.ExitError); the retry must recognise the material its
// execution imported (KMS would refuse it as new again) and complete the
// rotation: no hand edit, the material map knows the new material.
func TestCrashAfterNewMaterialImportRecovered(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	id1 := firstImport(t, arn, name)
	var armed, kills atomic.Int32
	armed.Store(1)
	importKMS.AfterForward = func(op string, body []byte) {
		if strings.HasSuffix(op, ".ImportKeyMaterial") && bytes.Contains(body, []byte(`"NEW_KEY_MATERIAL"`)) && armed.Add(-1) == 0 {
			for _, pid := range st.FunctionProcesses("ImportMaterialFunction") {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					kills.Add(1)
				}
			}
		}
	}
	defer func() { importKMS.AfterForward = nil }()
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	if kills.Load() == 0 {
		t.Fatalf("no import function was killed after a NEW_KEY_MATERIAL import: the fault was not injected (KMS requests %s)", ops(r.reqs))
	}
	if r.ex.Status != "SUCCEEDED" {
		for _, e := range rotations(t, arn) {
			t.Logf("material %s: %s %s %s %v (map: %+v)", *e.KeyMaterialId, e.KeyMaterialState, e.ImportState, e.ExpirationModel, e.ValidTo, materialMap(t, arn)[*e.KeyMaterialId])
		}
		t.Logf("KMS requests %s", ops(r.reqs))
	}
	mustSucceed(t, r)
	var current string
	for _, e := range rotations(t, arn) {
		if e.KeyMaterialState == types.KeyMaterialStateCurrent {
			current = *e.KeyMaterialId
		}
	}
	if current == "" || current == id1 {
		t.Fatalf("current material %q (first %s): the rotation did not complete; KMS requests %s", current, id1, ops(r.reqs))
	}
	m := materialMap(t, arn)
	if m[current].State != records.MaterialCurrent {
		t.Fatalf("material map %+v: does not know the new material %s as current", m, current)
	}
	if rec := lastAudit(t, arn); rec.Outcome != records.ImportSucceeded || !rec.Rotated || rec.NewMaterialID != current {
		t.Errorf("audit record: outcome %s rotated %v new %s, want a success rotated to %s", rec.Outcome, rec.Rotated, rec.NewMaterialID, current)
	}
	t.Logf("killed %d import processes; KMS requests %s", kills.Load(), ops(r.reqs))
}

package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// TestStoppedImportCannotLandAfterANewerOne is issue 16's scenario 1: a
// rotation with validFor 1h is stopped while its ImportKeyMaterial is
// held in the network (the fault proxy holds the request; the Lambda
// invoked before the stop runs on, as in AWS); EventBridge's ABORTED event
// reaches record-failure; a rerun with 90 days follows at once. The held
// import then lands. However the run goes, KMS must end with the 90-day
// ValidTo and the registry must agree: the stopped execution's fenced
// lease keeps the rerun out until the late import can no longer land
// (record-failure releasing the lease at once lets the rerun import
// first, and the late 1-hour import last). On the stand-in, not
// local-kms: local-kms keeps only a key's newest import parameters, so the
// rerun's GetParametersForImport would void the late import's token; KMS
// and the stand-in honour every token within its 24 hours.
func TestStoppedImportCannotLandAfterANewerOne(t *testing.T) {
	arn := externalKey(t, false)
	secretID, _ := secret(t)
	firstImport(t, arn, secretID)
	held, release := make(chan struct{}), make(chan struct{})
	var armed atomic.Int32
	armed.Store(1)
	importKMS.BeforeForward = func(op string, _ []byte) {
		if strings.HasSuffix(op, ".ImportKeyMaterial") && armed.Add(-1) == 0 {
			close(held)
			select {
			case <-release:
			case <-time.After(25 * time.Second): // inside the function's 30 s Timeout
			}
		}
	}
	defer func() { importKMS.BeforeForward = nil }()
	released := false
	letGo := func() {
		if !released {
			released = true
			close(release)
		}
	}
	defer letGo()

	// The stopped execution: one hour.
	short, _ := json.Marshal(map[string]any{"keyId": arn, "secretId": secretID, "validFor": "1h", "register": false})
	name := fmt.Sprintf("late-stopped-%d", time.Now().UnixNano())
	ctx, stop := context.WithCancel(context.Background())
	start := time.Now()
	ended := make(chan error, 1)
	go func() {
		ex, err := st.Execute(ctx, root, short, stack.ExecuteOptions{Name: name, WaitScale: "0.01", Functions: emulators(0)})
		if err == nil {
			err = fmt.Errorf("%s %s: %s", ex.Status, ex.Error, ex.Cause)
		}
		ended <- err
	}()
	select {
	case <-held:
	case err := <-ended:
		stop()
		t.Fatalf("the 1-hour execution ended (%v) before its ImportKeyMaterial was held: the fault was not injected", err)
	case <-time.After(2 * time.Minute):
		stop()
		t.Fatal("no ImportKeyMaterial reached KMS within 2 minutes")
	}
	stop() // StopExecution: the runner stops; the import stage's Lambda runs on
	<-ended
	deliverAborted(t, name, short, start)

	// The rerun: 90 days, started while the stopped import is in flight.
	long, _ := json.Marshal(map[string]any{"keyId": arn, "secretId": secretID, "validFor": "2160h", "register": true})
	first := rerun(t, long)
	letGo() // the late import lands now
	time.Sleep(3 * time.Second)
	outcome := first
	for deadline := time.Now().Add(4 * time.Minute); outcome == "ALREADY_IN_PROGRESS" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Second)
		outcome = rerun(t, long)
	}
	if outcome != "IMPORTED" {
		t.Fatalf("the 90-day rerun never imported (first attempt: %s, last: %s)", first, outcome)
	}
	t.Logf("rerun while the stopped import was held: %s", first)

	md, err := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		t.Fatal(err)
	}
	vt := md.KeyMetadata.ValidTo
	if vt == nil || time.Until(*vt) < 89*24*time.Hour {
		t.Fatalf("KMS ValidTo %v (%s): the stopped 1-hour import landed after the 90-day one", vt, md.KeyMetadata.KeyState)
	}
	e, err := (&registry.Store{DB: db, Table: st.Table}).Get(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	if e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(*vt) {
		t.Fatalf("registry currentValidTo %v, KMS ValidTo %v", e.CurrentValidTo, vt)
	}
}

// deliverAborted hands RecordFailureFunction EventBridge's status change
// for the execution name, stopped (ABORTED), as template.yaml's
// FailedRotationRule routes it.
func deliverAborted(t *testing.T, name string, input []byte, start time.Time) {
	t.Helper()
	ev, _ := json.Marshal(map[string]any{
		"version": "0", "id": name, "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
		"account": stack.Account, "region": stack.Region, "time": time.Now().UTC().Format(time.RFC3339),
		"detail": map[string]any{
			"executionArn":    fmt.Sprintf("arn:aws:states:%s:%s:execution:RotationStateMachine:%s", stack.Region, stack.Account, name),
			"stateMachineArn": fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:RotationStateMachine", stack.Region, stack.Account),
			"name":            name, "status": "ABORTED", "startDate": start.UnixMilli(), "stopDate": time.Now().UnixMilli(),
			"input": string(input), "inputDetails": map[string]any{"included": true},
		},
	})
	out, fnErr, err := st.Invoke(context.Background(), "RecordFailureFunction", ev)
	if err != nil || fnErr {
		t.Fatalf("record-failure on the ABORTED execution %s: %v %s", name, err, out)
	}
}

// rerun runs one rotation and says how it ended: IMPORTED,
// ALREADY_IN_PROGRESS, or the failure.
func rerun(t *testing.T, input []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Its own emulator of every function, as Lambda would run it beside
	// the stopped execution's invocation (an emulator takes one at a time).
	ex, err := st.Execute(ctx, root, input, stack.ExecuteOptions{WaitScale: "0.01", Functions: emulators(1)})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != "SUCCEEDED" {
		return ex.Status + " " + ex.Error + ": " + ex.Cause
	}
	var out map[string]any
	_ = json.Unmarshal(ex.Output, &out)
	switch {
	case out["outcome"] == "ALREADY_IN_PROGRESS":
		return "ALREADY_IN_PROGRESS"
	case out["verification"] != nil:
		return "IMPORTED"
	}
	return "SUCCEEDED " + string(ex.Output)
}

// emulators picks the i-th emulator of each function's pool.
func emulators(i int) map[string]string {
	fns := map[string]string{}
	for id, urls := range st.Pools {
		fns[id] = urls[i%len(urls)]
	}
	return fns
}

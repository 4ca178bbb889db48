package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

func TestKMSThrottlingAShareOfCalls(t *testing.T) {
	arns := managedKeys(t, 20, "throttle")
	kmsProxy.ThrottleEvery.Store(3) // one KMS call in three answers ThrottlingException
	defer kmsProxy.ThrottleEvery.Store(0)
	fleetRun(t)
	if kmsProxy.Throttled.Load() == 0 {
		t.Fatal("no call was throttled: the fault was not injected")
	}
	t.Logf("%d of %d KMS calls throttled", kmsProxy.Throttled.Load(), kmsProxy.Requests.Load())
	settled(t, arns, 1)
}

func TestKMSStoppedMidRunAndStartedAgain(t *testing.T) {
	arns := managedKeys(t, 16, "kmsdown")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Wait until some keys are done, then take KMS away for a while.
		for i := 0; i < 200; i++ {
			n := 0
			for _, a := range arns {
				if recs, _ := aud.List(context.Background(), a); len(recs) > 0 {
					n++
				}
			}
			if n >= 3 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := st.Stop(stack.KMSLocal); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(1500 * time.Millisecond)
		if err := st.Restart(stack.KMSLocal); err != nil {
			t.Error(err)
		}
	}()
	before := kmsProxy.UpstreamErrors.Load()
	fleetRun(t)
	<-done
	if kmsProxy.UpstreamErrors.Load() == before {
		t.Fatal("no KMS call met the outage: the fault was not injected mid-run")
	}
	t.Logf("%d KMS calls met the outage", kmsProxy.UpstreamErrors.Load()-before)
	// Whatever the first run could not do, it recorded (and EventBridge's
	// status change settled the lease of any execution that could not
	// record itself); the next run finishes the job.
	fleetRun(t)
	settled(t, arns, 1)
}

func TestFunctionKilledRightAfterImport(t *testing.T) {
	arns := managedKeys(t, 3, "crash")
	var armed atomic.Int32
	armed.Store(int32(len(arns)))
	var kills atomic.Int32
	kmsProxy.AfterForward = func(op string, _ []byte) {
		// KMS has imported; the import function dies before it can record
		// it. Step Functions retries the stage (Runtime.ExitError).
		if strings.HasSuffix(op, ".ImportKeyMaterial") && armed.Add(-1) >= 0 {
			kills.Add(int32(kill(t, "ImportMaterialFunction")))
		}
	}
	defer func() { kmsProxy.AfterForward = nil }()
	// And the fetch function dies right after recording a token: the
	// retried stage fetches another, and the first must not stay open.
	var fetchArmed atomic.Int32
	fetchArmed.Store(2)
	dbProx.AfterForward = func(op string, body []byte) {
		if strings.HasSuffix(op, ".PutItem") && bytes.Contains(body, []byte(`"TOKEN#`)) && fetchArmed.Add(-1) >= 0 {
			kills.Add(int32(kill(t, "FetchParametersFunction")))
		}
	}
	defer func() { dbProx.AfterForward = nil }()
	ex := fleetRun(t)
	if kills.Load() == 0 {
		t.Fatal("no function process was killed: the fault was not injected")
	}
	t.Logf("killed %d function processes; child executions %v", kills.Load(), ex.ChildExecutions)
	fleetRun(t)
	settled(t, arns, 0)
}

func TestTwoExecutionsOnOneKeyAtOnce(t *testing.T) {
	arns := managedKeys(t, 1, "race")
	in, _ := json.Marshal(map[string]any{"keyId": arns[0], "secretId": mustEntry(t, arns[0]).SecretID, "validFor": "2160h", "wrappingKeySpec": "RSA_2048"})
	var wg sync.WaitGroup
	res := make([]*stack.Execution, 2)
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Each execution gets its own emulator of every function, as
			// Lambda would run them side by side (an emulator takes one
			// invocation at a time).
			fns := map[string]string{}
			for id, urls := range st.Pools {
				fns[id] = urls[i%len(urls)]
			}
			// A slow wrap stage: both executions are surely in flight
			// together, whichever takes the lease first.
			fns["WrapMaterialFunction"] = slow(t, fns["WrapMaterialFunction"], 700*time.Millisecond)
			ex, err := st.Execute(context.Background(), root, in, stack.ExecuteOptions{WaitScale: "0.05", Functions: fns})
			if err != nil {
				t.Error(err)
				return
			}
			res[i] = ex
		}(i)
	}
	wg.Wait()
	imported, busy := 0, 0
	for _, ex := range res {
		if ex == nil || ex.Status != "SUCCEEDED" {
			t.Fatalf("execution: %+v", ex)
		}
		var out map[string]any
		_ = json.Unmarshal(ex.Output, &out)
		switch {
		case out["outcome"] == "ALREADY_IN_PROGRESS":
			busy++
		case out["verification"] != nil:
			imported++
		}
	}
	if imported != 1 || busy != 1 {
		t.Fatalf("imported %d, already in progress %d: want exactly one import", imported, busy)
	}
	recs, _ := aud.List(context.Background(), arns[0])
	if len(recs) != imported {
		t.Fatalf("%d import records for %d imports", len(recs), imported)
	}
	t.Log("exactly one execution imported; the other ended cleanly: already in progress")
	settled(t, arns, imported)
}

func TestDynamoDBUnavailableForAWhile(t *testing.T) {
	arns := managedKeys(t, 12, "ddbdown")
	// The outage is started by the run's own traffic, not by a clock: when
	// the third token record of the run has been written, rotations are
	// under way and each still has to wrap, import and record, all through
	// DynamoDB. (Waiting for a given key's import record, as this test once
	// did, started it at the END of that key's rotation: when the key came
	// last in the registry's order, or the run was slower than the wait,
	// the outage fell after the run's last DynamoDB request.) It lasts 2 s,
	// and until a request has met it.
	droppedBefore := dbProx.Dropped.Load()
	started, stop := make(chan struct{}), make(chan struct{})
	var puts atomic.Int32
	var once sync.Once
	dbProx.AfterForward = func(op string, body []byte) {
		if strings.HasSuffix(op, ".PutItem") && bytes.Contains(body, []byte(`"sk":{"S":"TOKEN#`)) && puts.Add(1) == 3 {
			dbProx.Down.Store(true) // before this answer reaches the function
			once.Do(func() { close(started) })
		}
	}
	var outage time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-started:
		case <-stop:
			return
		}
		begin := time.Now()
		for time.Since(begin) < 30*time.Second && (time.Since(begin) < 2*time.Second || dbProx.Dropped.Load() == droppedBefore) {
			select {
			case <-stop:
				dbProx.Down.Store(false)
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		dbProx.Down.Store(false)
		outage = time.Since(begin)
	}()
	defer func() {
		dbProx.AfterForward = nil
		dbProx.Down.Store(false)
	}()
	// The definition's real backoff (2 s, 4 s, ... with jitter): what rides
	// out an outage in production.
	fleetRunScaled(t, "1")
	close(stop)
	<-done
	dropped := dbProx.Dropped.Load() - droppedBefore
	if dropped == 0 {
		t.Fatal("no DynamoDB request was dropped: the fault was not injected")
	}
	t.Logf("%d DynamoDB requests dropped during an outage of %s", dropped, outage.Round(time.Millisecond))
	fleetRun(t)
	settled(t, arns, 0)
	for _, a := range arns {
		recs, _ := aud.List(context.Background(), a)
		for _, r := range recs {
			if r.Outcome == records.ImportFailed && r.ErrorName != "AWSTransient" && r.ErrorName != "TokenStateConflict" {
				t.Errorf("%s: unexpected failure %s: %s", a, r.ErrorName, r.Cause)
			}
		}
	}
}

func mustEntry(t *testing.T, arn string) *registry.Entry {
	t.Helper()
	e, err := reg.Get(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// slow forwards to target after a delay.
func slow(t *testing.T, target string, d time.Duration) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		resp, err := http.Post(target, "application/json", r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTaskTimesOutAndIsRetried: a function that outlives its timeout
// reaches Step Functions as Sandbox.Timedout, which every Task retries like
// the other Lambda service errors. Here KMS answers the first
// GetParametersForImport after the fetch function's 4-second timeout: the
// retried stage asks again and the rotation succeeds.
func TestTaskTimesOutAndIsRetried(t *testing.T) {
	arns := managedKeys(t, 1, "timeout")
	var armed, gpi atomic.Int32
	armed.Store(1)
	kmsProxy.AfterForward = func(op string, _ []byte) {
		if strings.HasSuffix(op, ".GetParametersForImport") {
			gpi.Add(1)
			if armed.Add(-1) >= 0 {
				time.Sleep(6 * time.Second)
			}
		}
	}
	defer func() { kmsProxy.AfterForward = nil }()
	ex := fleetRun(t)
	if armed.Load() >= 0 {
		t.Fatal("no GetParametersForImport was delayed: the fault was not injected")
	}
	if ex.ChildExecutions["FAILED"] != 0 || gpi.Load() != 2 {
		t.Fatalf("child executions %v, GetParametersForImport %d times: want the timed-out stage retried once and the rotation done", ex.ChildExecutions, gpi.Load())
	}
	settled(t, arns, 0)
}

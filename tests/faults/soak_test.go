package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// BenchmarkSoak renews a fleet over several fleet runs while faults are
// injected at random: KMS throttling, import functions killed right after
// ImportKeyMaterial, local-kms restarted mid-run, DynamoDB unavailable for
// a moment, keys Disabled for a run and enabled again, one execution
// stopped mid-rotation. After EVERY run (faulty or clean) checkRun
// (invariants_test.go) checks what the soak observed: no Enabled key
// reached PendingImport (DescribeKey sampled through the run); no KMS
// ValidTo went backwards; a renewed key's registry entry agrees with KMS;
// each child execution that did not succeed has exactly one failure
// record and one notification (SNS, through a subscribed SQS queue); no
// import token or material in the function logs, the executions' output,
// SNS messages or the table. A last run goes without faults; then
// settled's invariants are checked too. Long, so not in `make test`: run
// it with `make soak` (SOAK_KEYS, default 200; SOAK_RUNS, default 3 runs
// with faults; SOAK_SEED).
func BenchmarkSoak(b *testing.B) {
	keys, runs := envInt("SOAK_KEYS", 200), envInt("SOAK_RUNS", 3)
	seed := uint64(envInt("SOAK_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 1))
	b.Logf("soak: %d keys, %d runs with faults, seed %d", keys, runs, seed)
	arns := managedKeys(b, keys, "soak")
	obs := newObserver(b)
	defer obs.close()
	sk := &soak{arns: arns, rng: rng, obs: obs, material: materials(b, arns), prevValidTo: map[string]time.Time{}}
	kmsProxy.AfterForward = func(op string, _ []byte) {
		if strings.HasSuffix(op, ".ImportKeyMaterial") && sk.killArmed.Add(-1) >= 0 {
			sk.killed.Add(int64(kill(b, "ImportMaterialFunction")))
		}
	}
	// Throttling hits the rotations' KMS calls, not the planner's
	// DescribeKey: a fixed share of requests throttled, however slowly
	// they come, keeps the SDK's client-side rate limiting slowing the
	// planner's reads of a 100-key page (one every ~2 s) past its 60 s
	// Timeout, and every retry starts the page again; real KMS throttles
	// by rate, which slowing down relieves.
	kmsProxy.ThrottleOnly("GetParametersForImport", "ImportKeyMaterial", "ListKeyRotations", "Encrypt", "Decrypt")
	defer func() {
		kmsProxy.AfterForward = nil
		kmsProxy.ThrottleEvery.Store(0)
		kmsProxy.ThrottleOnly()
		dbProx.Down.Store(false)
	}()
	start := time.Now()
	var v []string
	for run := 1; run <= runs+1; run++ {
		v = append(v, sk.run(b, run, run <= runs)...)
	}
	failures, abortsRecorded := 0, int64(0)
	for _, a := range arns {
		recs, err := aud.List(context.Background(), a)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if r.Outcome == records.ImportFailed {
				failures++
				if r.ErrorName == "States.Aborted" {
					abortsRecorded++
				}
			}
		}
	}
	final, err := violations(arns, 0)
	if err != nil {
		b.Fatal(err)
	}
	v = append(v, final...)
	if abortsRecorded != sk.aborted {
		v = append(v, fmt.Sprintf("%d executions aborted, %d recorded as States.Aborted", sk.aborted, abortsRecorded))
	}
	fmt.Printf("soak: %d keys, %d fleet runs (+1 clean) in %s, seed %d\n", keys, runs, time.Since(start).Round(time.Second), seed)
	fmt.Printf("soak: faults injected: %d throttled KMS answers, %d function processes killed, %d local-kms restarts, %d DynamoDB requests dropped, %d keys disabled for a run, %d executions aborted\n",
		sk.throttled, sk.killed.Load(), sk.restarts, sk.dropped, sk.disabled, sk.aborted)
	fmt.Printf("soak: invariants checked after each of %d runs: %d key observations, %d DescribeKey samples, %d failure records, %d failure notifications, %d blobs scanned for %d secrets\n",
		runs+1, sk.keyObs, sk.samples, sk.records, sk.notified, sk.blobs, sk.secrets)
	fmt.Printf("soak: failures recorded: %d; invariant violations: %d\n", failures, len(v))
	for _, e := range v {
		b.Error(e)
	}
	b.ReportMetric(float64(len(v)), "violations")
	b.ReportMetric(float64(failures), "failures-recorded")
}

// soak is the state of one soak across its runs.
type soak struct {
	arns        []string
	rng         *rand.Rand
	obs         *observer
	material    []secret
	prevValidTo map[string]time.Time
	lastAbort   time.Time

	throttled, restarts, dropped, disabled, aborted int64
	keyObs, samples, records, notified              int
	blobs, secrets                                  int
	killArmed                                       atomic.Int32
	killed                                          atomic.Int64
}

// run is one fleet run (with faults or clean), then checkRun over what it
// left.
func (sk *soak) run(b *testing.B, run int, faulty bool) []string {
	ctx := context.Background()
	if run > 1 { // the first run imports every key: all are due
		makeDue(b, sk.arns)
	}
	var off []string
	if faulty {
		// A few keys Disabled for this run (blocked, then renewed once
		// enabled again).
		for i := 0; i < 1+len(sk.arns)/50; i++ {
			a := sk.arns[sk.rng.IntN(len(sk.arns))]
			if _, err := kc.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &a}); err == nil {
				off = append(off, a)
			}
		}
		sk.disabled += int64(len(off))
		kmsProxy.ThrottleEvery.Store(int64(3 + sk.rng.IntN(8)))
		sk.killArmed.Store(int32(1 + sk.rng.IntN(3)))
	} else {
		kmsProxy.ThrottleEvery.Store(0)
		sk.killArmed.Store(0)
		// A stopped execution's lease stays fenced for record-failure's
		// hold (2 minutes): a key stopped in the last faulty run is
		// "already in progress" until then. The clean run comes after.
		if wait := time.Until(sk.lastAbort.Add(2*time.Minute + 10*time.Second)); wait > 0 {
			time.Sleep(wait)
		}
	}
	enabled := map[string]bool{}
	before := map[string]int{}
	for _, a := range sk.arns {
		md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &a})
		if err != nil {
			b.Fatal(err)
		}
		enabled[a] = md.KeyMetadata.KeyState == kmstypes.KeyStateEnabled
		before[a] = successes(b, a)
	}
	runStart := time.Now()
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() { defer close(sampled); sk.obs.sample(sk.arns, stopSampling) }()
	throttledBefore, droppedBefore := kmsProxy.Throttled.Load(), dbProx.Dropped.Load()
	done := make(chan struct{})
	notSucceeded := 0
	if faulty {
		// local-kms restarted at a random moment of every faulty run,
		// then DynamoDB unavailable for a second.
		go func(at, blip time.Duration) {
			defer close(done)
			time.Sleep(at)
			if err := st.Restart(stack.KMSLocal); err == nil {
				atomic.AddInt64(&sk.restarts, 1)
			}
			time.Sleep(blip)
			dbProx.Down.Store(true)
			time.Sleep(time.Second)
			dbProx.Down.Store(false)
		}(time.Duration(500+sk.rng.IntN(3000))*time.Millisecond, time.Duration(sk.rng.IntN(3000))*time.Millisecond)
		stopped, failed := abortOne(b, sk.arns[sk.rng.IntN(len(sk.arns))], run, time.Duration(200+sk.rng.IntN(600))*time.Millisecond)
		if stopped {
			sk.aborted++
			sk.lastAbort = time.Now()
		}
		if stopped || failed {
			notSucceeded++
		}
	} else {
		close(done)
	}
	ex := fleetRun(b)
	<-done
	close(stopSampling)
	<-sampled
	sk.throttled += kmsProxy.Throttled.Load() - throttledBefore
	sk.dropped += dbProx.Dropped.Load() - droppedBefore
	b.Logf("run %d (%s): child executions %v", run, map[bool]string{true: "faults", false: "clean"}[faulty], ex.ChildExecutions)
	for _, a := range off {
		if _, err := kc.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &a}); err != nil {
			b.Fatal(err)
		}
	}
	for status, n := range ex.ChildExecutions {
		if status != "SUCCEEDED" {
			notSucceeded += n
		}
	}
	f := sk.observe(b, run, enabled, before, runStart, notSucceeded, ex)
	v := checkRun(sk.prevValidTo, f)
	for a, k := range f.Keys {
		if k.ValidTo != nil {
			sk.prevValidTo[a] = *k.ValidTo
		}
	}
	b.Logf("run %d: %d invariant violations", run, len(v))
	return v
}

// observe collects runFacts once a run has ended.
func (sk *soak) observe(b *testing.B, run int, enabled map[string]bool, before map[string]int, start time.Time, notSucceeded int, ex *stack.Execution) runFacts {
	ctx := context.Background()
	f := runFacts{Run: run, Keys: map[string]keyRun{}, NotSucceeded: notSucceeded,
		FailureRecords: map[string]int{}, ImportFailures: map[string]int{}, Notifications: map[string]int{}}
	sk.obs.mu.Lock()
	states, tokens := sk.obs.states, sk.obs.tokens
	sk.obs.states, sk.obs.tokens = map[string][]string{}, nil
	sk.obs.mu.Unlock()
	for _, a := range sk.arns {
		md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &a})
		if err != nil {
			b.Fatal(err)
		}
		recs, err := aud.List(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		ok := 0
		for _, r := range recs {
			switch {
			case r.Outcome == records.ImportSucceeded:
				ok++
			case r.Outcome == records.ImportFailed && !r.RecordedAt.Before(start):
				f.ImportFailures[r.ExecutionID]++
			}
		}
		e, err := reg.Get(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		sk.samples += len(states[a])
		f.Keys[a] = keyRun{EnabledAtStart: enabled[a], States: append(states[a], string(md.KeyMetadata.KeyState)),
			ValidTo: md.KeyMetadata.ValidTo, Renewed: ok > before[a], RegistryValidTo: e.CurrentValidTo}
	}
	sk.obs.notifications(b, &f)
	scanTable(b, &f, start)
	f.Blobs = append(f.Blobs, sk.obs.newLogs(b)...)
	f.Blobs = append(f.Blobs, blob{Where: "fleet execution output", Data: ex.Output})
	f.Blobs = append(f.Blobs, sk.obs.takeOutputs()...)
	// This run's tokens, and the material of every key.
	f.Secrets = append([]secret(nil), sk.material...)
	for _, t := range tokens {
		f.Secrets = append(f.Secrets, secret{What: "an import token", Bytes: t})
	}
	sk.keyObs += len(f.Keys)
	sk.records += len(f.FailureRecords)
	for _, n := range f.Notifications {
		sk.notified += n
	}
	sk.blobs += len(f.Blobs)
	sk.secrets += len(f.Secrets)
	return f
}

func successes(b *testing.B, arn string) int {
	recs, err := aud.List(context.Background(), arn)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Outcome == records.ImportSucceeded {
			n++
		}
	}
	return n
}

// abortOne starts a rotation of arn and stops it after d, as StopExecution
// would (the local runner is killed; a Lambda already invoked runs to its
// end, as in AWS); then EventBridge's status change for the ABORTED
// execution reaches RecordFailureFunction, as template.yaml's rule routes
// it. It reports whether the execution was still running when stopped,
// and, if it ended first, whether it failed.
func abortOne(b *testing.B, arn string, run int, d time.Duration) (stopped, failed bool) {
	b.Helper()
	e, err := reg.Get(context.Background(), arn)
	if err != nil {
		b.Fatal(err)
	}
	input, _ := json.Marshal(map[string]any{"keyId": arn, "secretId": e.SecretID, "validFor": "2160h", "register": false, "wrappingKeySpec": "RSA_2048"})
	name := fmt.Sprintf("soak-abort-%d-%d", run, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), d)
	start := time.Now()
	ex, err := st.Execute(ctx, root, input, stack.ExecuteOptions{Name: name, WaitScale: "0.05"})
	cancel()
	if err == nil { // it finished first: nothing to abort
		outputs.add(blob{Where: "execution output " + name, Data: ex.Output})
		return false, ex.Status != "SUCCEEDED"
	}
	time.Sleep(2 * time.Second) // the Lambda invoked before the stop ends
	deliverAborted(b, name, input, start)
	return true, false
}

// deliverAborted hands RecordFailureFunction EventBridge's status change
// for the execution name, stopped (ABORTED), as template.yaml's rule
// routes it.
func deliverAborted(tb testing.TB, name string, input []byte, start time.Time) {
	tb.Helper()
	ev, _ := json.Marshal(map[string]any{
		"version": "0", "id": name, "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
		"account": stack.Account, "region": stack.Region, "time": time.Now().UTC().Format(time.RFC3339),
		"detail": map[string]any{
			"executionArn":    executionARN(name),
			"stateMachineArn": fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:RotationStateMachine", stack.Region, stack.Account),
			"name":            name, "status": "ABORTED", "startDate": start.UnixMilli(), "stopDate": time.Now().UnixMilli(),
			"input": string(input), "inputDetails": map[string]any{"included": true},
		},
	})
	// EventBridge retries a failed delivery (the rule's RetryPolicy): a
	// DynamoDB blip may be under way.
	for attempt := 1; ; attempt++ {
		out, fnErr, err := st.Invoke(context.Background(), "RecordFailureFunction", ev)
		if err == nil && !fnErr {
			return
		}
		if attempt == 5 {
			tb.Fatalf("record-failure on the ABORTED execution %s, %d deliveries: %v %s", name, attempt, err, out)
		}
		time.Sleep(2 * time.Second)
	}
}

func executionARN(name string) string {
	return fmt.Sprintf("arn:aws:states:%s:%s:execution:RotationStateMachine:%s", stack.Region, stack.Account, name)
}

// makeDue marks every key due: its registry entry's current ValidTo is
// moved past anything KMS holds, so KMS's expiry is earlier than the
// registry expects (drift), which the planner renews in the run. (Moving
// it to now, as this once did, no longer makes a key due: the planner
// decides from KMS's ValidTo, 90 days ahead.)
func makeDue(b *testing.B, arns []string) {
	b.Helper()
	now := time.Now().UTC().Add(5000 * time.Hour).Format(time.RFC3339Nano)
	for _, a := range arns {
		_, err := db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{TableName: &st.Table,
			Key: map[string]ddbtypes.AttributeValue{
				"pk": &ddbtypes.AttributeValueMemberS{Value: registry.PK},
				"sk": &ddbtypes.AttributeValueMemberS{Value: "KEY#" + a},
			},
			UpdateExpression:          aws.String("SET currentValidTo = :now"),
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":now": &ddbtypes.AttributeValueMemberS{Value: now}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

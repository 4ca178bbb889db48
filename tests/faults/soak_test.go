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

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// BenchmarkSoak renews a fleet over several fleet runs while faults are
// injected at random: KMS throttling, import functions killed right after
// ImportKeyMaterial, local-kms restarted mid-run, DynamoDB unavailable for
// a moment, keys Disabled for a run and enabled again. A last run goes
// without faults; then every invariant is checked against KMS and
// DynamoDB. Long, so not in `make test`: run it with `make soak`
// (SOAK_KEYS, default 200; SOAK_RUNS, default 3 runs with faults; SOAK_SEED).
func BenchmarkSoak(b *testing.B) {
	keys, runs := envInt("SOAK_KEYS", 200), envInt("SOAK_RUNS", 3)
	seed := uint64(envInt("SOAK_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	b.Logf("soak: %d keys, %d runs with faults, seed %d", keys, runs, seed)
	arns := managedKeys(b, keys, "soak")
	var (
		throttled, kills, restarts, dropped, disabled, aborted int64
		killArmed                                              atomic.Int32
		killed                                                 atomic.Int64
	)
	kmsProxy.AfterForward = func(op string, _ []byte) {
		if strings.HasSuffix(op, ".ImportKeyMaterial") && killArmed.Add(-1) >= 0 {
			killed.Add(int64(kill(b, "ImportMaterialFunction")))
		}
	}
	defer func() {
		kmsProxy.AfterForward = nil
		kmsProxy.ThrottleEvery.Store(0)
		dbProx.Down.Store(false)
	}()
	start := time.Now()
	for run := 1; run <= runs+1; run++ {
		faulty := run <= runs
		makeDue(b, arns)
		var off []string
		if faulty {
			// A few keys Disabled for this run (blocked, then renewed once
			// enabled again).
			for i := 0; i < 1+keys/50; i++ {
				a := arns[rng.IntN(len(arns))]
				if _, err := kc.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &a}); err == nil {
					off = append(off, a)
				}
			}
			disabled += int64(len(off))
			kmsProxy.ThrottleEvery.Store(int64(3 + rng.IntN(8)))
			killArmed.Store(int32(1 + rng.IntN(3)))
		}
		before := kmsProxy.Throttled.Load()
		droppedBefore := dbProx.Dropped.Load()
		done := make(chan struct{})
		if faulty {
			// local-kms restarted at a random moment of every faulty run,
			// then DynamoDB unavailable for a second.
			go func(restart bool, at, blip time.Duration) {
				defer close(done)
				time.Sleep(at)
				if restart {
					if err := st.Restart(stack.KMSLocal); err == nil {
						atomic.AddInt64(&restarts, 1)
					}
				}
				time.Sleep(blip)
				dbProx.Down.Store(true)
				time.Sleep(time.Second)
				dbProx.Down.Store(false)
			}(true, time.Duration(500+rng.IntN(3000))*time.Millisecond, time.Duration(rng.IntN(3000))*time.Millisecond)
		} else {
			close(done)
			kmsProxy.ThrottleEvery.Store(0)
			killArmed.Store(0)
		}
		if faulty && abortOne(b, arns[rng.IntN(len(arns))], run, time.Duration(200+rng.IntN(600))*time.Millisecond) {
			aborted++
		}
		ex := fleetRun(b)
		<-done
		throttled += kmsProxy.Throttled.Load() - before
		dropped += dbProx.Dropped.Load() - droppedBefore
		b.Logf("run %d (%s): child executions %v", run, map[bool]string{true: "faults", false: "clean"}[faulty], ex.ChildExecutions)
		for _, a := range off {
			if _, err := kc.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &a}); err != nil {
				b.Fatal(err)
			}
		}
	}
	kills = killed.Load()
	failures, abortsRecorded := 0, int64(0)
	for _, a := range arns {
		recs, err := aud.List(ctx, a)
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
	v, err := violations(arns, 0)
	if err != nil {
		b.Fatal(err)
	}
	if abortsRecorded != aborted {
		v = append(v, fmt.Sprintf("%d executions aborted, %d recorded as States.Aborted", aborted, abortsRecorded))
	}
	fmt.Printf("soak: %d keys, %d fleet runs (+1 clean) in %s, seed %d\n", keys, runs, time.Since(start).Round(time.Second), seed)
	fmt.Printf("soak: faults injected: %d throttled KMS answers, %d function processes killed, %d local-kms restarts, %d DynamoDB requests dropped, %d keys disabled for a run, %d executions aborted\n",
		throttled, kills, restarts, dropped, disabled, aborted)
	fmt.Printf("soak: failures recorded: %d; invariant violations: %d\n", failures, len(v))
	for _, e := range v {
		b.Error(e)
	}
	b.ReportMetric(float64(len(v)), "violations")
	b.ReportMetric(float64(failures), "failures-recorded")
}

// abortOne starts a rotation of arn and stops it after d, as StopExecution
// would (the local runner is killed; a Lambda already invoked runs to its
// end, as in AWS); then EventBridge's status change for the ABORTED
// execution reaches RecordFailureFunction, as template.yaml's rule routes
// it. It reports whether the execution was still running when stopped.
func abortOne(b *testing.B, arn string, run int, d time.Duration) bool {
	b.Helper()
	e, err := reg.Get(context.Background(), arn)
	if err != nil {
		b.Fatal(err)
	}
	input, _ := json.Marshal(map[string]any{"keyId": arn, "secretId": e.SecretID, "validFor": "2160h", "register": false, "wrappingKeySpec": "RSA_2048"})
	name := fmt.Sprintf("soak-abort-%d-%d", run, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), d)
	start := time.Now()
	_, err = st.Execute(ctx, root, input, stack.ExecuteOptions{Name: name, WaitScale: "0.05"})
	cancel()
	if err == nil {
		return false // it finished first: nothing to abort
	}
	time.Sleep(2 * time.Second) // the Lambda invoked before the stop ends
	deliverAborted(b, name, input, start)
	return true
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

// makeDue marks every key due, as time passing would: its registry entry's
// current ValidTo is moved to now (the planner renews what expires within
// its renewBefore).
func makeDue(b *testing.B, arns []string) {
	b.Helper()
	now := time.Now().UTC().Format(time.RFC3339Nano)
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

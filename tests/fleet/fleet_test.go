// Package fleet proves the scheduled fleet run on the local stack: a
// registry of hundreds of keys renewed by one run of the fleet state
// machine (planner, Distributed Map of rotation executions), and keys KMS
// refuses blocked, reported and tried again on every run until renewed.
package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
)

var (
	root string
	st   *stack.Stack
	kit  *fleetkit.Kit
	kc   *kms.Client
	sm   *secretsmanager.Client
	db   *dynamodb.Client
	reg  *registry.Store
	aud  *records.Imports
	toks *records.Tokens
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, _ = filepath.Abs("../..")
	dir, err := os.MkdirTemp("", "kms-reimport-fleet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Two emulators per function (Lambda concurrency); a small planner page
	// so the run pages through the registry. The emulators have no KMS
	// request quota: KMS_REQUEST_RATE lifts the pacing (make bench proves it).
	// The discovery step is on (AdoptTag: TestDiscoveryAdoptsAndReports);
	// adopted keys wrap with RSA_2048, what local-kms supports.
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Concurrency: 2, Parameters: map[string]string{"AdoptTag": adoptTag},
		FunctionEnv: map[string]map[string]string{"PlannerFunction": {"PLANNER_PAGE_SIZE": "64", "MAX_CONCURRENCY": "8", "KMS_REQUEST_RATE": "1000", "KMS_READ_RATE": "1000",
			"ADOPT_WRAPPING_KEY_SPEC": "RSA_2048"}}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local stack: %v\n(run `make tools` to install the emulators)\n", err)
		return 1
	}
	defer st.Down()
	if kit, err = fleetkit.New(ctx, root, st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, sm, db, reg, aud, toks = kit.KMS, kit.Secrets, kit.DB, kit.Registry, kit.Audit, kit.Tokens
	return m.Run()
}

func managedKeys(t *testing.T, n int, prefix string) []string {
	t.Helper()
	arns, err := fleetkit.ManagedKeys(context.Background(), kit.Clients, n, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return arns
}

func fleetRun(t *testing.T) *stack.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	ex, err := kit.FleetRun(ctx, "0.01")
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func plan(t *testing.T) planner.State {
	t.Helper()
	p := &planner.Stage{Registry: reg, PageSize: 1000}
	s, err := p.Plan(context.Background(), planner.State{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFleetOf200KeysRenewedByOneRun(t *testing.T) {
	const n = 200
	arns := managedKeys(t, n, "fleet")
	if p := plan(t); p.Stats.Due < n {
		t.Fatalf("planner sees %d due before the run, want at least %d", p.Stats.Due, n)
	}
	start := time.Now()
	ex := fleetRun(t)
	took := time.Since(start)
	var stats planner.Stats
	if err := json.Unmarshal(ex.Output, &stats); err != nil {
		t.Fatalf("fleet output: %v: %s", err, ex.Output)
	}
	if stats.Pages < 4 || stats.Due < n {
		t.Errorf("fleet stats: %+v (want >= 4 pages of 64 and %d due)", stats, n)
	}
	// The run's output counts its rotations (fleet.asl.json: CountResults).
	if stats.Renewed < n || stats.Failed != 0 || stats.FailedKeys == nil || len(stats.FailedKeys) != 0 {
		t.Errorf("fleet results: renewed %d, failed %d %v; want >= %d renewed, none failed", stats.Renewed, stats.Failed, stats.FailedKeys, n)
	}
	if ex.ChildExecutions["SUCCEEDED"] < n || ex.ChildExecutions["FAILED"] != 0 {
		t.Fatalf("child executions: %v", ex.ChildExecutions)
	}
	t.Logf("fleet run: %d keys in %s (%.1f keys/s)", n, took.Round(time.Millisecond), float64(n)/took.Seconds())

	ctx := context.Background()
	for _, arn := range arns {
		md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
		if err != nil {
			t.Fatal(err)
		}
		if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil {
			t.Fatalf("%s: %s, ValidTo %v", arn, md.KeyMetadata.KeyState, md.KeyMetadata.ValidTo)
		}
		if d := time.Until(*md.KeyMetadata.ValidTo); d < 2150*time.Hour || d > 2161*time.Hour {
			t.Fatalf("%s: ValidTo %v is not 2160h ahead", arn, md.KeyMetadata.ValidTo)
		}
		recs, err := aud.List(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Outcome != records.ImportSucceeded {
			t.Fatalf("%s: %d import records, want exactly one success: %+v", arn, len(recs), recs)
		}
		e, err := reg.Get(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		if e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(*md.KeyMetadata.ValidTo) || e.LastSuccess == nil || e.NextDue == nil {
			t.Fatalf("%s: registry not updated: %+v", arn, e)
		}
		trs, err := toks.List(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range trs {
			if tr.Status != records.TokenUsed && tr.Status != records.TokenExpired && tr.Status != records.TokenFailed || len(tr.ImportToken) > 0 {
				t.Fatalf("%s: token %s left %s", arn, tr.SK, tr.Status)
			}
		}
	}
	// A second run finds nothing due and changes nothing.
	if p := plan(t); p.Stats.Due != 0 {
		t.Fatalf("after the run the planner still sees %d due", p.Stats.Due)
	}
}

// TestBlockedKeysAreRetriedUntilKMSAllows: keys KMS refuses (pending
// deletion, disabled) are blocked, not dropped: every fleet run plans them
// again and reports them (stats.blocked, why), and the first run after the
// keys are usable again renews them.
func TestBlockedKeysAreRetriedUntilKMSAllows(t *testing.T) {
	arns := managedKeys(t, 3, "blocked")
	ctx := context.Background()
	// One key scheduled for deletion, one disabled, one fine.
	if _, err := kc.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &arns[0], PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &arns[1]}); err != nil {
		t.Fatal(err)
	}
	fleetRun(t)
	for i, state := range []string{"PendingDeletion", "Disabled"} {
		e, err := reg.Get(ctx, arns[i])
		if err != nil {
			t.Fatalf("key %d left the registry: %v", i, err)
		}
		b := e.Block()
		if e.Status != registry.Blocked || b == nil || b.Error != "KeyNotEligible" || !strings.Contains(b.Cause, state) {
			t.Fatalf("key %d: registry %s %+v, want blocked by KeyNotEligible naming %s", i, e.Status, b, state)
		}
		if due, why := e.IsDue(time.Now()); !due {
			t.Fatalf("key %d not planned: %s", i, why)
		}
	}
	if md, _ := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arns[2]}); md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled {
		t.Fatalf("healthy key: %s", md.KeyMetadata.KeyState)
	}
	blockedIn := func(st planner.Stats) int {
		n := 0
		for _, b := range st.BlockedKeys {
			if (b.KeyARN == arns[0] || b.KeyARN == arns[1]) && b.Error == "KeyNotEligible" && b.Cause != "" {
				n++
			}
		}
		return n
	}
	if p := plan(t); blockedIn(p.Stats) != 2 || p.Stats.Blocked < 2 {
		t.Fatalf("plan does not report the two blocked keys: %+v", p.Stats)
	}

	// The next run tries them again, and reports them.
	ex := fleetRun(t)
	var stats planner.Stats
	if err := json.Unmarshal(ex.Output, &stats); err != nil {
		t.Fatalf("fleet output: %v: %s", err, ex.Output)
	}
	if blockedIn(stats) != 2 {
		t.Fatalf("fleet run does not report the two blocked keys: %+v", stats)
	}
	// ... and says their rotations failed, naming them.
	failed := map[string]bool{}
	for _, f := range stats.FailedKeys {
		failed[f.KeyID] = f.Error != ""
	}
	if stats.Failed != 2 || !failed[arns[0]] || !failed[arns[1]] {
		t.Fatalf("fleet output does not name the two failed rotations: failed %d, %+v", stats.Failed, stats.FailedKeys)
	}
	for _, arn := range arns[:2] {
		recs, _ := aud.List(ctx, arn)
		if len(recs) != 2 {
			t.Fatalf("%s: %d import records, want a second failure (tried again)", arn, len(recs))
		}
	}

	// Usable again: the next run renews both.
	if _, err := kc.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: &arns[0]}); err != nil {
		t.Fatal(err)
	}
	for _, arn := range arns[:2] {
		if _, err := kc.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &arn}); err != nil {
			t.Fatal(err)
		}
	}
	fleetRun(t)
	for _, arn := range arns[:2] {
		md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
		if err != nil {
			t.Fatal(err)
		}
		if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil {
			t.Fatalf("%s not renewed: %s", arn, md.KeyMetadata.KeyState)
		}
		e, err := reg.Get(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != registry.Active || e.Block() != nil || e.LastSuccess == nil || e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(*md.KeyMetadata.ValidTo) {
			t.Fatalf("%s: registry %s, block %+v, last success %v", arn, e.Status, e.Block(), e.LastSuccess)
		}
	}
	if p := plan(t); blockedIn(p.Stats) != 0 {
		t.Fatalf("renewed keys still reported blocked: %+v", p.Stats.BlockedKeys)
	}
}

// Package faults injects the failures a fleet meets in production and
// checks that no key is lost, none is left half-done and the audit trail
// stays true: KMS throttling, KMS going away mid-run, a function process
// killed mid-stage, two executions racing on one key, DynamoDB unavailable.
// The functions reach KMS and DynamoDB through fault proxies
// (tests/support/faultproxy); the tests check through direct clients.
package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/tests/support/faultproxy"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
)

var (
	root             string
	st               *stack.Stack
	kit              *fleetkit.Kit
	kc               *kms.Client
	sm               *secretsmanager.Client
	db               *dynamodb.Client
	reg              *registry.Store
	aud              *records.Imports
	toks             *records.Tokens
	kmsProxy, dbProx *faultproxy.Proxy
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, _ = filepath.Abs("../..")
	dir, err := os.MkdirTemp("", "kms-reimport-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if os.Getenv("KEEP_STACK_DIR") == "" {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintln(os.Stderr, "stack dir kept:", dir)
		}
	}()
	// Targets are set once the stack's ports are known.
	if kmsProxy, err = faultproxy.Start("http://127.0.0.1:1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if dbProx, err = faultproxy.Start("http://127.0.0.1:1"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Concurrency: 2,
		FunctionEnv: map[string]map[string]string{"Parameters": {
			"AWS_ENDPOINT_URL_KMS":      kmsProxy.URL,
			"AWS_ENDPOINT_URL_DYNAMODB": dbProx.URL,
		},
			// Short enough that a test can outlive it (TestTaskTimesOutAndIsRetried).
			"FetchParametersFunction": {"AWS_LAMBDA_FUNCTION_TIMEOUT": "4"},
			// No pacing (the emulators have no quota): MaxConcurrency's 5.
			"PlannerFunction": {"KMS_REQUEST_RATE": "1000", "KMS_READ_RATE": "1000"},
		}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local stack: %v\n(run `make tools` to install the emulators)\n", err)
		return 1
	}
	defer st.Down()
	_ = kmsProxy.SetTarget(st.KMS)
	_ = dbProx.SetTarget(st.DynamoDB)
	if kit, err = fleetkit.New(ctx, root, st); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, sm, db, reg, aud, toks = kit.KMS, kit.Secrets, kit.DB, kit.Registry, kit.Audit, kit.Tokens
	return m.Run()
}

func managedKeys(t testing.TB, n int, prefix string) []string {
	t.Helper()
	arns, err := fleetkit.ManagedKeys(context.Background(), kit.Clients, n, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return arns
}

func fleetRun(t testing.TB) *stack.Execution {
	t.Helper()
	return fleetRunScaled(t, "0.05")
}

// fleetRunScaled runs with Retry intervals scaled by scale ("1": the real
// backoff of the definition).
func fleetRunScaled(t testing.TB, scale string) *stack.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ex, err := kit.FleetRun(ctx, scale)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// settled checks the invariants every fault must leave intact: each key
// Enabled with material valid ~90 days; exactly one succeeded import
// record per successful import and a named failure for every other record;
// no token left holding its token bytes; no lease item left (read with
// GetItem, so a lapsed lease counts too); the registry agreeing with KMS.
func settled(t testing.TB, arns []string, wantSuccesses int) {
	t.Helper()
	v, err := violations(arns, wantSuccesses)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range v {
		t.Error(e)
	}
}

// violations lists every broken invariant (see settled).
func violations(arns []string, wantSuccesses int) ([]string, error) {
	var out []string
	ctx := context.Background()
	for _, arn := range arns {
		md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
		if err != nil {
			return nil, err
		}
		if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil || time.Until(*md.KeyMetadata.ValidTo) < 2000*time.Hour {
			out = append(out, fmt.Sprintf("%s lost: %s ValidTo %v", arn, md.KeyMetadata.KeyState, md.KeyMetadata.ValidTo))
			continue
		}
		recs, err := aud.List(ctx, arn)
		if err != nil {
			return nil, err
		}
		ok := 0
		perExecution := map[string]int{}
		for _, r := range recs {
			if perExecution[r.ExecutionID]++; perExecution[r.ExecutionID] == 2 {
				out = append(out, fmt.Sprintf("%s: more than one import record for execution %s", arn, r.ExecutionID))
			}
			switch r.Outcome {
			case records.ImportSucceeded:
				ok++
				if r.ValidTo == nil || r.Verification == "" {
					out = append(out, fmt.Sprintf("%s: success record without ValidTo or proof: %+v", arn, r))
				}
			case records.ImportFailed:
				if r.ErrorName == "" || r.Stage == "" {
					out = append(out, fmt.Sprintf("%s: failure record without error or stage: %+v", arn, r))
				}
			}
		}
		if wantSuccesses > 0 && ok != wantSuccesses {
			out = append(out, fmt.Sprintf("%s: %d success records, want %d (%+v)", arn, ok, wantSuccesses, recs))
		}
		last := recs[len(recs)-1]
		if last.Outcome != records.ImportSucceeded || !last.ValidTo.Equal(*md.KeyMetadata.ValidTo) {
			out = append(out, fmt.Sprintf("%s: latest import record does not match KMS: %+v vs %v", arn, last, md.KeyMetadata.ValidTo))
		}
		trs, err := toks.List(ctx, arn)
		if err != nil {
			return nil, err
		}
		for _, tr := range trs {
			if tr.Status == records.TokenIssued || tr.Status == records.TokenWrapped || len(tr.ImportToken) > 0 || len(tr.EncryptedKeyMaterial) > 0 {
				out = append(out, fmt.Sprintf("%s: token %s left %s (token bytes: %d)", arn, tr.SK, tr.Status, len(tr.ImportToken)))
			}
		}
		e, err := reg.Get(ctx, arn)
		if err != nil {
			return nil, err
		}
		if e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(*md.KeyMetadata.ValidTo) {
			out = append(out, fmt.Sprintf("%s: registry ValidTo %v, KMS %v", arn, e.CurrentValidTo, md.KeyMetadata.ValidTo))
		}
		// No lease item at all (held or lapsed): read, not acquired.
		got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.Table, ConsistentRead: aws.Bool(true),
			Key: map[string]ddbtypes.AttributeValue{
				"pk": &ddbtypes.AttributeValueMemberS{Value: records.PK(arn)},
				"sk": &ddbtypes.AttributeValueMemberS{Value: records.LeaseSK},
			}})
		if err != nil {
			return nil, err
		}
		if len(got.Item) > 0 {
			var owner, until string
			if v, ok := got.Item["owner"].(*ddbtypes.AttributeValueMemberS); ok {
				owner = v.Value
			}
			if v, ok := got.Item["leaseUntil"].(*ddbtypes.AttributeValueMemberN); ok {
				until = v.Value
			}
			out = append(out, fmt.Sprintf("%s: lease left behind, owner %s, leaseUntil %s (unix)", arn, owner, until))
		}
	}
	return out, nil
}

var killMu sync.Mutex

func kill(t testing.TB, logicalID string) int {
	killMu.Lock()
	defer killMu.Unlock()
	n := 0
	for _, pid := range st.FunctionProcesses(logicalID) {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// Package rotation runs rotations with new key material, renewals of keys
// holding several materials, resumption after a failure between
// NEW_KEY_MATERIAL and RotateKeyOnDemand, and multi-Region fan-out,
// end to end through the state machine on a local stack: the KMS stand-in
// (tests/support/kmsstandin) answers for the primary Region, which is
// where ImportType/KeyMaterialId, ListKeyRotations, RotateKeyOnDemand and
// multi-Region topology live; the stand-in also serves each replica Region
// (eu-west-1, eu-west-3) on an endpoint of its own, where ReplicateKey
// makes the replica keys that take the imports fanned out to them. See
// docs/rotation.md.
package rotation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/tests/support/faultproxy"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
	"github.com/kms-reimport/kms-reimport/tests/support/kmswait"
	"github.com/kms-reimport/kms-reimport/tests/support/suite"
)

var (
	root string
	st   *stack.Stack
	kc   *kms.Client
	sm   *secretsmanager.Client
	db   *dynamodb.Client
	// replica Regions, each served by the stand-in on its own endpoint
	replicaRegions = []string{"eu-west-1", "eu-west-3"}
)

// importKMS is a fault proxy between the import stage and KMS in the
// primary Region (then its IAM gate): a test can kill the function right
// after an import (TestCrashAfterNewMaterialImportRecovered).
var importKMS *faultproxy.Proxy

// S is the running suite; its leak check covers every material made.
var S *suite.Suite

func TestMain(m *testing.M) {
	// AWS's asynchrony, shortened but never off: this suite proves the
	// product copes with it. The local runner scales Retry intervals to
	// fixed ones (no backoff): the multi-Region tests run at WaitScale
	// 0.04, 80 ms between ReplicaNotSynced's 8 retries, longer in all than
	// a replica takes to learn a new material.
	o := stack.Options{KMS: stack.KMSStandIn, ReplicaRegions: replicaRegions,
		// Two emulators of each function: a rerun runs beside a stopped
		// execution's invocation still in flight
		// (TestStoppedImportCannotLandAfterANewerOne).
		Concurrency: 2,
		// Rotations to new material, generated or staged: the deployment
		// grants what they need (template parameters; the IAM gate enforces
		// the roles they give).
		Parameters: map[string]string{"GeneratedMaterial": "true", "RotateOnDemand": "true"},
		StandInEnv: []string{"KMS_STANDIN_STALE_READ_WINDOW=300ms", "KMS_STANDIN_ROTATION_DELAY=600ms", "KMS_STANDIN_REPLICA_SYNC_DELAY=250ms"}}
	var err error
	if importKMS, err = faultproxy.Start("http://127.0.0.1:1"); err != nil { // target set once the stack is up
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	o.FunctionEnv = map[string]map[string]string{"ImportMaterialFunction": {"AWS_ENDPOINT_URL_KMS": importKMS.URL}}
	os.Exit(suite.Run(m, "rotation", o, func(s *suite.Suite) error {
		S, root, st, kc, sm, db = s, s.Root, s.Stack, s.KMS, s.SM, s.DB
		target := st.Gate["ImportMaterialFunction"]
		if target == "" {
			target = st.KMS
		}
		return importKMS.SetTarget(target)
	}))
}

var seq atomic.Int64

func uniq(p string) string { return fmt.Sprintf("%s-%d-%d", p, time.Now().UnixNano()%1e9, seq.Add(1)) }

func vt(d time.Duration) time.Time { return time.Now().UTC().Add(d).Truncate(time.Second) }

// ---- the stand-in ----

func requests(t *testing.T, arn string) []kmsstandin.Request {
	t.Helper()
	resp, err := http.Get(st.KMS + "/_standin/requests?keyArn=" + arn)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Requests []kmsstandin.Request }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Requests
}

func ops(reqs []kmsstandin.Request) string {
	var o []string
	for _, r := range reqs {
		s := r.Operation
		if r.Error != "" {
			s += "!" + r.Error
		}
		o = append(o, s)
	}
	return strings.Join(kmswait.Compact(o), ",")
}

func fault(t *testing.T, op, code string, n int) {
	t.Helper()
	method, u := http.MethodPost, fmt.Sprintf("%s/_standin/faults?operation=%s&code=%s&count=%d", st.KMS, op, code, n)
	if op == "" {
		method, u = http.MethodDelete, st.KMS+"/_standin/faults"
	}
	req, _ := http.NewRequest(method, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fault injection %s %s: %v %v", method, u, err, resp)
	}
	resp.Body.Close()
}

// ---- execution ----

type result struct {
	ex   *stack.Execution
	reqs []kmsstandin.Request
}

func execute(t *testing.T, arn string, input map[string]any) result {
	t.Helper()
	return executeScaled(t, arn, input, "0.01")
}

// executeScaled runs with Retry intervals and Waits scaled by scale.
func executeScaled(t *testing.T, arn string, input map[string]any, scale string) result {
	t.Helper()
	before := len(requests(t, arn))
	if _, ok := input["register"]; !ok {
		input["register"] = false
	}
	in, _ := json.Marshal(input)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{WaitScale: scale})
	if err != nil {
		t.Fatalf("running the state machine: %v", err)
	}
	all := requests(t, arn)
	return result{ex: ex, reqs: all[before:]}
}

func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.ex.Status != "SUCCEEDED" {
		t.Fatalf("execution %s: %s: %s\nstates: %+v\n(logs in %s)", r.ex.Status, r.ex.Error, r.ex.Cause, r.ex.States, filepath.Join(st.Dir, "logs"))
	}
}

// ---- keys, secrets, records ----

func externalKey(t *testing.T, multiRegion bool) string {
	t.Helper()
	out, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: types.OriginTypeExternal, MultiRegion: aws.Bool(multiRegion), Description: aws.String(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	if err := kmswait.Visible(context.Background(), kc, *out.KeyMetadata.Arn); err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.Arn
}

func randomMaterial(t *testing.T) []byte {
	b := make([]byte, 32)
	if _, err := (cryptoRand{}).Read(b); err != nil {
		t.Fatal(err)
	}
	S.Secret(b)
	return b
}

// secret creates a secret with material as its AWSCURRENT version.
func secret(t *testing.T) (name, version string) {
	t.Helper()
	name = uniq("kms-reimport/rotation")
	out, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: &name, SecretBinary: randomMaterial(t)})
	if err != nil {
		t.Fatal(err)
	}
	return name, *out.VersionId
}

// putVersion adds a version with new material under stage.
func putVersion(t *testing.T, name, stage string) string {
	t.Helper()
	out, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: &name, SecretBinary: randomMaterial(t), VersionStages: []string{stage}})
	if err != nil {
		t.Fatal(err)
	}
	return *out.VersionId
}

func versionIDs(t *testing.T, name string) []string {
	t.Helper()
	out, err := sm.ListSecretVersionIds(context.Background(), &secretsmanager.ListSecretVersionIdsInput{SecretId: &name, IncludeDeprecated: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range out.Versions {
		ids = append(ids, *v.VersionId)
	}
	return ids
}

func rotations(t *testing.T, arn string) []types.RotationsListEntry {
	t.Helper()
	out, err := kc.ListKeyRotations(context.Background(), &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	if err != nil {
		t.Fatal(err)
	}
	return out.Rotations
}

func materialMap(t *testing.T, arn string) map[string]records.Material {
	t.Helper()
	m, err := (&records.Materials{DB: db, Table: st.Table}).List(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lastAudit(t *testing.T, arn string) records.Import {
	t.Helper()
	recs, err := (&records.Imports{DB: db, Table: st.Table}).List(context.Background(), arn)
	if err != nil || len(recs) == 0 {
		t.Fatalf("audit records of %s: %v (%d)", arn, err, len(recs))
	}
	return recs[len(recs)-1]
}

func regionalKMS(t *testing.T, region string) *kms.Client {
	cfg, err := st.AWSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.Region, o.BaseEndpoint = region, aws.String(st.RegionKMS[region]) })
}

// Package events_test sends every file of events/ through `make invoke`
// against a local stack of its own and checks the response documented in
// docs/deploy.md ("Events"). It needs the local tools: `make tools`.
package events_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// The demo key and secret the sample events name.
const (
	sampleAlias    = "alias/kms-reimport-sample"
	sampleSecret   = "kms-reimport/sample-material"
	sampleVersion  = "5b9c6f1e-3d2a-4c8b-9e7f-0a1b2c3d4e5f" // pinned in the later-stage samples
	sampleKeyARN   = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	sampleTokenSK  = "TOKEN#2026-01-15T06:00:00.412Z#5f0c2a9e4b7d1c36"
	sampleExecName = "sample-run"
)

var (
	root   string
	st     *stack.Stack
	keyARN string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	root, err = stack.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := exec.LookPath("moto_server"); err != nil {
		if home, _ := os.UserHomeDir(); home != "" {
			os.Setenv("PATH", filepath.Join(home, ".pyenv/shims")+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
	}
	dir, err := os.MkdirTemp("", "kms-reimport-events-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The sample key and secret the events name, as `make stack-up` makes them.
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Samples: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "tests/events: cannot start the local stack: %v\nRun `make tools` (and put ~/.pyenv/shims on PATH for moto_server).\n", err)
		return 1
	}
	defer st.Down()
	if st.Sample == nil || st.Sample.Alias != sampleAlias || st.Sample.SecretID != sampleSecret || st.Sample.SecretVersionID != sampleVersion {
		fmt.Fprintf(os.Stderr, "tests/events: the stack's sample %+v is not what the events name\n", st.Sample)
		return 1
	}
	keyARN = st.Sample.KeyARN
	return m.Run()
}

type invocation struct {
	Response map[string]any
	Raw      []byte
	Stderr   string
	ExitOK   bool
	Report   struct {
		InitDurationMs float64 `json:"initDurationMs"`
		DurationMs     float64 `json:"durationMs"`
		PeakRssMB      float64 `json:"peakRssMB"`
		MemorySizeMB   int     `json:"memorySizeMB"`
		FunctionError  bool    `json:"functionError"`
		ErrorType      string  `json:"errorType"`
		ReportLine     string  `json:"reportLine"`
	}
}

// invoke runs `make invoke FN=... EVENT=...` on this test's stack.
func invoke(t *testing.T, fn, event string) *invocation {
	t.Helper()
	rep := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command("make", "--no-print-directory", "-s", "invoke", "FN="+fn, "EVENT="+event,
		"STACK_DIR="+st.Dir, "INVOKE_FLAGS=--report-json "+rep)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	inv := &invocation{Raw: stdout.Bytes(), Stderr: stderr.String(), ExitOK: err == nil}
	b, rerr := os.ReadFile(rep)
	if rerr != nil {
		t.Fatalf("make invoke FN=%s EVENT=%s: no report (%v): %v\nstdout: %s\nstderr: %s", fn, event, rerr, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(b, &inv.Report); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(inv.Raw, &inv.Response); err != nil {
		t.Fatalf("make invoke FN=%s: stdout is not the JSON response: %v\n%s", fn, err, inv.Raw)
	}
	if !strings.Contains(inv.Stderr, "REPORT RequestId:") {
		t.Errorf("make invoke FN=%s: no REPORT line on stderr:\n%s", fn, inv.Stderr)
	}
	if inv.Report.FunctionError == inv.ExitOK {
		t.Errorf("make invoke FN=%s: exit ok=%v but function error=%v", fn, inv.ExitOK, inv.Report.FunctionError)
	}
	t.Logf("%s %s: init %.1f ms, duration %.1f ms, peak %.1f MB of %d MB", fn, filepath.Base(event),
		inv.Report.InitDurationMs, inv.Report.DurationMs, inv.Report.PeakRssMB, inv.Report.MemorySizeMB)
	return inv
}

func ev(name string) string { return filepath.Join(root, "events", name) }

func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// shape is the set of field paths of a JSON document.
func shape(v any, prefix string, out map[string]bool) map[string]bool {
	if out == nil {
		out = map[string]bool{}
	}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[prefix+k] = true
			shape(x, prefix+k+".", out)
		}
	}
	return out
}

func sameShape(t *testing.T, what string, got map[string]any, sampleFile string) {
	t.Helper()
	b, err := os.ReadFile(ev(sampleFile))
	if err != nil {
		t.Fatal(err)
	}
	var sample map[string]any
	if err := json.Unmarshal(b, &sample); err != nil {
		t.Fatal(err)
	}
	g, s := shape(got, "", nil), shape(sample, "", nil)
	var missing, extra []string
	for k := range g {
		if !s[k] {
			missing = append(missing, k)
		}
	}
	for k := range s {
		if !g[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("events/%s is not shaped as %s really passes it: fields the stage passes but the sample lacks %v; fields only in the sample %v", sampleFile, what, missing, extra)
	}
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "event.json")
	b, _ := json.Marshal(v)
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPipeline runs the stage samples in pipeline order: the fetch sample as
// it is, then each stage on what the previous one really returned, and
// checks that each later-stage sample is shaped as that real payload.
func TestPipeline(t *testing.T) {
	fetch := invoke(t, "FetchParametersFunction", ev("fetch-parameters.json"))
	if !fetch.ExitOK {
		t.Fatalf("fetch-parameters.json: %s", fetch.Raw)
	}
	if get(fetch.Response, "key", "arn") != keyARN || get(fetch.Response, "plan", "secretVersionId") != sampleVersion ||
		!strings.HasPrefix(fmt.Sprint(get(fetch.Response, "progress", "token", "id")), "TOKEN#") || get(fetch.Response, "progress", "token", "fetches") != 1.0 {
		t.Errorf("fetch-parameters.json: unexpected response %s", fetch.Raw)
	}
	sameShape(t, "the fetch stage", fetch.Response, "wrap-material.json")

	wrap := invoke(t, "WrapMaterialFunction", writeJSON(t, fetch.Response))
	if !wrap.ExitOK || get(wrap.Response, "progress", "token", "wrapped") != true {
		t.Fatalf("wrap on the fetch stage's output: %s", wrap.Raw)
	}
	sameShape(t, "the wrap stage", wrap.Response, "import-material.json")

	imp := invoke(t, "ImportMaterialFunction", writeJSON(t, wrap.Response))
	if !imp.ExitOK || get(imp.Response, "import", "expirationModel") != "KEY_MATERIAL_EXPIRES" {
		t.Fatalf("import on the wrap stage's output: %s", imp.Raw)
	}
	sameShape(t, "the import stage", imp.Response, "verify-import.json")

	ver := invoke(t, "VerifyImportFunction", writeJSON(t, imp.Response))
	if !ver.ExitOK || get(ver.Response, "verification", "keyState") != "Enabled" ||
		!strings.Contains(fmt.Sprint(get(ver.Response, "verification", "roundTrip")), "equal") {
		t.Fatalf("verify on the import stage's output: %s", ver.Raw)
	}

	// The verify stage registered the key (register defaults to true): the
	// planner, on the schedule's input, sees it and finds it not due (just
	// renewed for 720h, renew 336h before).
	plan := invoke(t, "PlannerFunction", ev("planner.json"))
	checkPlan(t, plan)
	if n, _ := get(plan.Response, "stats", "scanned").(float64); n < 1 {
		t.Errorf("planner after the verify stage: the registered key is not in the registry: %s", plan.Raw)
	}
	if n, _ := get(plan.Response, "stats", "notDue").(float64); n < 1 {
		t.Errorf("planner after the verify stage: the renewed key should count as not due: %s", plan.Raw)
	}
	for _, it := range plannedItems(plan.Response) {
		if get(it, "keyId") == keyARN {
			t.Errorf("planner: the key renewed a moment ago is due: %s", plan.Raw)
		}
	}

	// The record-failure sample is what a Catch after the wrap stage passes:
	// the wrap output plus error and failedStage.
	failed := map[string]any{}
	for k, v := range wrap.Response {
		failed[k] = v
	}
	failed["error"] = map[string]any{"Error": "IncorrectKeyMaterial", "Cause": "{}"}
	failed["failedStage"] = "import-material"
	sameShape(t, "a Catch of the import stage", failed, "record-failure.json")
}

// documented is each file's response when sent alone through make invoke
// (docs/deploy.md, "Events"): "" for success, else the errorType.
var documented = map[string]struct {
	fn    string
	error string
}{
	"fetch-parameters.json":        {"FetchParametersFunction", ""},
	"wrap-material.json":           {"WrapMaterialFunction", "TokenStateConflict"},
	"import-material.json":         {"ImportMaterialFunction", "TokenStateConflict"},
	"verify-import.json":           {"VerifyImportFunction", "KeyNotFound"},
	"record-failure.json":          {"RecordFailureFunction", ""},
	"execution-status-change.json": {"RecordFailureFunction", ""},
	"execution-input.json":         {"FetchParametersFunction", "InvalidInput"},
	"planner.json":                 {"PlannerFunction", ""},
	"scheduled-event.json":         {"PlannerFunction", ""},
}

// checkPlan: the planner's documented response to a fresh run ({} or any
// event that is not a page cursor): one page read, the keys due as
// rotation inputs, the concurrency the template's defaults allow (1), and no
// cursor (the registry fits in one page here).
// plannedItems are the rotation inputs of a planner's answer: the items of
// every group (one group per account and Region, shared/stages/planner
// groups.go).
func plannedItems(resp map[string]any) []any {
	var items []any
	groups, _ := resp["groups"].([]any)
	for _, g := range groups {
		its, _ := get(g, "items").([]any)
		items = append(items, its...)
	}
	return items
}

func checkPlan(t *testing.T, inv *invocation) {
	t.Helper()
	if !inv.ExitOK {
		t.Fatalf("planner: want success, got %s", inv.Raw)
	}
	if _, ok := inv.Response["groups"].([]any); !ok {
		t.Errorf("planner: groups is not a list: %s", inv.Raw)
	}
	items := plannedItems(inv.Response)
	if _, ok := inv.Response["next"]; ok {
		t.Errorf("planner: a cursor after one small page: %s", inv.Raw)
	}
	// The template's defaults: KmsRequestRate 1/s over 3 s rotations of 2
	// import calls allows one rotation at a time (under MaxConcurrency 5).
	if get(inv.Response, "maxConcurrency") != 1.0 {
		t.Errorf("planner: maxConcurrency %v, want 1 (the template's KmsRequestRate default 1, shared/settings/pacing.go)", get(inv.Response, "maxConcurrency"))
	}
	num := func(k string) float64 { n, _ := get(inv.Response, "stats", k).(float64); return n }
	if num("pages") != 1 || num("scanned") != num("due")+num("notDue")+num("ineligible") || num("due") != float64(len(items)) {
		t.Errorf("planner: stats don't add up (pages 1, scanned = due + notDue + ineligible, due = items): %s", inv.Raw)
	}
	for _, it := range items {
		if get(it, "keyId") == nil || get(it, "secretId") == nil || get(it, "renewBefore") == nil {
			t.Errorf("planner: item is not a rotation input: %v", it)
		}
	}
}

// TestEachEventAlone sends every file of events/ as it is.
func TestEachEventAlone(t *testing.T) {
	files, err := filepath.Glob(ev("*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "env.json" {
			continue // every invocation here uses it (make invoke's default --env-vars)
		}
		d, ok := documented[name]
		if !ok {
			t.Errorf("events/%s has no documented response: add it here and to docs/deploy.md", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			inv := invoke(t, d.fn, f)
			if d.error == "" {
				if !inv.ExitOK {
					t.Fatalf("want success, got %s", inv.Raw)
				}
			} else if inv.Report.ErrorType != d.error || get(inv.Response, "errorType") != d.error {
				t.Fatalf("want errorType %s, got %s", d.error, inv.Raw)
			}
			switch name {
			case "fetch-parameters.json":
				if get(inv.Response, "key", "arn") != keyARN {
					t.Errorf("key.arn: %s", inv.Raw)
				}
			case "wrap-material.json", "import-material.json":
				if !strings.Contains(fmt.Sprint(get(inv.Response, "errorMessage")), "no token record "+sampleTokenSK) {
					t.Errorf("want the missing token record named: %s", inv.Raw)
				}
			case "verify-import.json":
				if !strings.Contains(fmt.Sprint(get(inv.Response, "errorMessage")), sampleKeyARN) {
					t.Errorf("want the missing key named: %s", inv.Raw)
				}
			case "record-failure.json":
				if get(inv.Response, "failedStage") != "import-material" || get(inv.Response, "error", "Error") != "IncorrectKeyMaterial" {
					t.Errorf("record-failure: %s", inv.Raw)
				}
				// The cause is recorded as the function's message, not the JSON.
				if c := fmt.Sprint(get(inv.Response, "error", "Cause")); strings.HasPrefix(c, "{") {
					t.Errorf("record-failure: Cause not unwrapped: %s", c)
				}
			case "execution-input.json":
				if !strings.Contains(fmt.Sprint(get(inv.Response, "errorMessage")), "execution.id") {
					t.Errorf("want the missing execution context named: %s", inv.Raw)
				}
			case "planner.json", "scheduled-event.json":
				// The envelope carries no cursor: a fresh run, as {}.
				checkPlan(t, inv)
			}
		})
	}
}

// TestEnvVars: env.json reaches the function (a per-function value), and
// the running stack's endpoints replace env.json's fixed ports.
func TestEnvVars(t *testing.T) {
	b, err := os.ReadFile(ev("env.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]map[string]string
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("events/env.json is not SAM's format ({\"Parameters\": {...}, \"<LogicalId>\": {...}}, string values): %v", err)
	}
	if env["Parameters"]["TABLE_NAME"] != stack.Table {
		t.Errorf("env.json TABLE_NAME %q, want %s", env["Parameters"]["TABLE_NAME"], stack.Table)
	}
	for _, k := range []string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SNS"} {
		if env["Parameters"][k] == "" {
			t.Errorf("env.json has no %s", k)
		}
	}
	// --print-env-vars: an env.json for sam local invoke with this stack's ports.
	bin := filepath.Join(t.TempDir(), "stackctl")
	build := exec.Command("go", "build", "-o", bin, "./infra/local/stackctl")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building stackctl: %v\n%s", err, b)
	}
	out, err := exec.Command(bin, "invoke", "--stack-dir", st.Dir, "--env-vars", ev("env.json"), "--print-env-vars").Output()
	if err != nil {
		t.Fatalf("stackctl invoke --print-env-vars: %v", err)
	}
	var printed map[string]map[string]string
	if err := json.Unmarshal(out, &printed); err != nil {
		t.Fatal(err)
	}
	if printed["Parameters"]["AWS_ENDPOINT_URL_KMS"] != st.KMS || printed["Parameters"]["AWS_ENDPOINT_URL_SNS"] != st.Secrets ||
		printed["ImportMaterialFunction"]["MIN_TOKEN_VALIDITY"] == "" {
		t.Errorf("--print-env-vars: %s", out)
	}
}

// TestExecutionInput: the manual execution input runs the whole rotation
// state machine (make execute / start-execution); the scheduled event, if it
// were the rotation's input, fails as InvalidInput and is recorded. The
// schedule's input ({}, events/planner.json) starts a fleet run that renews
// a registered key that is due, through a child rotation execution; the
// EventBridge envelope as the fleet's input does the same (no cursor: a
// fresh run).
func TestExecutionInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	in, err := os.ReadFile(ev("execution-input.json"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{WaitScale: "0.01"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != "SUCCEEDED" {
		t.Fatalf("execution-input.json: %s %s: %s", ex.Status, ex.Error, ex.Cause)
	}
	sched, err := os.ReadFile(ev("scheduled-event.json"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err = st.Execute(ctx, root, sched, stack.ExecuteOptions{WaitScale: "0.01"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Status != "FAILED" || ex.Error != "InvalidInput" {
		t.Fatalf("scheduled-event.json as execution input: %s %s: %s", ex.Status, ex.Error, ex.Cause)
	}

	for _, f := range []string{"planner.json", "scheduled-event.json"} {
		due := registerNewKey(ctx, t, f)
		in, err := os.ReadFile(ev(f))
		if err != nil {
			t.Fatal(err)
		}
		ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{WaitScale: "0.01", StateMachine: "FleetStateMachine"})
		if err != nil {
			t.Fatal(err)
		}
		if ex.Status != "SUCCEEDED" {
			t.Fatalf("%s as the fleet's input: %s %s: %s", f, ex.Status, ex.Error, ex.Cause)
		}
		t.Logf("%s as the fleet's input: output %s, child executions %v", f, ex.Output, ex.ChildExecutions)
		var stats struct{ Pages, Scanned, Due int }
		if err := json.Unmarshal(ex.Output, &stats); err != nil || stats.Pages != 1 || stats.Due < 1 || stats.Scanned < 2 {
			t.Errorf("%s: fleet output %s, want the run's stats with the new key due", f, ex.Output)
		}
		if ex.ChildExecutions["SUCCEEDED"] < 1 {
			t.Errorf("%s: child executions %v, want the due key's rotation SUCCEEDED", f, ex.ChildExecutions)
		}
		cfg, err := st.AWSConfig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		md, err := kms.NewFromConfig(cfg).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &due})
		if err != nil || md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil {
			t.Errorf("%s: the due key after the fleet run: %v %+v", f, err, md)
		}
	}
}

// registerNewKey makes a key due now: a new EXTERNAL key (PendingImport,
// never imported) with its own material secret, in the registry as
// `kms-reimport register` would put it.
func registerNewKey(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kms.NewFromConfig(cfg).CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal, KeySpec: kmstypes.KeySpecSymmetricDefault})
	if err != nil {
		t.Fatal(err)
	}
	mat := make([]byte, 32)
	_, _ = rand.Read(mat)
	secret := "kms-reimport/fleet-" + strings.TrimSuffix(name, ".json")
	if _, err := secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &secret, SecretBinary: mat}); err != nil {
		t.Fatal(err)
	}
	store := &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: stack.Table}
	if err := store.Put(ctx, registry.Entry{KeyARN: *k.KeyMetadata.Arn, SecretID: secret, Policy: flow.Policy{ValidFor: "720h", RenewBefore: "336h", WrappingKeySpec: "RSA_2048"}}); err != nil {
		t.Fatal(err)
	}
	return *k.KeyMetadata.Arn
}

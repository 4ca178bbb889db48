// Package stack runs the local AWS stand-ins the project is tested and
// demonstrated on: local-kms, DynamoDB Local, moto's Secrets Manager, and
// each function of template.yaml under the Lambda Runtime Interface
// Emulator. Everything is reached through the SDK's standard endpoint
// variables, which the stack writes to an env file.
package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
)

// Defaults of the local stack.
const (
	Region  = "eu-west-2"
	Account = "111122223333"
	Table   = "kms-reimport-local"
)

// Options configure Up.
type Options struct {
	// Root is the repository root (template.yaml, functions/, .local/tools).
	Root string
	// Dir holds the stack's state, logs, builds and env file.
	Dir string
	// FunctionEnv overrides function environment variables, like
	// `sam local invoke --env-vars`: "Parameters" applies to all functions,
	// a logical id to one.
	FunctionEnv map[string]map[string]string
	// Concurrency is how many runtime emulators run each function, like
	// Lambda's concurrency (one invocation at a time per emulator).
	// Default 1.
	Concurrency int
	// Log receives progress lines; nil is quiet.
	Log func(format string, args ...any)
	// KMS chooses what answers for KMS: KMSLocal (local-kms, the default)
	// or KMSStandIn (tests/support/kmsstandin, built from this
	// repository), which covers every importable key spec and wrapping
	// algorithm, ImportType/KeyMaterialId and rotations; see
	// docs/kms-standin.md.
	KMS string
	// StandInEnv is the KMS stand-in's environment: its KMS_STANDIN_*
	// delays (docs/kms-standin.md). Empty keeps its defaults, which model
	// AWS's asynchrony; suites that don't prove those behaviours shorten
	// them (never to zero where they are proved).
	StandInEnv []string
	// ReplicaRegions serves more Regions, for the replicas of multi-Region
	// keys: with the stand-in, the stand-in itself on one more port per
	// Region (ReplicateKey makes the replicas); with local-kms, one more
	// local-kms per Region (its own port, KMS_REGION and data).
	// The functions reach them through KMS_ENDPOINTS_BY_REGION (an
	// operator setting of the product, see docs/rotation.md); replica keys
	// are created with SeedReplica.
	ReplicaRegions []string
	// Samples creates what the files of events/ name (SampleAlias,
	// SampleSecret with version SampleSecretVersion): `make stack-up` does,
	// so `make invoke` and `make pipeline` work on the first try.
	Samples bool
	// NoIAM turns the IAM gate off: by default every AWS request of a
	// function passes a policy decision against its role in template.yaml
	// (infra/local/iamgate, docs/deploy.md "IAM in the local stack").
	NoIAM bool
	// Parameters are the template parameter values of the emulated
	// deployment (the rest take their Default): the roles the IAM gate
	// enforces are resolved with them.
	Parameters map[string]string
	// PolicyTemplate, when set, is the template the roles are read from
	// instead of Root/template.yaml (a test removing a permission).
	PolicyTemplate string
	// StepFunctions starts the Step Functions stand-in
	// (tests/support/sfnstandin) on the stack, so `kms-reimport rotate`
	// starts and follows executions of its state machines: `make
	// stack-up` does; the env file then has AWS_ENDPOINT_URL_SFN and
	// STATE_MACHINE_ARN.
	StepFunctions bool
	// MemberAccounts are member accounts (issue 19; docs/deploy.md, "Many
	// accounts") with the member stack (infra/member/template.yaml): each
	// has a KMS of its own (Options.KMS's kind, in Region; Stack.MemberKMS),
	// its account in moto (Stack.Keys), and the member role, whose trust
	// and policies the IAM gate enforces. RolelessAccounts are listed in
	// the hub's MemberAccounts too, but have no member stack (no role, no
	// KMS). Either sets the hub's MemberAccounts, MemberRoleName and
	// MemberExternalId parameters (MemberRoleName, MemberExternalID).
	MemberAccounts   []string
	RolelessAccounts []string
}

// What answers for KMS in a local stack (Options.KMS).
const (
	KMSLocal   = "local-kms"
	KMSStandIn = "kms-standin"
)

// Stack is a running local stack. Its JSON form is Dir/state.json.
type Stack struct {
	Dir       string            `json:"dir"`
	Region    string            `json:"region"`
	Table     string            `json:"table"`
	KMS       string            `json:"kms"`
	KMSImpl   string            `json:"kmsImpl,omitempty"` // KMSLocal or KMSStandIn
	DynamoDB  string            `json:"dynamodb"`
	Secrets   string            `json:"secretsmanager"`
	Functions map[string]string `json:"functions"` // logical id -> invoke URL
	// RegionKMS is the KMS endpoint of each replica Region (Options.ReplicaRegions).
	RegionKMS map[string]string `json:"regionKms,omitempty"`
	// Gate is each function's IAM gate URL (empty with Options.NoIAM).
	Gate map[string]string `json:"iamGate,omitempty"`
	// Pools lists every emulator of a function (Options.Concurrency).
	Pools map[string][]string `json:"pools,omitempty"`
	// SFN is the Step Functions stand-in's endpoint (Options.StepFunctions)
	// and StateMachine the ARN it gives RotationStateMachine.
	SFN          string `json:"sfn,omitempty"`
	StateMachine string `json:"stateMachineArn,omitempty"`
	// Topic is the notification topic (template's NotificationTopic).
	Topic string `json:"topic,omitempty"`
	// Sample is what Options.Samples created.
	Sample *Sample `json:"sample,omitempty"`
	// VenvBin goes first on the env file's PATH: the Python tools (the AWS
	// CLI) that make tools installed, if it had to.
	VenvBin string `json:"venvBin,omitempty"`
	// Members is the hub's MemberAccounts (Options.MemberAccounts and
	// RolelessAccounts), MemberKMS each member's KMS endpoint, Keys an
	// access key of each account in moto (AccountConfig), Operator the
	// operator's entry of the IAM gate (OperatorEnv).
	Members   []string             `json:"members,omitempty"`
	MemberKMS map[string]string    `json:"memberKms,omitempty"`
	Keys      map[string]AccessKey `json:"accessKeys,omitempty"`
	Operator  string               `json:"operatorGate,omitempty"`
	PIDs      map[string]int       `json:"pids"`

	// specs remembers how each process was started (Restart).
	specs map[string]procSpec
}

// Tools is where install.sh puts what the stack runs: root/.local/tools, or
// KMS_REIMPORT_TOOLS when set (as for install.sh and the Makefile).
func Tools(root string) string {
	if d := os.Getenv("KMS_REIMPORT_TOOLS"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(root, d)
		}
		return d
	}
	return filepath.Join(root, ".local", "tools")
}

// PythonTool finds a Python tool (moto_server, cfn-lint, aws): the one
// install.sh put in Tools/venv when it had to, else the one on PATH.
func PythonTool(root, name string) (string, error) {
	p := filepath.Join(Tools(root), "venv", "bin", name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is not installed (neither in %s nor on PATH): run `make tools`", name, filepath.Join(Tools(root), "venv", "bin"))
}

// Up starts everything and waits until each part answers.
func Up(ctx context.Context, o Options) (st *Stack, err error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	tools := Tools(o.Root)
	switch o.KMS {
	case "":
		o.KMS = KMSLocal
	case KMSLocal, KMSStandIn:
	default:
		return nil, fmt.Errorf("Options.KMS %q: want %q or %q", o.KMS, KMSLocal, KMSStandIn)
	}
	need := []string{"bin/aws-lambda-rie", "dynamodb/DynamoDBLocal.jar"}
	if o.KMS == KMSLocal {
		need = append(need, "bin/local-kms")
	}
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(tools, p)); err != nil {
			return nil, fmt.Errorf("%s is missing: run infra/local/install.sh (make tools) first", filepath.Join(tools, p))
		}
	}
	moto, err := PythonTool(o.Root, "moto_server")
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("java is not on PATH: run `make tools`, which says how to get it")
	}
	hubParameters(&o)
	if old, err := Load(o.Dir); err == nil && old.alive() {
		return nil, fmt.Errorf("a local stack is already running from %s; stop it first (make stack-down)", o.Dir)
	}
	_ = os.RemoveAll(o.Dir)
	for _, d := range []string{"logs", "build", "kms-data"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	st = &Stack{Dir: o.Dir, Region: Region, Table: Table, KMSImpl: o.KMS, Functions: map[string]string{}, PIDs: map[string]int{}}
	defer func() {
		if err != nil {
			_ = st.Down()
		}
	}()

	st.Members = append(append([]string{}, o.MemberAccounts...), o.RolelessAccounts...)
	ports, err := FreePorts(3 + len(o.ReplicaRegions) + len(o.MemberAccounts))
	if err != nil {
		return st, err
	}
	var standInRegions []string
	for i, region := range o.ReplicaRegions {
		if st.RegionKMS == nil {
			st.RegionKMS = map[string]string{}
		}
		if o.KMS == KMSStandIn {
			// The stand-in serves each replica Region on its own port:
			// ReplicateKey makes real replicas there, which learn the
			// primary's materials asynchronously, as in AWS.
			st.RegionKMS[region] = fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
			standInRegions = append(standInRegions, fmt.Sprintf("%s=127.0.0.1:%d", region, ports[3+i]))
			continue
		}
		if _, err := os.Stat(filepath.Join(tools, "bin/local-kms")); err != nil {
			return st, fmt.Errorf("%s is missing: run infra/local/install.sh (make tools) first", filepath.Join(tools, "bin/local-kms"))
		}
		st.RegionKMS[region] = fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
		if err := st.startRegionKMS(o.Root, region); err != nil {
			return st, err
		}
	}
	st.KMS = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	st.DynamoDB = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	st.Secrets = fmt.Sprintf("http://127.0.0.1:%d", ports[2])

	if o.KMS == KMSStandIn {
		bin := filepath.Join(o.Dir, "build", KMSStandIn, KMSStandIn)
		if err := goBuild(ctx, o.Root, bin, "./tests/support/kmsstandin/cmd/kms-standin", nil); err != nil {
			return st, err
		}
		args := []string{"--addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--region", Region, "--account", Account}
		if len(standInRegions) > 0 {
			args = append(args, "--replica-regions", strings.Join(standInRegions, ","))
		}
		if err := st.start(KMSStandIn, nil, o.StandInEnv, bin, args...); err != nil {
			return st, err
		}
	} else if err := st.start(KMSLocal, nil, []string{
		"PORT=" + fmt.Sprint(ports[0]), "KMS_REGION=" + Region, "KMS_ACCOUNT_ID=" + Account,
		"KMS_DATA_PATH=" + filepath.Join(o.Dir, "kms-data"),
	}, filepath.Join(tools, "bin/local-kms")); err != nil {
		return st, err
	}
	for i, a := range o.MemberAccounts {
		if err := st.startMemberKMS(ctx, o, a, ports[3+len(o.ReplicaRegions)+i]); err != nil {
			return st, err
		}
	}
	ddb := filepath.Join(tools, "dynamodb")
	if err := st.start("dynamodb-local", nil, nil, "java", "-Djava.library.path="+filepath.Join(ddb, "DynamoDBLocal_lib"),
		"-jar", filepath.Join(ddb, "DynamoDBLocal.jar"), "-inMemory", "-port", fmt.Sprint(ports[1])); err != nil {
		return st, err
	}
	// moto in the stack's account (its default is 123456789012): the ARNs
	// it answers are the ones the IAM gate decides on. With member
	// accounts, moto serves each account by the request's access key
	// instead (createAccessKeys; MOTO_ACCOUNT_ID would override that).
	motoEnv := []string{"MOTO_ACCOUNT_ID=" + Account}
	if len(st.Members) > 0 {
		motoEnv = nil
	}
	if err := st.start("moto", nil, motoEnv, moto, "-H", "127.0.0.1", "-p", fmt.Sprint(ports[2])); err != nil {
		return st, err
	}

	tmpl, err := LoadTemplate(filepath.Join(o.Root, "template.yaml"), map[string]string{"RotationTable": Table})
	if err != nil {
		return st, err
	}
	logf("building %d functions for this host", len(tmpl.Functions))
	if err := buildHost(ctx, o.Root, filepath.Join(o.Dir, "build"), tmpl.Functions, logf); err != nil {
		return st, err
	}

	if err := st.waitServices(ctx); err != nil {
		return st, err
	}
	logf("%s %s, DynamoDB Local %s, moto %s: up", st.KMSImpl, st.KMS, st.DynamoDB, st.Secrets)
	if len(st.Members) > 0 {
		if err := st.createAccessKeys(ctx, append([]string{Account}, o.MemberAccounts...)); err != nil {
			return st, err
		}
		logf("member accounts %s: KMS %v, moto by access key", strings.Join(st.Members, ","), st.MemberKMS)
	}
	if err := st.createTable(ctx, tmpl.Table); err != nil {
		return st, err
	}
	if st.Topic, err = st.createTopic(ctx); err != nil {
		return st, err
	}
	// Again, now that the template's resources have local names.
	// The emulated deployment's parameter values (o.Parameters) reach the
	// functions' environment as they reach the roles: one deployment.
	names := map[string]string{"RotationTable": Table, "NotificationTopic": st.Topic}
	for k, v := range o.Parameters {
		names[k] = v
	}
	tmpl, err = LoadTemplate(filepath.Join(o.Root, "template.yaml"), names)
	if err != nil {
		return st, err
	}

	if !o.NoIAM {
		pt := o.PolicyTemplate
		if pt == "" {
			pt = filepath.Join(o.Root, "template.yaml")
		}
		if st.Gate, err = st.startGate(ctx, o, pt, tmpl.Functions); err != nil {
			return st, err
		}
		logf("IAM gate: every AWS request of a function is decided against its role (%s)", pt)
	}
	n := max(o.Concurrency, 1)
	fports, err := FreePorts(2 * n * len(tmpl.Functions))
	if err != nil {
		return st, err
	}
	st.Pools = map[string][]string{}
	p := 0
	for _, f := range tmpl.Functions {
		env := st.functionEnv(f, o.FunctionEnv)
		for c := 0; c < n; c++ {
			// Each emulator needs its own Runtime API port too (default 9001).
			addr := fmt.Sprintf("127.0.0.1:%d", fports[p])
			rapi := fmt.Sprintf("127.0.0.1:%d", fports[p+1])
			p += 2
			name := f.LogicalID
			if c > 0 {
				name = fmt.Sprintf("%s-%d", f.LogicalID, c)
			}
			if err := st.start(name, nil, env, filepath.Join(tools, "bin/aws-lambda-rie"),
				"--runtime-interface-emulator-address", addr, "--runtime-api-address", rapi, filepath.Join(o.Dir, "build", f.LogicalID, "bootstrap")); err != nil {
				return st, err
			}
			u := "http://" + addr + "/2015-03-31/functions/function/invocations"
			st.Pools[f.LogicalID] = append(st.Pools[f.LogicalID], u)
			if c == 0 {
				st.Functions[f.LogicalID] = u
			}
		}
	}
	for id, urls := range st.Pools {
		for _, u := range urls {
			if err := WaitTCP(ctx, strings.TrimPrefix(strings.Split(u, "/2015")[0], "http://"), 30*time.Second); err != nil {
				return st, fmt.Errorf("runtime emulator for %s: %w (see %s)", id, err, st.logPath(id))
			}
		}
	}
	logf("%d functions under the Lambda Runtime Interface Emulator: up", len(st.Functions))
	if o.Samples {
		if st.Sample, err = st.createSamples(ctx); err != nil {
			return st, err
		}
		logf("sample for events/: key %s (%s), secret %s version %s", st.Sample.KeyARN, st.Sample.Alias, st.Sample.SecretID, st.Sample.SecretVersionID)
	}
	st.VenvBin = venvBin(o.Root)
	if err := st.save(); err != nil || !o.StepFunctions {
		return st, err
	}
	if err := st.startSFN(ctx, o.Root); err != nil {
		return st, err
	}
	logf("Step Functions stand-in %s: up (kms-reimport rotate starts and follows %s)", st.SFN, st.StateMachine)
	return st, st.save()
}

// sfnStandIn is the Step Functions stand-in's process name.
const sfnStandIn = "sfn-standin"

// StateMachineARN is the ARN the Step Functions stand-in gives a state
// machine of template.yaml (by logical id).
func StateMachineARN(region, account, logicalID string) string {
	return fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:%s", region, account, logicalID)
}

// startSFN builds and starts the Step Functions stand-in on the saved
// stack (it reads Dir/state.json) and waits until it answers.
func (st *Stack) startSFN(ctx context.Context, root string) error {
	bin := filepath.Join(st.Dir, "build", sfnStandIn, sfnStandIn)
	if err := goBuild(ctx, root, bin, "./tests/support/sfnstandin/cmd/sfn-standin", nil); err != nil {
		return err
	}
	ports, err := FreePorts(1)
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if err := st.start(sfnStandIn, nil, nil, bin, "--addr", addr, "--stack-dir", st.Dir, "--root", root); err != nil {
		return err
	}
	if err := WaitTCP(ctx, addr, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w (see %s)", sfnStandIn, err, st.logPath(sfnStandIn))
	}
	st.SFN, st.StateMachine = "http://"+addr, StateMachineARN(st.Region, Account, "RotationStateMachine")
	return nil
}

// venvBin is Tools/venv/bin when install.sh made it.
func venvBin(root string) string {
	d := filepath.Join(Tools(root), "venv", "bin")
	if fi, err := os.Stat(d); err == nil && fi.IsDir() {
		return d
	}
	return ""
}

// ClientEnv is the environment an SDK client (a test, the CLI, the AWS
// CLI) needs to reach this stack.
func (st *Stack) ClientEnv() []string {
	key := AccessKey{ID: "local", Secret: "local"}
	if k, ok := st.Keys[Account]; ok {
		key = k // moto serving many accounts: the hub's IAM user
	}
	env := []string{
		"AWS_REGION=" + st.Region,
		"AWS_DEFAULT_REGION=" + st.Region,
		"AWS_ACCESS_KEY_ID=" + key.ID,
		"AWS_SECRET_ACCESS_KEY=" + key.Secret,
		"AWS_ENDPOINT_URL_KMS=" + st.KMS,
		"AWS_ENDPOINT_URL_DYNAMODB=" + st.DynamoDB,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + st.Secrets,
		// moto's server answers for every service it has: SNS too.
		"AWS_ENDPOINT_URL_SNS=" + st.Secrets,
		// ... and STS, which issues the member roles' credentials.
		"AWS_ENDPOINT_URL_STS=" + st.Secrets,
		"TABLE_NAME=" + st.Table,
	}
	if len(st.RegionKMS) > 0 {
		b, _ := json.Marshal(st.RegionKMS)
		env = append(env, "KMS_ENDPOINTS_BY_REGION="+string(b))
	}
	if st.SFN != "" {
		env = append(env, "AWS_ENDPOINT_URL_SFN="+st.SFN, "STATE_MACHINE_ARN="+st.StateMachine)
	}
	return env
}

// regionKMSName is the process name of a replica Region's local-kms.
func regionKMSName(region string) string { return KMSLocal + "-" + region }

func (st *Stack) startRegionKMS(root, region string) error {
	u := st.RegionKMS[region]
	port := u[strings.LastIndex(u, ":")+1:]
	data := filepath.Join(st.Dir, "kms-data-"+region)
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	if err := st.start(regionKMSName(region), nil, []string{
		"PORT=" + port, "KMS_REGION=" + region, "KMS_ACCOUNT_ID=" + Account, "KMS_DATA_PATH=" + data,
		"KMS_SEED_PATH=" + filepath.Join(st.Dir, "kms-seed-"+region+".yaml"),
	}, filepath.Join(Tools(root), "bin/local-kms")); err != nil {
		return err
	}
	return WaitTCP(context.Background(), strings.TrimPrefix(u, "http://"), 30*time.Second)
}

// SeedReplica creates, in the local-kms of region, a SYMMETRIC_DEFAULT key
// with origin EXTERNAL (PendingImport) whose key id is keyID (the mrk- id
// of a multi-Region primary), so its ARN is the replica's. local-kms has no
// multi-Region keys and takes chosen key ids only from its seed file, so
// the seed is appended and that local-kms restarted (its data persists).
func (st *Stack) SeedReplica(ctx context.Context, root, region, keyID string) (string, error) {
	if _, ok := st.RegionKMS[region]; !ok {
		return "", fmt.Errorf("no local-kms for %s in this stack (Options.ReplicaRegions)", region)
	}
	seed := filepath.Join(st.Dir, "kms-seed-"+region+".yaml")
	b, _ := os.ReadFile(seed)
	if len(b) == 0 {
		b = []byte("Keys:\n  Symmetric:\n    Aes:\n")
	}
	b = append(b, []byte(fmt.Sprintf("      - Metadata:\n          KeyId: %s\n          Origin: EXTERNAL\n          Description: replica of a multi-Region key\n", keyID))...)
	if err := os.WriteFile(seed, b, 0o644); err != nil {
		return "", err
	}
	if err := st.Stop(regionKMSName(region)); err != nil {
		return "", err
	}
	time.Sleep(300 * time.Millisecond)
	if err := st.startRegionKMS(root, region); err != nil {
		return "", err
	}
	arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, Account, keyID)
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return "", err
	}
	c := kms.NewFromConfig(cfg, func(o *kms.Options) { o.Region, o.BaseEndpoint = region, aws.String(st.RegionKMS[region]) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
		if err == nil && out.KeyMetadata != nil {
			return arn, st.save()
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("seeded replica %s did not appear in %s's local-kms: %v (see %s)", arn, region, err, st.logPath(regionKMSName(region)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (st *Stack) functionEnv(f Function, over map[string]map[string]string) []string {
	m := map[string]string{}
	for k, v := range f.Env {
		m[k] = v
	}
	// The stack's endpoints win over what the template declares (ports
	// change at every start); explicit overrides win over both.
	for _, kv := range st.ClientEnv() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	if g := st.Gate[f.LogicalID]; g != "" {
		st.gatedEndpoints(m, g)
	}
	for _, src := range []map[string]string{over["Parameters"], over[f.LogicalID]} {
		for k, v := range src {
			m[k] = v
		}
	}
	env := append([]string{},
		"AWS_LAMBDA_FUNCTION_NAME="+f.LogicalID,
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", f.MemoryMB),
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", f.TimeoutSecs),
		"PATH="+os.Getenv("PATH"))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+m[k])
	}
	return env
}

// start runs a process in its own process group (so it outlives a
// `stackctl up` and can be stopped as a whole), logging to Dir/logs.
func (st *Stack) start(name string, _ []string, env []string, prog string, args ...string) error {
	logf, err := os.OpenFile(st.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = st.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	st.PIDs[name] = cmd.Process.Pid
	if st.specs == nil {
		st.specs = map[string]procSpec{}
	}
	st.specs[name] = procSpec{env: env, prog: prog, args: args}
	go func() { _ = cmd.Wait() }() // reap when started in-process (tests)
	return nil
}

func (st *Stack) logPath(name string) string { return filepath.Join(st.Dir, "logs", name+".log") }

// LogPath is where a part of the stack (a function's logical id,
// local-kms or kms-standin, dynamodb-local, moto) writes its output.
func (st *Stack) LogPath(name string) string { return st.logPath(name) }

// kmsName is the process name of what answers for KMS.
func (st *Stack) kmsName() string {
	if st.KMSImpl == "" {
		return KMSLocal
	}
	return st.KMSImpl
}

func (st *Stack) waitServices(ctx context.Context) error {
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return err
	}
	checks := map[string]func(context.Context) error{
		st.kmsName(): func(ctx context.Context) error {
			_, err := kms.NewFromConfig(cfg).ListKeys(ctx, &kms.ListKeysInput{})
			return err
		},
		"dynamodb-local": func(ctx context.Context) error {
			_, err := dynamodb.NewFromConfig(cfg).ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		},
		"moto": func(ctx context.Context) error {
			_, err := secretsmanager.NewFromConfig(cfg).ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
			return err
		},
	}
	for name, check := range checks {
		deadline := time.Now().Add(60 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := check(cctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer within 60s: %v (see %s)", name, err, st.logPath(name))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// createTopic makes the template's NotificationTopic in moto.
func (st *Stack) createTopic(ctx context.Context) (string, error) {
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return "", err
	}
	out, err := sns.NewFromConfig(cfg).CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("kms-reimport-notifications")})
	if err != nil {
		return "", fmt.Errorf("creating the notification topic: %w", err)
	}
	return *out.TopicArn, nil
}

// AWSConfig is an SDK configuration pointed at this stack.
func (st *Stack) AWSConfig(ctx context.Context) (aws.Config, error) {
	for _, kv := range st.ClientEnv() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") {
			os.Setenv(k, v)
		}
	}
	return config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(2))
}

func (st *Stack) createTable(ctx context.Context, t TableSpec) error {
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return err
	}
	db := dynamodb.NewFromConfig(cfg)
	in := &dynamodb.CreateTableInput{
		TableName:   &st.Table,
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: &t.HashKey, AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{{AttributeName: &t.HashKey, KeyType: ddbtypes.KeyTypeHash}},
	}
	if t.RangeKey != "" {
		in.AttributeDefinitions = append(in.AttributeDefinitions, ddbtypes.AttributeDefinition{AttributeName: &t.RangeKey, AttributeType: ddbtypes.ScalarAttributeTypeS})
		in.KeySchema = append(in.KeySchema, ddbtypes.KeySchemaElement{AttributeName: &t.RangeKey, KeyType: ddbtypes.KeyTypeRange})
	}
	if _, err := db.CreateTable(ctx, in); err != nil {
		return fmt.Errorf("creating table %s: %w", st.Table, err)
	}
	if t.TTLAttribute != "" {
		_, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: &st.Table,
			TimeToLiveSpecification: &ddbtypes.TimeToLiveSpecification{AttributeName: &t.TTLAttribute, Enabled: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("enabling TTL on %s: %w", st.Table, err)
		}
	}
	return nil
}

// buildHost compiles every function for this machine (the runtime
// emulator runs host binaries), saying as each one is built: the first
// build of a fresh clone takes minutes.
func buildHost(ctx context.Context, root, out string, fns []Function, logf func(string, ...any)) error {
	for i, f := range fns {
		start := time.Now()
		dir := filepath.Join(out, f.LogicalID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := goBuild(ctx, root, filepath.Join(dir, "bootstrap"), "./"+f.Dir, []string{"-tags", "lambda.norpc"}); err != nil {
			return fmt.Errorf("building %s: %w", f.LogicalID, err)
		}
		logf("  built %s (%d/%d) in %s", f.LogicalID, i+1, len(fns), time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// goBuild builds one package for this machine.
func goBuild(ctx context.Context, root, out, pkg string, flags []string) error {
	args := append([]string{"build"}, flags...)
	args = append(args, "-trimpath", "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func (st *Stack) save() error {
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(st.Dir, "state.json"), b, 0o644); err != nil {
		return err
	}
	var env strings.Builder
	env.WriteString("# Written by the local stack; `source` it to point the AWS SDKs and CLI at the emulators.\n")
	for _, kv := range st.OperatorEnv() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&env, "export %s=%q\n", k, v)
	}
	if st.VenvBin != "" {
		fmt.Fprintf(&env, "# The Python tools (aws, moto_server, cfn-lint) that make tools installed.\nexport PATH=%q:\"$PATH\"\n", st.VenvBin)
	}
	if err := os.WriteFile(filepath.Join(st.Dir, "env"), []byte(env.String()), 0o644); err != nil {
		return err
	}
	fb, _ := json.MarshalIndent(st.Functions, "", "  ")
	return os.WriteFile(filepath.Join(st.Dir, "functions.json"), fb, 0o644)
}

// Load reads the state of a stack started earlier from dir.
func Load(dir string) (*Stack, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st Stack
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	return &st, nil
}

func (st *Stack) alive() bool {
	for _, pid := range st.PIDs {
		if syscall.Kill(pid, 0) == nil {
			return true
		}
	}
	return false
}

// Down stops every process the stack started (their whole process groups).
func (st *Stack) Down() error {
	for _, pid := range st.PIDs {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.alive() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range st.PIDs {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = os.Remove(filepath.Join(st.Dir, "state.json"))
	return nil
}

type procSpec struct {
	env  []string
	prog string
	args []string
}

// Restart starts a part stopped with Stop (or kills and starts it again)
// with the same command, port and data: an emulator coming back.
func (st *Stack) Restart(name string) error {
	sp, ok := st.specs[name]
	if !ok {
		return fmt.Errorf("no %s started by this process", name)
	}
	if pid, ok := st.PIDs[name]; ok {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		delete(st.PIDs, name)
	}
	time.Sleep(200 * time.Millisecond) // let the port go
	if err := st.start(name, nil, sp.env, sp.prog, sp.args...); err != nil {
		return err
	}
	return st.save()
}

// Stop stops one part (for fault tests) and forgets its pid.
func (st *Stack) Stop(name string) error {
	pid, ok := st.PIDs[name]
	if !ok {
		return fmt.Errorf("no %s in this stack", name)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	delete(st.PIDs, name)
	return nil
}

// Invoke sends one event to a function's runtime emulator and returns the
// raw response body and whether it is a function error.
func (st *Stack) Invoke(ctx context.Context, logicalID string, event []byte) ([]byte, bool, error) {
	u, ok := st.Functions[logicalID]
	if !ok {
		return nil, false, fmt.Errorf("no function %s in this stack", logicalID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(event)))
	if err != nil {
		return nil, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, err
	}
	var e struct {
		ErrorType string `json:"errorType"`
	}
	isErr := resp.Header.Get("X-Amz-Function-Error") != "" || (json.Unmarshal(body, &e) == nil && e.ErrorType != "")
	return body, isErr, nil
}

// Package template_test proves template.yaml: cfn-lint with the SAM
// transform, every function's build target and binary, the state machine's
// substitutions and definition (asl-validator), and the IAM policies.
package template_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

func lookTool(t testing.TB, name string, extra ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s is not installed or not on PATH: run `make tools` (it checks %s and says how to get it); the image's Python tools live under ~/.pyenv/shims", name, name)
	return ""
}

// TestCfnLint: no errors and no warnings (warnings left must be explained in
// a template comment and listed here; there are none).
func TestCfnLint(t *testing.T) {
	home, _ := os.UserHomeDir()
	lint := lookTool(t, "cfn-lint", filepath.Join(home, ".pyenv/shims/cfn-lint"))
	root := repoRoot(t)
	// The hub's template and the member accounts' (infra/member).
	for _, f := range []string{"template.yaml", "infra/member/template.yaml"} {
		cmd := exec.Command(lint, "--format", "parseable", f)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("cfn-lint %s: %v\n%s", f, err, out)
		}
	}
}

func functionIDs(p *parsed) []string {
	var ids []string
	for id := range p.T.GetAllServerlessFunctionResources() {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// TestFunctionsDeclared: runtime, handler, architecture, makefile build,
// JSON logs, a role of the template, sized memory and timeout.
func TestFunctionsDeclared(t *testing.T) {
	p := parseTemplate(t, nil)
	ids := functionIDs(p)
	if len(ids) < 5 {
		t.Fatalf("template.yaml has %d functions, want at least the 5 stages: %v", len(ids), ids)
	}
	roles := p.T.GetAllIAMRoleResources()
	for _, id := range ids {
		f := p.T.GetAllServerlessFunctionResources()[id]
		if got := p.functionProp(id, "Runtime"); got != "provided.al2023" {
			t.Errorf("%s: Runtime %v, want provided.al2023", id, got)
		}
		if got := p.functionProp(id, "Handler"); got != "bootstrap" {
			t.Errorf("%s: Handler %v, want bootstrap", id, got)
		}
		if got := fmt.Sprint(p.functionProp(id, "Architectures")); got != "[arm64]" {
			t.Errorf("%s: Architectures %v, want [arm64]", id, got)
		}
		if bm := f.AWSCloudFormationMetadata["BuildMethod"]; bm != "makefile" {
			t.Errorf("%s: Metadata.BuildMethod %v, want makefile (the root go.mod is shared)", id, bm)
		}
		lc, _ := p.functionProp(id, "LoggingConfig").(map[string]any)
		if lc["LogFormat"] != "JSON" {
			t.Errorf("%s: LoggingConfig.LogFormat %v, want JSON", id, lc["LogFormat"])
		}
		// The upper bound of Timeout is per Task: TestTaskTimeouts.
		mem, _ := p.functionProp(id, "MemorySize").(float64)
		to, _ := p.functionProp(id, "Timeout").(float64)
		if mem < 128 || mem > 1024 || to < 3 || to > 900 {
			t.Errorf("%s: MemorySize %v / Timeout %v: want 128-1024 MB and 3-900 s", id, mem, to)
		}
		if f.Policies != nil {
			t.Errorf("%s: SAM Policies are not allowed: write the role out (AWS::IAM::Role) so its policy is reviewed and tested", id)
		}
		role := ""
		if f.Role != nil {
			role = *f.Role
		}
		if _, ok := roles[strings.TrimPrefix(role, "arn:aws:iam::"+account+":role/"+stackName+"-")]; !ok {
			t.Errorf("%s: Role %q is not an AWS::IAM::Role of the template", id, role)
		}
		// As SAM deploys it: Globals merged into the function's own.
		if vars := p.environment(id); vars["TABLE_NAME"] != "RotationTable" {
			t.Errorf("%s: TABLE_NAME %v (Globals merged with the function's Environment), want !Ref RotationTable", id, vars["TABLE_NAME"])
		}
	}
}

// TestEnvironmentMerged proves environment() merges the way SAM does: the
// Globals' variables reach a function that declares its own Environment,
// and the function's keys win.
func TestEnvironmentMerged(t *testing.T) {
	p := &parsed{Raw: map[string]any{
		"Globals": map[string]any{"Function": map[string]any{"Environment": map[string]any{"Variables": map[string]any{"TABLE_NAME": "T", "A": "global"}}}},
		"Resources": map[string]any{
			"Own":  map[string]any{"Properties": map[string]any{"Environment": map[string]any{"Variables": map[string]any{"A": "own", "B": "b"}}}},
			"None": map[string]any{"Properties": map[string]any{}},
		},
	}}
	if got := fmt.Sprint(p.environment("Own")); got != "map[A:own B:b TABLE_NAME:T]" {
		t.Errorf("Own: %s", got)
	}
	if got := fmt.Sprint(p.environment("None")); got != "map[A:global TABLE_NAME:T]" {
		t.Errorf("None: %s", got)
	}
}

// TestEnvironmentNames: every variable the template gives a function is one
// the code reads (a string literal in shared/ or functions/), so a renamed
// variable (RENEW_BEFORE -> DEFAULT_RENEW_BEFORE) can't be left behind in
// the template, and the variables the settings require are given.
func TestEnvironmentNames(t *testing.T) {
	p := parseTemplate(t, nil)
	root := repoRoot(t)
	var src strings.Builder
	for _, dir := range []string{"shared", "functions"} {
		_ = filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				b, _ := os.ReadFile(path)
				src.Write(b)
			}
			return nil
		})
	}
	code := src.String()
	for _, id := range functionIDs(p) {
		vars := p.environment(id)
		for k, v := range vars {
			if strings.HasPrefix(k, "AWS_ENDPOINT_URL_") {
				// Read by the AWS SDK itself; declared empty (which the SDK
				// ignores) so sam local invoke --env-vars can set them.
				if v != "" {
					t.Errorf("%s: %s is %q: it must stay empty in the template (AWS uses the standard endpoints)", id, k, v)
				}
				continue
			}
			if !strings.Contains(code, `"`+k+`"`) {
				t.Errorf("%s: environment variable %s is read nowhere in shared/ or functions/", id, k)
			}
		}
		for _, k := range []string{"TABLE_NAME", "DEFAULT_VALID_FOR", "DEFAULT_RENEW_BEFORE", "LEASE_DURATION", "MIN_TOKEN_VALIDITY", "MAX_TOKEN_FETCHES"} {
			if _, ok := vars[k]; !ok {
				t.Errorf("%s: no %s (a template parameter the settings read)", id, k)
			}
		}
	}
	if v := p.environment("PlannerFunction"); v["MAX_CONCURRENCY"] != 5.0 && v["MAX_CONCURRENCY"] != "5" {
		t.Errorf("PlannerFunction: MAX_CONCURRENCY %v, want !Ref MaxConcurrency (default 5)", v["MAX_CONCURRENCY"])
	}
}

// TestBuildTargets runs `make build-<LogicalId> ARTIFACTS_DIR=<dir>` as sam
// build does, and checks the bootstrap: an ELF for the declared
// architecture, static, built with -tags lambda.norpc, -trimpath, no cgo.
func TestBuildTargets(t *testing.T) {
	p := parseTemplate(t, nil)
	root := repoRoot(t)
	out := t.TempDir()
	machines := map[string]elf.Machine{"arm64": elf.EM_AARCH64, "x86_64": elf.EM_X86_64}
	goarch := map[string]string{"arm64": "arm64", "x86_64": "amd64"}
	var wg sync.WaitGroup
	for _, id := range functionIDs(p) {
		arch := "x86_64"
		if a, ok := p.functionProp(id, "Architectures").([]any); ok && len(a) == 1 {
			arch = fmt.Sprint(a[0])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := filepath.Join(out, id)
			cmd := exec.Command("make", "--no-print-directory", "build-"+id, "ARTIFACTS_DIR="+dir)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("make build-%s ARTIFACTS_DIR=...: %v\n%s", id, err, b)
				return
			}
			bin := filepath.Join(dir, "bootstrap")
			st, err := os.Stat(bin)
			if err != nil {
				t.Errorf("%s: no bootstrap in ARTIFACTS_DIR: %v", id, err)
				return
			}
			if st.Mode()&0o111 == 0 {
				t.Errorf("%s: bootstrap is not executable", id)
			}
			ef, err := elf.Open(bin)
			if err != nil {
				t.Errorf("%s: bootstrap is not an ELF: %v", id, err)
				return
			}
			defer ef.Close()
			if ef.Machine != machines[arch] {
				t.Errorf("%s: bootstrap is for %v, the template declares %s", id, ef.Machine, arch)
			}
			for _, prog := range ef.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Errorf("%s: bootstrap is dynamically linked (has PT_INTERP)", id)
				}
			}
			bi, err := buildinfo.ReadFile(bin)
			if err != nil {
				t.Errorf("%s: no Go build info: %v", id, err)
				return
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			want := map[string]string{"-tags": "lambda.norpc", "-trimpath": "true", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": goarch[arch]}
			for k, v := range want {
				if settings[k] != v {
					t.Errorf("%s: build setting %s=%q, want %q", id, k, settings[k], v)
				}
			}
			if !strings.HasSuffix(bi.Path, "/"+strings.TrimPrefix(funcDir(id), "functions/")) {
				t.Errorf("%s: bootstrap is built from %s, want .../%s", id, bi.Path, funcDir(id))
			}
		}()
	}
	wg.Wait()

	// `make build` builds every function of the template.
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^FUNCTIONS\s*:=\s*(.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile has no FUNCTIONS list")
	}
	listed := strings.Fields(string(m[1]))
	sort.Strings(listed)
	if got, want := strings.Join(listed, " "), strings.Join(functionIDs(p), " "); got != want {
		t.Errorf("Makefile FUNCTIONS = %s; template functions = %s", got, want)
	}
}

var camel = regexp.MustCompile(`([a-z0-9])([A-Z])`)

func funcDir(id string) string {
	return "functions/" + strings.ToLower(camel.ReplaceAllString(strings.TrimSuffix(id, "Function"), "$1-$2"))
}

type machine struct {
	id   string
	subs map[string]string
	def  map[string]any
	path string
}

func stateMachines(t *testing.T, p *parsed) []machine {
	t.Helper()
	root := repoRoot(t)
	var out []machine
	for id, sm := range p.T.GetAllServerlessStateMachineResources() {
		if sm.DefinitionUri == nil || sm.DefinitionUri.String == nil {
			t.Fatalf("%s: want DefinitionUri naming a file under infra/", id)
		}
		path := filepath.Join(root, *sm.DefinitionUri.String)
		if !strings.HasPrefix(*sm.DefinitionUri.String, "infra/") {
			t.Errorf("%s: DefinitionUri %s is not under infra/", id, *sm.DefinitionUri.String)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		var def map[string]any
		if err := json.Unmarshal(b, &def); err != nil {
			t.Fatalf("%s: %s: %v", id, path, err)
		}
		out = append(out, machine{id: id, subs: sm.DefinitionSubstitutions, def: def, path: path})
	}
	if len(out) == 0 {
		t.Fatal("template.yaml has no AWS::Serverless::StateMachine")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

var placeholder = regexp.MustCompile(`^\$\{([A-Za-z0-9_]+)\}$`)

// Task kinds the definitions may use.
const (
	lambdaTask = "lambda" // "${XFunctionArn}" or arn:aws:states:::lambda:invoke
	startTask  = "start"  // arn:aws:states:::states:startExecution[.sync[:2]]
)

// task is one Task state and what it is bound to.
type task struct {
	machine, name string
	kind          string // lambdaTask or startTask
	sub           string // the substitution it uses
	target        string // logical id of the function or state machine
	sync          bool   // startExecution.sync / .sync:2: the parent waits
	timeout       float64
	hasTimeout    bool
}

// binding is what the template's state machines call: every Task, the
// state machines that run a Distributed Map, and the rule violations found
// on the way (for TestDefinitionSubstitutions to report).
type binding struct {
	tasks       []task
	distributed map[string]bool     // state machine id -> has a DISTRIBUTED Map
	subs        map[string][]string // state machine id -> substitution keys
	problems    []string
}

// bindings reads every definition. A substitution must name a function
// (!GetAtt X.Arn) or another state machine of the template (!Ref X); every
// Task must take its target from a substitution: a Lambda Task as its
// Resource (or lambda:invoke's FunctionName) naming a function, a
// startExecution Task as Parameters.StateMachineArn naming a state machine.
func bindings(t *testing.T, p *parsed) *binding {
	t.Helper()
	return bind(p, stateMachines(t, p))
}

func bind(p *parsed, machines []machine) *binding {
	b := &binding{distributed: map[string]bool{}, subs: map[string][]string{}}
	bad := func(format string, a ...any) { b.problems = append(b.problems, fmt.Sprintf(format, a...)) }
	fns := map[string]bool{}
	for _, id := range functionIDs(p) {
		fns[id] = true
	}
	fnArn := regexp.MustCompile(`^arn:aws:lambda:` + region + `:` + account + `:function:([A-Za-z0-9]+)$`)
	smByArn := map[string]string{}
	for id := range p.T.GetAllServerlessStateMachineResources() {
		smByArn[p.arnOf(id)] = id
	}
	for _, sm := range machines {
		kindOf := map[string]string{} // substitution -> lambdaTask / startTask
		targetOf := map[string]string{}
		for k, v := range sm.subs {
			b.subs[sm.id] = append(b.subs[sm.id], k)
			if m := fnArn.FindStringSubmatch(v); m != nil && fns[m[1]] {
				kindOf[k], targetOf[k] = lambdaTask, m[1]
			} else if id, ok := smByArn[v]; ok && id != sm.id {
				kindOf[k], targetOf[k] = startTask, id
			} else {
				bad("%s: DefinitionSubstitutions.%s = %q names neither a function (!GetAtt <Function>.Arn) nor another state machine (!Ref <StateMachine>) of the template", sm.id, k, v)
			}
		}
		used := map[string]bool{}
		n := 0
		walkStates(sm.def, func(name string, st map[string]any) {
			if st["Type"] == "Map" {
				ip, _ := st["ItemProcessor"].(map[string]any)
				pc, _ := ip["ProcessorConfig"].(map[string]any)
				if pc["Mode"] == "DISTRIBUTED" {
					b.distributed[sm.id] = true
				}
			}
			if st["Type"] != "Task" {
				return
			}
			n++
			res, _ := st["Resource"].(string)
			params, _ := st["Parameters"].(map[string]any)
			tk := task{machine: sm.id, name: name}
			tk.timeout, tk.hasTimeout = st["TimeoutSeconds"].(float64)
			field := "Resource"
			switch res {
			case "arn:aws:states:::lambda:invoke":
				tk.kind, field = lambdaTask, "Parameters.FunctionName"
				res, _ = params["FunctionName"].(string)
			case "arn:aws:states:::states:startExecution", "arn:aws:states:::states:startExecution.sync", "arn:aws:states:::states:startExecution.sync:2":
				tk.kind, field, tk.sync = startTask, "Parameters.StateMachineArn", res != "arn:aws:states:::states:startExecution"
				res, _ = params["StateMachineArn"].(string)
			default:
				if !placeholder.MatchString(res) {
					bad("%s: Task %s: Resource %q is neither a ${Substitution} of a function, lambda:invoke, nor states:startExecution", sm.id, name, res)
					return
				}
				tk.kind = lambdaTask
			}
			m := placeholder.FindStringSubmatch(res)
			if m == nil {
				bad("%s: Task %s: %s %q is not a ${Substitution}", sm.id, name, field, res)
				return
			}
			tk.sub = m[1]
			used[m[1]] = true
			if _, ok := sm.subs[m[1]]; !ok {
				bad("%s: Task %s uses ${%s}, which DefinitionSubstitutions does not define", sm.id, name, m[1])
				return
			}
			if kindOf[m[1]] != tk.kind {
				want := map[string]string{lambdaTask: "a function", startTask: "a state machine of the template"}[tk.kind]
				bad("%s: Task %s: %s ${%s} must name %s", sm.id, name, field, m[1], want)
				return
			}
			tk.target = targetOf[m[1]]
			b.tasks = append(b.tasks, tk)
		})
		if n == 0 {
			bad("%s: the definition has no Task", sm.id)
		}
		for k := range sm.subs {
			if !used[k] {
				bad("%s: DefinitionSubstitutions.%s is used by no Task", sm.id, k)
			}
		}
		// Nothing else in the definition looks like a substitution.
		js, _ := json.Marshal(sm.def)
		for _, m := range regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`).FindAllStringSubmatch(string(js), -1) {
			if _, ok := sm.subs[m[1]]; !ok {
				bad("%s: ${%s} in the definition has no substitution", sm.id, m[1])
			}
		}
	}
	sort.Strings(b.problems)
	return b
}

// TestDefinitionSubstitutions: every substitution names a function or
// another state machine of the template and is used; every Task takes its
// target from a substitution of the right kind; every function is invoked
// by some Task.
func TestDefinitionSubstitutions(t *testing.T) {
	p := parseTemplate(t, nil)
	b := bindings(t, p)
	for _, msg := range b.problems {
		t.Error(msg)
	}
	invoked := map[string]bool{}
	started := 0
	for _, tk := range b.tasks {
		if tk.kind == lambdaTask {
			invoked[tk.target] = true
		} else {
			started++
		}
	}
	for _, id := range functionIDs(p) {
		if !invoked[id] {
			t.Errorf("%s is invoked by no Task of any state machine", id)
		}
	}
	if started == 0 {
		t.Error("no Task starts a state machine: the fleet run starts one rotation execution per due key")
	}
}

// TestTaskTimeouts: every Lambda Task sets TimeoutSeconds, and the
// function's own Timeout is below the TimeoutSeconds of every Task that
// invokes it, so Lambda, not Step Functions, stops a hung function (and
// the function's error reaches the Catch).
func TestTaskTimeouts(t *testing.T) {
	p := parseTemplate(t, nil)
	b := bindings(t, p)
	for _, tk := range b.tasks {
		if tk.kind != lambdaTask {
			continue
		}
		to, _ := p.functionProp(tk.target, "Timeout").(float64)
		switch {
		case !tk.hasTimeout:
			t.Errorf("%s: Task %s (%s) has no TimeoutSeconds", tk.machine, tk.name, tk.target)
		case to <= 0 || to >= tk.timeout:
			t.Errorf("%s: Task %s has TimeoutSeconds %v, but %s's Timeout is %v: want the function's Timeout below it", tk.machine, tk.name, tk.timeout, tk.target, to)
		}
	}
}

// TestTaskBindingRules proves bind() refuses what it must: a
// startExecution Task with a literal or function-bound state machine, a
// Lambda Task bound to a state machine, another integration, and a
// substitution naming neither a function nor a state machine; and accepts
// the fleet's own shape.
func TestTaskBindingRules(t *testing.T) {
	p := parseTemplate(t, nil)
	subs := map[string]string{
		"PlannerFunctionArn":      p.r.GetAtt("PlannerFunction", "Arn").(string),
		"RotationStateMachineArn": p.arnOf("RotationStateMachine"),
	}
	const planner = `"P":{"Type":"Task","Resource":"${PlannerFunctionArn}","TimeoutSeconds":120,"End":true}`
	run := func(def string, subs map[string]string) *binding {
		var d map[string]any
		if err := json.Unmarshal([]byte(def), &d); err != nil {
			t.Fatalf("%v: %s", err, def)
		}
		return bind(p, []machine{{id: "FleetStateMachine", subs: subs, def: d}})
	}
	refused := map[string]string{
		"literal state machine":     `{"StartAt":"A","States":{` + planner + `,"A":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","Parameters":{"StateMachineArn":"arn:aws:states:eu-west-2:111122223333:stateMachine:RotationStateMachine","Input.$":"$"},"End":true},"B":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","Parameters":{"StateMachineArn":"${RotationStateMachineArn}"},"End":true}}}`,
		"function as state machine": `{"StartAt":"A","States":{` + planner + `,"A":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","Parameters":{"StateMachineArn":"${PlannerFunctionArn}","Input.$":"$"},"End":true},"B":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","Parameters":{"StateMachineArn":"${RotationStateMachineArn}"},"End":true}}}`,
		"state machine as function": `{"StartAt":"A","States":{` + planner + `,"A":{"Type":"Task","Resource":"${RotationStateMachineArn}","End":true}}}`,
		"other integration":         `{"StartAt":"A","States":{` + planner + `,"A":{"Type":"Task","Resource":"arn:aws:states:::sns:publish","Parameters":{"TopicArn":"${RotationStateMachineArn}"},"End":true}}}`,
		"unused substitution":       `{"StartAt":"P","States":{` + planner + `}}`,
	}
	for name, def := range refused {
		if b := run(def, subs); len(b.problems) == 0 {
			t.Errorf("%s: accepted %s", name, def)
		}
	}
	good := `{"StartAt":"P","States":{` + planner + `,"A":{"Type":"Task","Resource":"arn:aws:states:::states:startExecution.sync:2","Parameters":{"StateMachineArn":"${RotationStateMachineArn}","Input.$":"$"},"End":true}}}`
	if b := run(good, subs); len(b.problems) > 0 || len(b.tasks) != 2 || !b.tasks[0].sync && !b.tasks[1].sync {
		t.Errorf("refused the fleet's shape: %v %+v", b.problems, b.tasks)
	}
	topic := map[string]string{"PlannerFunctionArn": p.arnOf("NotificationTopic"), "RotationStateMachineArn": subs["RotationStateMachineArn"]}
	if b := run(good, topic); len(b.problems) == 0 {
		t.Error("accepted a substitution naming a topic")
	}
	self := map[string]string{"PlannerFunctionArn": subs["PlannerFunctionArn"], "RotationStateMachineArn": p.arnOf("FleetStateMachine")}
	if b := run(good, self); len(b.problems) == 0 {
		t.Error("accepted a state machine starting itself")
	}
}

// walkStates visits every state, including Parallel branches and Map
// iterators.
func walkStates(def map[string]any, visit func(string, map[string]any)) {
	states, _ := def["States"].(map[string]any)
	for name, s := range states {
		st, _ := s.(map[string]any)
		visit(name, st)
		if bs, ok := st["Branches"].([]any); ok {
			for _, b := range bs {
				if bm, ok := b.(map[string]any); ok {
					walkStates(bm, visit)
				}
			}
		}
		for _, k := range []string{"ItemProcessor", "Iterator"} {
			if sub, ok := st[k].(map[string]any); ok {
				walkStates(sub, visit)
			}
		}
	}
}

// TestDefinitionValid runs asl-validator (the one aws-local-stepfunctions
// uses, from infra/local/sfn) on the definition with the substitutions made.
func TestDefinitionValid(t *testing.T) {
	root := repoRoot(t)
	node := filepath.Join(root, ".local/tools/node22/bin/node")
	validator := filepath.Join(root, "infra/local/sfn/node_modules/asl-validator/dist/bin/asl-validator.js")
	for _, f := range []string{node, validator} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%s is missing: run `make tools`", f)
		}
	}
	p := parseTemplate(t, nil)
	for _, sm := range stateMachines(t, p) {
		b, err := os.ReadFile(sm.path)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for k, v := range sm.subs {
			s = strings.ReplaceAll(s, "${"+k+"}", v)
		}
		f := filepath.Join(t.TempDir(), sm.id+".asl.json")
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, validator, "--json-path", f).CombinedOutput()
		if err != nil {
			t.Errorf("%s: asl-validator: %v\n%s", sm.id, err, out)
		}
	}
}

// TestStateMachineDeclared: a role and a log group of the template for
// each state machine; exactly one EventBridge schedule, on the state machine
// that starts the others (the fleet), with the ScheduleExpression and
// ScheduleState parameters and input "{}" (a fresh fleet run); none on a
// state machine another one starts (the rotation); a fixed Name on a state
// machine with a Distributed Map (its role names its own child executions).
func TestStateMachineDeclared(t *testing.T) {
	p := parseTemplate(t, map[string]any{"ScheduleExpression": "rate(12 hours)", "ScheduleState": "DISABLED"})
	b := bindings(t, p)
	starts, started := map[string]bool{}, map[string]bool{}
	for _, tk := range b.tasks {
		if tk.kind == startTask {
			starts[tk.machine], started[tk.target] = true, true
		}
	}
	var scheduled []string
	for id, sm := range p.T.GetAllServerlessStateMachineResources() {
		if sm.Policies != nil {
			t.Errorf("%s: SAM Policies are not allowed: write the role out", id)
		}
		if sm.Role == nil || !strings.HasSuffix(*sm.Role, ":role/"+stackName+"-"+id+"Role") {
			t.Errorf("%s: Role %v, want !GetAtt %sRole.Arn", id, sm.Role, id)
		}
		wantLogs := fmt.Sprintf("arn:aws:logs:%s:%s:log-group:/aws/vendedlogs/states/%s/%s:*", region, account, stackName, id)
		if sm.Logging == nil || len(sm.Logging.Destinations) != 1 || sm.Logging.Destinations[0].CloudWatchLogsLogGroup == nil ||
			sm.Logging.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn != wantLogs {
			t.Errorf("%s: Logging destination must be its own log group %s", id, wantLogs)
		}
		if b.distributed[id] {
			if props, _ := p.resource(id)["Properties"].(map[string]any); props["Name"] == nil {
				t.Errorf("%s runs a Distributed Map: give it a fixed Name, so its role can name its own child executions", id)
			} else if !strings.Contains(p.arnOf(id), ":stateMachine:"+stackName+"-") {
				t.Errorf("%s: Name %v should start with the stack name (unique per stack)", id, props["Name"])
			}
		}
		// From the plain document: goformation v7.14.9 drops a Schedule
		// event's Properties (its schema predates State).
		props, _ := p.resource(id)["Properties"].(map[string]any)
		events, _ := props["Events"].(map[string]any)
		for name, e := range events {
			ev, _ := e.(map[string]any)
			ep, _ := ev["Properties"].(map[string]any)
			switch {
			case ev["Type"] == "Schedule" && ep["Schedule"] == "rate(12 hours)":
				scheduled = append(scheduled, id)
				if ep["State"] != "DISABLED" {
					t.Errorf("%s: schedule %s State %v, want !Ref ScheduleState", id, name, ep["State"])
				}
				if ep["Input"] != "{}" {
					t.Errorf("%s: schedule %s Input %v, want \"{}\" (the planner starts a fresh run on it)", id, name, ep["Input"])
				}
			case ev["Type"] == "ScheduleV2" && ep["ScheduleExpression"] == "rate(12 hours)":
				scheduled = append(scheduled, id)
			default:
				t.Errorf("%s: event %s (%v) is not the schedule with the ScheduleExpression parameter", id, name, ev["Type"])
			}
		}
	}
	sort.Strings(scheduled)
	if len(scheduled) != 1 {
		t.Fatalf("state machines with the ScheduleExpression schedule: %v, want exactly one (the fleet)", scheduled)
	}
	if !starts[scheduled[0]] {
		t.Errorf("the schedule is on %s, which starts no other state machine: it belongs on the fleet", scheduled[0])
	}
	if started[scheduled[0]] {
		t.Errorf("the schedule is on %s, which another state machine starts", scheduled[0])
	}
	if scheduled[0] != "FleetStateMachine" || !started["RotationStateMachine"] {
		t.Errorf("want the schedule on FleetStateMachine, which starts RotationStateMachine; schedule on %s, started %v", scheduled[0], started)
	}
	outs := p.Raw["Outputs"].(map[string]any)
	wantOut := map[string]string{
		"StateMachineArn":      p.arnOf("RotationStateMachine"),
		"FleetStateMachineArn": p.arnOf("FleetStateMachine"),
		"TableName":            "RotationTable",
		"NotificationTopicArn": p.arnOf("NotificationTopic"),
	}
	for o, want := range wantOut {
		out, _ := outs[o].(map[string]any)
		if out == nil || out["Value"] != want {
			t.Errorf("output %s = %v, want %s", o, outs[o], want)
		}
	}
	table := p.T.Resources["RotationTable"]
	if table == nil {
		t.Fatal("no RotationTable")
	}
	tb, _ := json.Marshal(table)
	var tp struct {
		Properties struct {
			BillingMode                      string
			TimeToLiveSpecification          struct{ Enabled bool }
			SSESpecification                 struct{ SSEEnabled bool }
			DeletionProtectionEnabled        bool
			PointInTimeRecoverySpecification struct{ PointInTimeRecoveryEnabled bool }
		}
	}
	_ = json.Unmarshal(tb, &tp)
	if tp := tp.Properties; tp.BillingMode != "PAY_PER_REQUEST" || !tp.TimeToLiveSpecification.Enabled || !tp.SSESpecification.SSEEnabled ||
		!tp.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled || !tp.DeletionProtectionEnabled {
		t.Errorf("RotationTable: want on-demand, TTL, SSE and PITR; got %s", tb)
	}
}

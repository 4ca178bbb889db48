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
	cmd := exec.Command(lint, "--format", "parseable", "template.yaml")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("cfn-lint template.yaml: %v\n%s", err, out)
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
		mem, _ := p.functionProp(id, "MemorySize").(float64)
		to, _ := p.functionProp(id, "Timeout").(float64)
		if mem < 128 || mem > 1024 || to < 3 || to >= 60 {
			t.Errorf("%s: MemorySize %v / Timeout %v: want 128-1024 MB and a timeout below the Task's 60 s", id, mem, to)
		}
		if f.Policies != nil {
			t.Errorf("%s: SAM Policies are not allowed: write the role out (AWS::IAM::Role) so its policy is reviewed and tested", id)
		}
		role := ""
		if f.Role != nil {
			role = *f.Role
		}
		if _, ok := roles[strings.TrimPrefix(role, "arn:aws:iam::"+account+":role/")]; !ok {
			t.Errorf("%s: Role %q is not an AWS::IAM::Role of the template", id, role)
		}
		env, _ := p.functionProp(id, "Environment").(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		if vars["TABLE_NAME"] != "RotationTable" {
			t.Errorf("%s: TABLE_NAME %v, want !Ref RotationTable", id, vars["TABLE_NAME"])
		}
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

// TestDefinitionSubstitutions: every substitution names a function of the
// template (!GetAtt <Function>.Arn), every function is bound, and every
// Task of the definition uses a substitution that exists.
func TestDefinitionSubstitutions(t *testing.T) {
	p := parseTemplate(t, nil)
	fns := map[string]bool{}
	for _, id := range functionIDs(p) {
		fns[id] = true
	}
	fnArn := regexp.MustCompile(`^arn:aws:lambda:` + region + `:` + account + `:function:([A-Za-z0-9]+)$`)
	for _, sm := range stateMachines(t, p) {
		bound := map[string]bool{}
		for k, v := range sm.subs {
			m := fnArn.FindStringSubmatch(v)
			if m == nil || !fns[m[1]] {
				t.Errorf("%s: DefinitionSubstitutions.%s = %q does not name a function of the template", sm.id, k, v)
				continue
			}
			bound[m[1]] = true
		}
		used := map[string]bool{}
		tasks := 0
		walkStates(sm.def, func(name string, st map[string]any) {
			if st["Type"] != "Task" {
				return
			}
			tasks++
			res, _ := st["Resource"].(string)
			if res == "arn:aws:states:::lambda:invoke" {
				params, _ := st["Parameters"].(map[string]any)
				res, _ = params["FunctionName"].(string)
			}
			m := placeholder.FindStringSubmatch(res)
			if m == nil {
				t.Errorf("%s: Task %s: Resource %q is not a ${Substitution}", sm.id, name, res)
				return
			}
			if _, ok := sm.subs[m[1]]; !ok {
				t.Errorf("%s: Task %s uses ${%s}, which DefinitionSubstitutions does not define", sm.id, name, m[1])
			}
			used[m[1]] = true
		})
		if tasks == 0 {
			t.Errorf("%s: the definition has no Task", sm.id)
		}
		for k := range sm.subs {
			if !used[k] {
				t.Errorf("%s: DefinitionSubstitutions.%s is used by no Task", sm.id, k)
			}
		}
		// Nothing else in the definition looks like a substitution.
		b, _ := json.Marshal(sm.def)
		for _, m := range regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`).FindAllStringSubmatch(string(b), -1) {
			if _, ok := sm.subs[m[1]]; !ok {
				t.Errorf("%s: ${%s} in the definition has no substitution", sm.id, m[1])
			}
		}
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

// TestStateMachineDeclared: schedule event with the expression a parameter,
// logging to a log group of the template, a role of the template.
func TestStateMachineDeclared(t *testing.T) {
	p := parseTemplate(t, map[string]any{"ScheduleExpression": "rate(12 hours)"})
	for id, sm := range p.T.GetAllServerlessStateMachineResources() {
		if sm.Policies != nil {
			t.Errorf("%s: SAM Policies are not allowed: write the role out", id)
		}
		if sm.Role == nil || !strings.HasSuffix(*sm.Role, ":role/"+id+"Role") {
			t.Errorf("%s: Role %v, want !GetAtt %sRole.Arn", id, sm.Role, id)
		}
		if sm.Logging == nil || len(sm.Logging.Destinations) == 0 {
			t.Errorf("%s: no Logging destination", id)
		}
		// From the plain document: goformation v7.14.9 drops a Schedule
		// event's Properties (its schema predates State).
		found := false
		res := p.Raw["Resources"].(map[string]any)[id].(map[string]any)
		events, _ := res["Properties"].(map[string]any)["Events"].(map[string]any)
		for _, e := range events {
			ev, _ := e.(map[string]any)
			props, _ := ev["Properties"].(map[string]any)
			if (ev["Type"] == "Schedule" && props["Schedule"] == "rate(12 hours)") ||
				(ev["Type"] == "ScheduleV2" && props["ScheduleExpression"] == "rate(12 hours)") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no EventBridge schedule event whose expression is the ScheduleExpression parameter", id)
		}
	}
	outs := p.Raw["Outputs"].(map[string]any)
	for _, o := range []string{"StateMachineArn", "TableName"} {
		if _, ok := outs[o]; !ok {
			t.Errorf("no output %s", o)
		}
	}
	table := p.T.Resources["RotationTable"]
	if table == nil {
		t.Fatal("no RotationTable")
	}
	b, _ := json.Marshal(table)
	var tp struct {
		Properties struct {
			BillingMode                      string
			TimeToLiveSpecification          struct{ Enabled bool }
			SSESpecification                 struct{ SSEEnabled bool }
			DeletionProtectionEnabled        bool
			PointInTimeRecoverySpecification struct{ PointInTimeRecoveryEnabled bool }
		}
	}
	_ = json.Unmarshal(b, &tp)
	if tp := tp.Properties; tp.BillingMode != "PAY_PER_REQUEST" || !tp.TimeToLiveSpecification.Enabled || !tp.SSESpecification.SSEEnabled ||
		!tp.PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled || !tp.DeletionProtectionEnabled {
		t.Errorf("RotationTable: want on-demand, TTL, SSE and PITR; got %s", b)
	}
}

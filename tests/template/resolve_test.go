package template_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// Pseudo parameters the resolver uses: ARNs in assertions are built from them.
const (
	partition = "aws"
	region    = "eu-west-2"
	account   = "111122223333"
	stackName = "kms-reimport"
)

// newResolver is stack's resolver (the one LoadRoles resolves the local
// stack's roles with) for the deployment of these tests: pseudo parameters
// from the constants above, parameters from overrides or their Default,
// typed as CloudFormation types them for a typed property.
func newResolver(raw map[string]any, overrides map[string]any) *stack.Resolver {
	params := map[string]string{}
	for k, v := range overrides {
		params[k] = fmt.Sprint(v)
	}
	r := stack.NewResolver(stack.Deployment{Partition: partition, Region: region, Account: account, StackName: stackName, Params: params}, raw)
	r.Typed = true
	return r
}

// parsed is template.yaml for one set of parameter values: the typed
// goformation template and the same document as plain JSON (for Globals,
// which goformation does not apply).
type parsed struct {
	T   *cloudformation.Template
	Raw map[string]any
	r   *stack.Resolver
}

func parseTemplate(t testing.TB, overrides map[string]any) *parsed {
	t.Helper()
	path := filepath.Join(repoRoot(t), "template.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// First pass without processing: parameter and resource types.
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	// goformation's EvaluateConditions replaces any object with a string
	// "Condition" key by the condition's value, resources included: move
	// resource and output conditions aside and apply them after.
	const condKey = "x-resource-condition"
	for _, section := range []string{"Resources", "Outputs"} {
		if rs, ok := raw[section].(map[string]any); ok {
			for _, r := range rs {
				if m, ok := r.(map[string]any); ok {
					if c, ok := m["Condition"].(string); ok {
						m[condKey] = c
						delete(m, "Condition")
					}
				}
			}
		}
	}
	rawJS, _ := json.Marshal(raw)
	// Resolved with a fresh resolver per call: overrides change the
	// parameters' Default in place.
	res := newResolver(raw, overrides)
	opts := res.Options()
	opts.ParameterOverrides, opts.EvaluateConditions = overrides, true
	js, err = intrinsics.ProcessJSON(rawJS, opts)
	if err != nil {
		t.Fatal(err)
	}
	var resolved map[string]any
	if err := json.Unmarshal(js, &resolved); err != nil {
		t.Fatal(err)
	}
	conds, _ := resolved["Conditions"].(map[string]any)
	for _, section := range []string{"Resources", "Outputs"} {
		if rs, ok := resolved[section].(map[string]any); ok {
			for id, r := range rs {
				m, _ := r.(map[string]any)
				c, ok := m[condKey].(string)
				if !ok {
					continue
				}
				delete(m, condKey)
				v, ok := conds[c].(bool)
				if !ok {
					t.Fatalf("%s %s: condition %s did not evaluate to a boolean (%v) %v", section, id, c, conds[c], conds)
				}
				if !v {
					delete(rs, id)
				}
			}
		}
	}
	js, _ = json.Marshal(resolved)
	// For the typed parse only (the tests read these from the plain
	// document): goformation v7.14.9's SAM schema has no
	// Function.LoggingConfig (a newer SAM property), and environment values
	// are strings there, as CloudFormation makes them.
	var typed map[string]any
	_ = json.Unmarshal(js, &typed)
	fixFunction := func(props map[string]any) {
		delete(props, "LoggingConfig")
		if env, ok := props["Environment"].(map[string]any); ok {
			if vars, ok := env["Variables"].(map[string]any); ok {
				for k, v := range vars {
					vars[k] = fmt.Sprint(v)
				}
			}
		}
	}
	if g, ok := typed["Globals"].(map[string]any); ok {
		if f, ok := g["Function"].(map[string]any); ok {
			fixFunction(f)
		}
	}
	if rs, ok := typed["Resources"].(map[string]any); ok {
		for _, r := range rs {
			if m, ok := r.(map[string]any); ok && m["Type"] == "AWS::Serverless::Function" {
				if props, ok := m["Properties"].(map[string]any); ok {
					fixFunction(props)
				}
			}
		}
	}
	tb, _ := json.Marshal(typed)
	tmpl, err := goformation.ParseJSONWithOptions(tb, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("goformation cannot parse template.yaml: %v", err)
	}
	return &parsed{T: tmpl, Raw: resolved, r: res}
}

// globalFunction returns Globals.Function.<prop> of the resolved template.
func (p *parsed) globalFunction(prop string) any {
	g, _ := p.Raw["Globals"].(map[string]any)
	f, _ := g["Function"].(map[string]any)
	return f[prop]
}

// functionProp is a function's property, or the Globals one.
func (p *parsed) functionProp(id, prop string) any {
	rs, _ := p.Raw["Resources"].(map[string]any)
	r, _ := rs[id].(map[string]any)
	props, _ := r["Properties"].(map[string]any)
	if v, ok := props[prop]; ok && v != nil {
		return v
	}
	return p.globalFunction(prop)
}

// resource is a resource of the resolved template as a plain document.
func (p *parsed) resource(id string) map[string]any {
	rs, _ := p.Raw["Resources"].(map[string]any)
	r, _ := rs[id].(map[string]any)
	return r
}

// environment is a function's environment as SAM deploys it:
// Globals.Function.Environment.Variables merged with the function's own
// (the function's keys win). goformation applies no Globals, and a function
// that declares its own Environment would otherwise hide the global
// variables. Values resolved to AWS::NoValue are dropped.
func (p *parsed) environment(id string) map[string]any {
	out := map[string]any{}
	vars := func(env any) map[string]any {
		e, _ := env.(map[string]any)
		v, _ := e["Variables"].(map[string]any)
		return v
	}
	props, _ := p.resource(id)["Properties"].(map[string]any)
	for _, src := range []map[string]any{vars(p.globalFunction("Environment")), vars(props["Environment"])} {
		for k, v := range src {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = v
		}
	}
	return out
}

// arnOf is what !Ref gives for a resource of the template (a state
// machine's or topic's ARN, else the logical id).
func (p *parsed) arnOf(id string) string { return fmt.Sprint(p.r.Ref(id)) }

// repoRoot is stack.RepoRoot, fatal when not found.
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

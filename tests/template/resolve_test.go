package template_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// resolver resolves Ref, Fn::GetAtt and Fn::Sub the way CloudFormation would
// for one set of parameter values: pseudo parameters from the constants
// above, parameters from overrides or their Default (CommaDelimitedList as a
// list), resources to their name or ARN (functions' names are their logical
// ids, so a function ARN names the function it points at).
type resolver struct {
	params    map[string]any // name -> Parameter object
	overrides map[string]any // name -> value given for this parse
	resources map[string]string
	// smNames: a state machine's Name property as written (a string or
	// {"Fn::Sub": ...}); without one, its name is its logical id here
	// (CloudFormation would generate one starting with it).
	smNames map[string]any
	// logGroupNames: a log group's LogGroupName as written (what Ref
	// returns); without one, its logical id.
	logGroupNames map[string]any
}

func newResolver(raw map[string]any) *resolver {
	r := &resolver{params: map[string]any{}, resources: map[string]string{}, smNames: map[string]any{}, logGroupNames: map[string]any{}}
	if ps, ok := raw["Parameters"].(map[string]any); ok {
		r.params = ps
	}
	if rs, ok := raw["Resources"].(map[string]any); ok {
		for id, v := range rs {
			if m, ok := v.(map[string]any); ok {
				r.resources[id], _ = m["Type"].(string)
				if props, ok := m["Properties"].(map[string]any); ok && r.resources[id] == "AWS::Serverless::StateMachine" {
					if n, ok := props["Name"]; ok {
						r.smNames[id] = n
					}
				}
				if props, ok := m["Properties"].(map[string]any); ok && r.resources[id] == "AWS::Logs::LogGroup" {
					if n, ok := props["LogGroupName"]; ok {
						r.logGroupNames[id] = n
					}
				}
			}
		}
	}
	return r
}

func (r *resolver) ref(name string) any {
	switch name {
	case "AWS::Partition":
		return partition
	case "AWS::Region":
		return region
	case "AWS::AccountId":
		return account
	case "AWS::StackName":
		return stackName
	case "AWS::URLSuffix":
		return "amazonaws.com"
	case "AWS::NoValue":
		return nil
	}
	if p, ok := r.params[name].(map[string]any); ok {
		v := p["Default"]
		if o, ok := r.overrides[name]; ok {
			v = o
		}
		if p["Type"] == "CommaDelimitedList" {
			switch v := v.(type) {
			case string:
				var out []any
				for _, s := range strings.Split(v, ",") {
					out = append(out, strings.TrimSpace(s))
				}
				return out
			case []any:
				return v
			case []string:
				var out []any
				for _, s := range v {
					out = append(out, s)
				}
				return out
			}
		}
		// Typed the way CloudFormation converts a parameter for a typed
		// property: numbers, and the "true"/"false" of boolean switches.
		switch v := v.(type) {
		case string:
			if p["Type"] == "Number" {
				var f float64
				if _, err := fmt.Sscan(v, &f); err == nil {
					return f
				}
			}
			if v == "true" || v == "false" {
				return v == "true"
			}
			return v
		case float64, bool:
			return v
		}
		return fmt.Sprint(v)
	}
	if typ, ok := r.resources[name]; ok {
		switch typ {
		case "AWS::Serverless::StateMachine":
			return fmt.Sprintf("arn:%s:states:%s:%s:stateMachine:%s", partition, region, account, r.stateMachineName(name))
		case "AWS::SNS::Topic":
			return fmt.Sprintf("arn:%s:sns:%s:%s:%s", partition, region, account, name)
		case "AWS::SQS::Queue":
			return fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", region, account, name)
		case "AWS::Logs::LogGroup":
			return r.logGroupName(name)
		}
		return name
	}
	return "UNRESOLVED-REF:" + name
}

// stateMachineName is the name a state machine of the template gets: its
// Name property (a string or an Fn::Sub string), else its logical id.
func (r *resolver) stateMachineName(id string) string {
	switch n := r.smNames[id].(type) {
	case string:
		return n
	case map[string]any:
		if s, ok := n["Fn::Sub"].(string); ok {
			return r.sub(s, nil)
		}
		return "UNRESOLVED-NAME:" + id
	}
	return id
}

// logGroupName is a log group's name: its LogGroupName (a string or an
// Fn::Sub string), else its logical id.
func (r *resolver) logGroupName(id string) string {
	switch n := r.logGroupNames[id].(type) {
	case string:
		return n
	case map[string]any:
		if s, ok := n["Fn::Sub"].(string); ok {
			return r.sub(s, nil)
		}
		return "UNRESOLVED-NAME:" + id
	}
	return id
}

func (r *resolver) getAtt(id, attr string) any {
	typ := r.resources[id]
	if attr == "Name" && typ == "AWS::Serverless::StateMachine" {
		return r.stateMachineName(id)
	}
	if attr == "QueueName" && typ == "AWS::SQS::Queue" {
		return id
	}
	if attr != "Arn" {
		return fmt.Sprintf("GETATT:%s.%s", id, attr)
	}
	switch typ {
	case "AWS::Serverless::Function", "AWS::Lambda::Function":
		return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", partition, region, account, id)
	case "AWS::DynamoDB::Table":
		return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", partition, region, account, id)
	case "AWS::Logs::LogGroup":
		return fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s:*", partition, region, account, id)
	case "AWS::SQS::Queue":
		return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", partition, region, account, id)
	case "AWS::Events::Rule":
		return fmt.Sprintf("arn:%s:events:%s:%s:rule/%s", partition, region, account, id)
	case "AWS::CloudWatch::Alarm":
		return fmt.Sprintf("arn:%s:cloudwatch:%s:%s:alarm:%s", partition, region, account, id)
	case "AWS::IAM::Role":
		return fmt.Sprintf("arn:%s:iam::%s:role/%s", partition, account, id)
	}
	return fmt.Sprintf("UNRESOLVED-GETATT:%s.%s", id, attr)
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

func (r *resolver) sub(s string, vars map[string]any) string {
	return subVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if v, ok := vars[name]; ok {
			return fmt.Sprint(v)
		}
		if id, attr, ok := strings.Cut(name, "."); ok {
			return fmt.Sprint(r.getAtt(id, attr))
		}
		return fmt.Sprint(r.ref(name))
	})
}

func (r *resolver) options(overrides map[string]any) *intrinsics.ProcessorOptions {
	r.overrides = overrides
	return &intrinsics.ProcessorOptions{
		ParameterOverrides: overrides,
		EvaluateConditions: true,
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref": func(_ string, input any, _ any) any {
				s, _ := input.(string)
				return r.ref(s)
			},
			"Fn::GetAtt": func(_ string, input any, _ any) any {
				switch v := input.(type) {
				case []any:
					if len(v) == 2 {
						return r.getAtt(fmt.Sprint(v[0]), fmt.Sprint(v[1]))
					}
				case string:
					id, attr, _ := strings.Cut(v, ".")
					return r.getAtt(id, attr)
				}
				return "UNRESOLVED-GETATT"
			},
			// CloudFormation compares strings: a parameter typed here as a
			// boolean ("true") still equals the string "true".
			"Fn::Equals": func(_ string, input any, _ any) any {
				v, ok := input.([]any)
				if !ok || len(v) != 2 {
					return "UNRESOLVED-EQUALS"
				}
				return fmt.Sprint(v[0]) == fmt.Sprint(v[1])
			},
			"Fn::Sub": func(_ string, input any, _ any) any {
				switch v := input.(type) {
				case string:
					return r.sub(v, nil)
				case []any:
					if len(v) == 2 {
						s, _ := v[0].(string)
						vars, _ := v[1].(map[string]any)
						return r.sub(s, vars)
					}
				}
				return "UNRESOLVED-SUB"
			},
		},
	}
}

// parsed is template.yaml for one set of parameter values: the typed
// goformation template and the same document as plain JSON (for Globals,
// which goformation does not apply).
type parsed struct {
	T   *cloudformation.Template
	Raw map[string]any
	r   *resolver
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
	res := newResolver(raw)
	js, err = intrinsics.ProcessJSON(rawJS, res.options(overrides))
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
func (p *parsed) arnOf(id string) string { return fmt.Sprint(p.r.ref(id)) }

// repoRoot is stack.RepoRoot, fatal when not found.
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

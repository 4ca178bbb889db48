package stack

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/awslabs/goformation/v7/intrinsics"
)

// Resolver resolves the intrinsic functions of template.yaml (Ref,
// Fn::GetAtt, Fn::Sub, Fn::If, Fn::Equals) the way CloudFormation would
// for one Deployment: pseudo parameters from it, parameters from its
// Params or their Default (a CommaDelimitedList as a list), resources to
// their physical name or ARN. It is the one resolver of the repository:
// LoadRoles resolves the roles the IAM gate enforces with it, and
// tests/template the whole template its tests read.
//
// Names: a resource's name is Deployment.Physical's, else its logical id
// (a function's name is its logical id, so a function ARN names the
// function it points at), except a role (<StackName>-<id>, the name AWS
// gives in an assumed-role ARN is its prefix) and a queue
// (<StackName>-<id>); a state machine's is its Name property and a log
// group's its LogGroupName, when the template gives one.
type Resolver struct {
	d Deployment
	// Typed: a Ref to a Number parameter gives a number and one to
	// "true" or "false" a boolean, as CloudFormation converts a parameter
	// for a typed property (goformation's typed parse needs them). Without
	// it every parameter is a string, as in a policy document.
	Typed   bool
	params  map[string]any    // the Parameters section
	conds   map[string]any    // the Conditions section, unresolved
	types   map[string]string // logical id -> resource type
	names   map[string]any    // a state machine's Name, a log group's LogGroupName, as written
	roleIDs map[string]string // role ARN -> logical id, of the roles resolved so far
}

// NewResolver makes the resolver of one deployment for raw, the template
// as a plain document with its intrinsic functions not yet processed
// (intrinsics.ProcessYAML with NoProcess).
func NewResolver(d Deployment, raw map[string]any) *Resolver {
	r := &Resolver{d: d, types: map[string]string{}, names: map[string]any{}, roleIDs: map[string]string{}}
	r.params, _ = raw["Parameters"].(map[string]any)
	r.conds, _ = raw["Conditions"].(map[string]any)
	resources, _ := raw["Resources"].(map[string]any)
	for id, v := range resources {
		m, _ := v.(map[string]any)
		r.types[id], _ = m["Type"].(string)
		props, _ := m["Properties"].(map[string]any)
		switch r.types[id] {
		case "AWS::Serverless::StateMachine":
			if n, ok := props["Name"]; ok {
				r.names[id] = n
			}
		case "AWS::Logs::LogGroup":
			if n, ok := props["LogGroupName"]; ok {
				r.names[id] = n
			}
		}
	}
	return r
}

// Resolve reads a template (YAML) and resolves it for d: the resolver and
// the resolved template as JSON.
func Resolve(yaml []byte, d Deployment) (*Resolver, []byte, error) {
	js, err := intrinsics.ProcessYAML(yaml, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, nil, err
	}
	r := NewResolver(d, raw)
	if js, err = intrinsics.ProcessJSON(js, r.Options()); err != nil {
		return nil, nil, err
	}
	return r, js, nil
}

// Options are goformation's processor options that resolve through r.
func (r *Resolver) Options() *intrinsics.ProcessorOptions {
	return &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in, _ any) any { return r.Ref(fmt.Sprint(in)) },
		"Fn::GetAtt": func(_ string, in, _ any) any {
			switch v := in.(type) {
			case string: // !GetAtt Id.Attr
				id, attr, _ := strings.Cut(v, ".")
				return r.GetAtt(id, attr)
			case []any:
				if len(v) == 2 {
					return r.GetAtt(fmt.Sprint(v[0]), fmt.Sprint(v[1]))
				}
			}
			return "UNRESOLVED-GETATT"
		},
		"Fn::Sub": func(_ string, in, _ any) any {
			switch v := in.(type) {
			case string:
				return r.Sub(v, nil)
			case []any:
				if len(v) == 2 {
					s, _ := v[0].(string)
					vars, _ := v[1].(map[string]any)
					return r.Sub(s, vars)
				}
			}
			return "UNRESOLVED-SUB"
		},
		"Fn::If": func(_ string, in, _ any) any {
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return nil
			}
			if r.Condition(fmt.Sprint(args[0])) {
				return args[1]
			}
			return args[2]
		},
		// CloudFormation compares strings: a parameter typed as a boolean
		// ("true") still equals the string "true".
		"Fn::Equals": func(_ string, in, _ any) any {
			v, ok := in.([]any)
			if !ok || len(v) != 2 {
				return "UNRESOLVED-EQUALS"
			}
			return fmt.Sprint(v[0]) == fmt.Sprint(v[1])
		},
	}}
}

// Ref is what !Ref name gives: a pseudo parameter, a parameter's value
// (typed if r.Typed), or a resource's physical name, ARN or URL.
func (r *Resolver) Ref(name string) any {
	switch name {
	case "AWS::Partition":
		return r.d.Partition
	case "AWS::Region":
		return r.d.Region
	case "AWS::AccountId":
		return r.d.Account
	case "AWS::StackName":
		return r.d.StackName
	case "AWS::URLSuffix":
		return "amazonaws.com"
	case "AWS::NoValue":
		return nil
	}
	if v, list, ok := r.param(name); ok {
		if list != nil {
			return list
		}
		return r.typed(name, v)
	}
	return r.resourceRef(name)
}

// param is a parameter's value as given or its Default, and the list a
// CommaDelimitedList makes of it.
func (r *Resolver) param(name string) (string, []any, bool) {
	p, ok := r.params[name].(map[string]any)
	if !ok {
		return "", nil, false
	}
	v, given := r.d.Params[name]
	if !given {
		switch d := p["Default"].(type) {
		case []any:
			var parts []string
			for _, e := range d {
				parts = append(parts, fmt.Sprint(e))
			}
			v = strings.Join(parts, ",")
		default:
			v = fmt.Sprint(d)
		}
	}
	if p["Type"] != "CommaDelimitedList" {
		return v, nil, true
	}
	list := []any{}
	for _, e := range strings.Split(v, ",") {
		list = append(list, strings.TrimSpace(e))
	}
	return v, list, true
}

func (r *Resolver) typed(name, v string) any {
	if !r.Typed {
		return v
	}
	if p, _ := r.params[name].(map[string]any); p["Type"] == "Number" {
		var f float64
		if _, err := fmt.Sscan(v, &f); err == nil {
			return f
		}
	}
	if v == "true" || v == "false" {
		return v == "true"
	}
	return v
}

func (r *Resolver) resourceRef(id string) any {
	if p, ok := r.d.Physical[id]; ok {
		return p
	}
	d := r.d
	switch r.types[id] {
	case "AWS::Serverless::StateMachine":
		return fmt.Sprintf("arn:%s:states:%s:%s:stateMachine:%s", d.Partition, d.Region, d.Account, r.nameOf(id))
	case "AWS::SNS::Topic":
		return fmt.Sprintf("arn:%s:sns:%s:%s:%s", d.Partition, d.Region, d.Account, id)
	case "AWS::SQS::Queue":
		return fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", d.Region, d.Account, r.queueName(id))
	case "AWS::Logs::LogGroup":
		return r.nameOf(id)
	}
	return id // its logical id stands for its name
}

// nameOf is a state machine's or log group's name: the Name or
// LogGroupName the template gives (a string or an Fn::Sub string), else
// the logical id.
func (r *Resolver) nameOf(id string) string {
	switch n := r.names[id].(type) {
	case string:
		return n
	case map[string]any:
		if s, ok := n["Fn::Sub"].(string); ok {
			return r.Sub(s, nil)
		}
		return "UNRESOLVED-NAME:" + id
	}
	return id
}

func (r *Resolver) roleName(id string) string { return r.d.StackName + "-" + id }

func (r *Resolver) queueName(id string) string {
	if p, ok := r.d.Physical[id]; ok {
		return p
	}
	return r.d.StackName + "-" + id
}

// GetAtt is what !GetAtt id.attr gives.
func (r *Resolver) GetAtt(id, attr string) any {
	p, reg, acct := r.d.Partition, r.d.Region, r.d.Account
	typ := r.types[id]
	switch typ + "." + attr {
	case "AWS::Serverless::StateMachine.Name":
		return r.nameOf(id)
	case "AWS::SQS::Queue.QueueName":
		return r.queueName(id)
	case "AWS::SQS::Queue.Arn":
		return fmt.Sprintf("arn:%s:sqs:%s:%s:%s", p, reg, acct, r.queueName(id))
	case "AWS::IAM::Role.Arn":
		arn := fmt.Sprintf("arn:%s:iam::%s:role/%s", p, acct, r.roleName(id))
		r.roleIDs[arn] = id
		return arn
	case "AWS::Serverless::Function.Arn", "AWS::Lambda::Function.Arn":
		return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", p, reg, acct, id)
	case "AWS::DynamoDB::Table.Arn":
		return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%v", p, reg, acct, r.Ref(id))
	case "AWS::Logs::LogGroup.Arn":
		// Its LogGroupName, as CloudFormation's ARN has it (policy sizes
		// counted by tests/template's TestInlinePolicySize are the real ones).
		return fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s:*", p, reg, acct, r.nameOf(id))
	case "AWS::Events::Rule.Arn":
		return fmt.Sprintf("arn:%s:events:%s:%s:rule/%s", p, reg, acct, id)
	case "AWS::CloudWatch::Alarm.Arn":
		return fmt.Sprintf("arn:%s:cloudwatch:%s:%s:alarm:%s", p, reg, acct, id)
	}
	return fmt.Sprintf("UNRESOLVED-GETATT:%s.%s", id, attr)
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

// Sub is what !Sub [s, vars] gives: a parameter by its value as given
// (never typed), a resource by its Ref, id.attr by GetAtt.
func (r *Resolver) Sub(s string, vars map[string]any) string {
	return subVar.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if v, ok := vars[name]; ok {
			return fmt.Sprint(v)
		}
		if id, attr, ok := strings.Cut(name, "."); ok {
			return fmt.Sprint(r.GetAtt(id, attr))
		}
		if v, _, ok := r.param(name); ok {
			return v
		}
		return fmt.Sprint(r.Ref(name))
	})
}

// Condition evaluates a condition of the template for this deployment.
func (r *Resolver) Condition(name string) bool {
	return r.truthy(r.conds[name], 0)
}

func (r *Resolver) truthy(v any, depth int) bool {
	m, ok := v.(map[string]any)
	if !ok || depth > 20 {
		b, _ := v.(bool)
		return b
	}
	for k, a := range m {
		args, _ := a.([]any)
		switch k {
		case "Fn::Equals":
			return len(args) == 2 && fmt.Sprint(r.value(args[0])) == fmt.Sprint(r.value(args[1]))
		case "Fn::Not":
			return len(args) == 1 && !r.truthy(args[0], depth+1)
		case "Fn::And", "Fn::Or":
			want := k == "Fn::Or"
			for _, c := range args {
				if r.truthy(c, depth+1) == want {
					return want
				}
			}
			return !want
		case "Condition":
			return r.truthy(r.conds[fmt.Sprint(a)], depth+1)
		}
	}
	return false
}

// value resolves what a condition compares (a Ref, an Fn::Join).
func (r *Resolver) value(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if name, ok := m["Ref"].(string); ok {
		return r.Ref(name)
	}
	if j, ok := m["Fn::Join"].([]any); ok && len(j) == 2 {
		var parts []string
		switch list := r.value(j[1]).(type) {
		case []any:
			for _, p := range list {
				parts = append(parts, fmt.Sprint(r.value(p)))
			}
		default:
			parts = []string{fmt.Sprint(list)}
		}
		return strings.Join(parts, fmt.Sprint(j[0]))
	}
	return v
}

package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7/intrinsics"
)

// Role is the execution role of one function of template.yaml, its
// policies resolved as CloudFormation would resolve them for one
// deployment: the IAM gate of the local stack (infra/local/iamgate)
// evaluates every AWS request of the function against them.
type Role struct {
	Function string `json:"function"` // the function's logical id
	Name     string `json:"name"`     // the role's name in the emulated deployment
	ARN      string `json:"arn"`
	// Session is the ARN the function's calls are made as
	// (arn:aws:sts::<account>:assumed-role/<role>/<function>), the one
	// AWS names in an AccessDeniedException.
	Session  string        `json:"session"`
	Policies []NamedPolicy `json:"policies"`
}

// NamedPolicy is one inline policy of a role.
type NamedPolicy struct {
	Name   string `json:"name"`
	Policy any    `json:"policy"`
}

// Deployment names what the emulated deployment resolves to: pseudo
// parameters, parameter values (overrides of the defaults) and the
// physical names of resources.
type Deployment struct {
	Partition, Region, Account, StackName string
	// Params are parameter values given for this deployment (strings;
	// a CommaDelimitedList comma separated); the rest take their Default.
	Params map[string]string
	// Physical names resources whose Ref is their name (the table, the
	// topic ARN).
	Physical map[string]string
}

// LocalDeployment is the deployment the local stack emulates.
func LocalDeployment(params map[string]string, physical map[string]string) Deployment {
	return Deployment{Partition: "aws", Region: Region, Account: Account, StackName: "kms-reimport-local", Params: params, Physical: physical}
}

var subVar = regexp.MustCompile(`\$\{([A-Za-z0-9:._]+)\}`)

// LoadRoles resolves the execution role of every function in template.yaml.
func LoadRoles(path string, d Deployment) ([]Role, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &roleResolver{d: d}
	opts := &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in, tmpl any) any { r.bind(tmpl); return r.ref(fmt.Sprint(in)) },
		"Fn::GetAtt": func(_ string, in, tmpl any) any {
			r.bind(tmpl)
			if s, ok := in.(string); ok { // !GetAtt Id.Attr
				id, attr, _ := strings.Cut(s, ".")
				return r.getAtt(id, attr)
			}
			args, _ := in.([]any)
			if len(args) != 2 {
				return nil
			}
			return r.getAtt(fmt.Sprint(args[0]), fmt.Sprint(args[1]))
		},
		"Fn::Sub": func(_ string, in, tmpl any) any { r.bind(tmpl); return r.sub(in) },
		"Fn::If": func(_ string, in, tmpl any) any {
			r.bind(tmpl)
			args, ok := in.([]any)
			if !ok || len(args) != 3 {
				return nil
			}
			if r.condition(fmt.Sprint(args[0])) {
				return args[1]
			}
			return args[2]
		},
	}}
	js, err := intrinsics.ProcessYAML(data, opts)
	if err != nil {
		return nil, fmt.Errorf("processing %s: %w", path, err)
	}
	var doc struct {
		Resources map[string]struct {
			Type       string         `json:"Type"`
			Properties map[string]any `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var roles []Role
	for id, res := range doc.Resources {
		if res.Type != "AWS::Serverless::Function" {
			continue
		}
		roleArn, _ := res.Properties["Role"].(string)
		roleID := r.roleIDs[roleArn]
		role, ok := doc.Resources[roleID]
		if !ok {
			return nil, fmt.Errorf("function %s: its Role %q is no AWS::IAM::Role of the template", id, roleArn)
		}
		out := Role{Function: id, Name: r.roleName(roleID), ARN: roleArn}
		out.Session = fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", d.Partition, d.Account, out.Name, id)
		pols, _ := role.Properties["Policies"].([]any)
		for _, p := range prune(pols).([]any) {
			m, _ := p.(map[string]any)
			doc := m["PolicyDocument"]
			if s, ok := doc.(string); ok {
				var v any
				if err := json.Unmarshal([]byte(s), &v); err != nil {
					return nil, fmt.Errorf("role %s policy %v: the resolved document is not JSON: %w", roleID, m["PolicyName"], err)
				}
				doc = v
			}
			out.Policies = append(out.Policies, NamedPolicy{Name: fmt.Sprint(m["PolicyName"]), Policy: prune(doc)})
		}
		roles = append(roles, out)
	}
	sort.Slice(roles, func(i, j int) bool { return roles[i].Function < roles[j].Function })
	return roles, nil
}

// prune drops what resolved to nothing (AWS::NoValue): nil map values and
// list elements.
func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e != nil {
				out[k] = prune(e)
			}
		}
		return out
	case []any:
		out := []any{}
		for _, e := range x {
			if e != nil {
				out = append(out, prune(e))
			}
		}
		return out
	}
	return v
}

type roleResolver struct {
	d       Deployment
	tmpl    map[string]any
	roleIDs map[string]string // role ARN -> logical id
}

func (r *roleResolver) bind(tmpl any) {
	if r.tmpl == nil {
		r.tmpl, _ = tmpl.(map[string]any)
		r.roleIDs = map[string]string{}
	}
}

func (r *roleResolver) resourceType(id string) string {
	res, _ := r.tmpl["Resources"].(map[string]any)
	m, _ := res[id].(map[string]any)
	t, _ := m["Type"].(string)
	return t
}

func (r *roleResolver) roleName(id string) string { return r.d.StackName + "-" + id }

func (r *roleResolver) ref(name string) any {
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
	if p, ok := r.d.Physical[name]; ok {
		return p
	}
	params, _ := r.tmpl["Parameters"].(map[string]any)
	if p, ok := params[name].(map[string]any); ok {
		v, given := r.d.Params[name]
		if !given {
			v = fmt.Sprint(p["Default"])
		}
		if p["Type"] == "CommaDelimitedList" {
			out := []any{}
			for _, e := range strings.Split(v, ",") {
				out = append(out, strings.TrimSpace(e))
			}
			return out
		}
		return v
	}
	return name // another resource: its logical id stands for its name
}

func (r *roleResolver) getAtt(id, attr string) any {
	p, reg, acct := r.d.Partition, r.d.Region, r.d.Account
	name := fmt.Sprint(r.ref(id))
	switch r.resourceType(id) + "." + attr {
	case "AWS::IAM::Role.Arn":
		arn := fmt.Sprintf("arn:%s:iam::%s:role/%s", p, acct, r.roleName(id))
		r.roleIDs[arn] = id
		return arn
	case "AWS::DynamoDB::Table.Arn":
		return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", p, reg, acct, name)
	case "AWS::Logs::LogGroup.Arn":
		return fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s:*", p, reg, acct, name)
	case "AWS::SQS::Queue.Arn":
		return fmt.Sprintf("arn:%s:sqs:%s:%s:%s-%s", p, reg, acct, r.d.StackName, id)
	}
	return fmt.Sprintf("arn:%s:unresolved:%s:%s:%s/%s", p, reg, acct, id, attr)
}

func (r *roleResolver) sub(in any) any {
	var src string
	vars := map[string]any{}
	switch x := in.(type) {
	case string:
		src = x
	case []any:
		if len(x) != 2 {
			return nil
		}
		src, _ = x[0].(string)
		vars, _ = x[1].(map[string]any)
	default:
		return nil
	}
	return subVar.ReplaceAllStringFunc(src, func(m string) string {
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

// condition evaluates a template condition for this deployment.
func (r *roleResolver) condition(name string) bool {
	conds, _ := r.tmpl["Conditions"].(map[string]any)
	return r.truthy(conds[name], 0)
}

func (r *roleResolver) truthy(v any, depth int) bool {
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
			conds, _ := r.tmpl["Conditions"].(map[string]any)
			return r.truthy(conds[fmt.Sprint(a)], depth+1)
		}
	}
	return false
}

// value resolves what a condition compares (the processor leaves the
// Conditions section unresolved).
func (r *roleResolver) value(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	if name, ok := m["Ref"].(string); ok {
		return r.ref(name)
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

package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
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

// resource is one resource of the resolved template.
type resource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
	// Condition is the resource's condition (a name; a bool where the
	// processor evaluated it already): a resource whose condition is
	// false is not created.
	Condition any `json:"Condition"`
}

// created says whether the resource exists in the deployment.
func (r *Resolver) created(res resource) bool {
	switch c := res.Condition.(type) {
	case string:
		return r.Condition(c)
	case bool:
		return c
	}
	return true
}

// LoadRoles resolves the execution role of every function in template.yaml.
func LoadRoles(path string, d Deployment) ([]Role, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, js, err := Resolve(data, d)
	if err != nil {
		return nil, fmt.Errorf("processing %s: %w", path, err)
	}
	var doc struct {
		Resources map[string]resource `json:"Resources"`
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
		pols = append(pols, attached(r, doc.Resources, roleID, out.Name)...)
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

// attached is every AWS::IAM::ManagedPolicy of the template that names
// the role (by its Ref, which resolves to its logical id or its name) in
// its Roles, in the shape of an inline policy: IAM evaluates the two alike.
// A policy whose Condition is false is not created, so attaches nothing.
func attached(r *Resolver, resources map[string]resource, roleID, roleName string) []any {
	var out []any
	ids := make([]string, 0, len(resources))
	for id := range resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		res := resources[id]
		if res.Type != "AWS::IAM::ManagedPolicy" || !r.created(res) {
			continue
		}
		roles, _ := res.Properties["Roles"].([]any)
		for _, r := range roles {
			if r == roleID || r == roleName {
				out = append(out, map[string]any{"PolicyName": id, "PolicyDocument": res.Properties["PolicyDocument"]})
				break
			}
		}
	}
	return out
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

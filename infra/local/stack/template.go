package stack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7/intrinsics"
)

// Function is one AWS::Serverless::Function of template.yaml, as the local
// stack runs it.
type Function struct {
	LogicalID string
	// Dir is the function's main package, functions/<kebab-case name>.
	Dir         string
	Env         map[string]string
	MemoryMB    int
	TimeoutSecs int
}

// Template is what the local stack needs from template.yaml.
type Template struct {
	Functions []Function
	// Table is the DynamoDB table's key schema and TTL attribute.
	Table TableSpec
}

// TableSpec describes the AWS::DynamoDB::Table.
type TableSpec struct {
	LogicalID    string
	HashKey      string
	RangeKey     string
	TTLAttribute string
}

var camel = regexp.MustCompile(`([a-z0-9])([A-Z])`)

// FunctionDir maps a function's logical id to its package directory:
// FetchParametersFunction -> functions/fetch-parameters. The Makefile's
// build-<LogicalId> targets follow the same rule.
func FunctionDir(logicalID string) string {
	base := strings.TrimSuffix(logicalID, "Function")
	return filepath.Join("functions", strings.ToLower(camel.ReplaceAllString(base, "$1-$2")))
}

// LoadTemplate reads template.yaml, resolving Ref to parameters (their
// defaults) and to resources (their logical id, or a name from physical).
func LoadTemplate(path string, physical map[string]string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opts := &intrinsics.ProcessorOptions{
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref": func(name string, input interface{}, tmpl interface{}) interface{} {
				if s, ok := input.(string); ok {
					if p, ok := physical[s]; ok {
						return p
					}
					if s == "AWS::AccountId" {
						// The stack's account (the emulators' ARNs), not
						// goformation's 123456789012: HUB_ACCOUNT_ID.
						return Account
					}
				}
				if v := intrinsics.Ref(name, input, tmpl); v != nil {
					return v
				}
				return input
			},
			"Fn::If": func(name string, input interface{}, tmpl interface{}) interface{} {
				args, ok := input.([]interface{})
				if !ok || len(args) != 3 {
					return nil
				}
				cond, _ := args[0].(string)
				if evalCondition(cond, tmpl, physical) {
					return args[1]
				}
				return args[2]
			},
		},
	}
	js, err := intrinsics.ProcessYAML(data, opts)
	if err != nil {
		return nil, fmt.Errorf("processing %s: %w", path, err)
	}
	var doc struct {
		Globals struct {
			Function props `json:"Function"`
		} `json:"Globals"`
		Resources map[string]struct {
			Type       string          `json:"Type"`
			Properties json.RawMessage `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	t := &Template{}
	for id, r := range doc.Resources {
		switch r.Type {
		case "AWS::Serverless::Function":
			var p props
			if err := json.Unmarshal(r.Properties, &p); err != nil {
				return nil, fmt.Errorf("function %s: %w", id, err)
			}
			f := Function{LogicalID: id, Dir: FunctionDir(id), Env: map[string]string{}, MemoryMB: 128, TimeoutSecs: 3}
			for _, src := range []props{doc.Globals.Function, p} {
				for k, v := range src.Environment.Variables {
					if v == nil {
						continue // resolved to nothing (AWS::NoValue)
					}
					f.Env[k] = fmt.Sprint(v)
				}
				if src.MemorySize > 0 {
					f.MemoryMB = src.MemorySize
				}
				if src.Timeout > 0 {
					f.TimeoutSecs = src.Timeout
				}
			}
			t.Functions = append(t.Functions, f)
		case "AWS::DynamoDB::Table":
			var p struct {
				KeySchema []struct {
					AttributeName string
					KeyType       string
				}
				TimeToLiveSpecification struct{ AttributeName string }
			}
			if err := json.Unmarshal(r.Properties, &p); err != nil {
				return nil, fmt.Errorf("table %s: %w", id, err)
			}
			t.Table.LogicalID = id
			t.Table.TTLAttribute = p.TimeToLiveSpecification.AttributeName
			for _, k := range p.KeySchema {
				if k.KeyType == "HASH" {
					t.Table.HashKey = k.AttributeName
				} else {
					t.Table.RangeKey = k.AttributeName
				}
			}
		}
	}
	sort.Slice(t.Functions, func(i, j int) bool { return t.Functions[i].LogicalID < t.Functions[j].LogicalID })
	return t, nil
}

type props struct {
	MemorySize  int `json:"MemorySize"`
	Timeout     int `json:"Timeout"`
	Environment struct {
		Variables map[string]any `json:"Variables"`
	} `json:"Environment"`
}

// evalCondition evaluates a template condition with the parameters'
// defaults (what a deployment without overrides would get).
func evalCondition(name string, tmpl interface{}, physical map[string]string) bool {
	t, _ := tmpl.(map[string]interface{})
	conds, _ := t["Conditions"].(map[string]interface{})
	return truthy(conds[name], t, physical, 0)
}

func truthy(v interface{}, t map[string]interface{}, physical map[string]string, depth int) bool {
	if depth > 20 {
		return false
	}
	switch x := v.(type) {
	case bool:
		return x
	case map[string]interface{}:
		for k, a := range x {
			args, _ := a.([]interface{})
			switch k {
			case "Fn::Equals":
				return len(args) == 2 && fmt.Sprint(value(args[0], t, physical)) == fmt.Sprint(value(args[1], t, physical))
			case "Fn::Not":
				return len(args) == 1 && !truthy(args[0], t, physical, depth+1)
			case "Fn::And":
				for _, c := range args {
					if !truthy(c, t, physical, depth+1) {
						return false
					}
				}
				return true
			case "Fn::Or":
				for _, c := range args {
					if truthy(c, t, physical, depth+1) {
						return true
					}
				}
				return false
			case "Condition":
				name, _ := a.(string)
				conds, _ := t["Conditions"].(map[string]interface{})
				return truthy(conds[name], t, physical, depth+1)
			}
		}
	}
	return false
}

// value resolves what a condition compares: literals, Ref to a parameter
// (its default) and Fn::Join of those.
func value(v interface{}, t map[string]interface{}, physical map[string]string) interface{} {
	m, ok := v.(map[string]interface{})
	if !ok {
		return v
	}
	if r, ok := m["Ref"].(string); ok {
		if p, ok := physical[r]; ok {
			return p
		}
		params, _ := t["Parameters"].(map[string]interface{})
		if p, ok := params[r].(map[string]interface{}); ok {
			if d, ok := p["Default"]; ok {
				return d
			}
			return ""
		}
		return r
	}
	if j, ok := m["Fn::Join"].([]interface{}); ok && len(j) == 2 {
		sep := fmt.Sprint(j[0])
		var parts []string
		switch list := value(j[1], t, physical).(type) {
		case []interface{}:
			for _, p := range list {
				parts = append(parts, fmt.Sprint(value(p, t, physical)))
			}
		case string:
			parts = []string{list}
		}
		return strings.Join(parts, sep)
	}
	return v
}

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
				}
				if v := intrinsics.Ref(name, input, tmpl); v != nil {
					return v
				}
				return input
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

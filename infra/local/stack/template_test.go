package stack

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadTemplate(t *testing.T) {
	tmpl, err := LoadTemplate("../../../template.yaml", map[string]string{"RotationTable": "local-table"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tmpl.Functions) < 5 {
		t.Fatalf("functions: %d", len(tmpl.Functions))
	}
	for _, f := range tmpl.Functions {
		if f.Env["TABLE_NAME"] != "local-table" {
			t.Errorf("%s TABLE_NAME=%q", f.LogicalID, f.Env["TABLE_NAME"])
		}
		if f.Env["MIN_TOKEN_VALIDITY"] == "" {
			t.Errorf("%s MIN_TOKEN_VALIDITY unset", f.LogicalID)
		}
		if _, err := os.Stat(filepath.Join("../../..", f.Dir, "main.go")); err != nil {
			t.Errorf("%s: %v", f.LogicalID, err)
		}
	}
	if tmpl.Table.HashKey != "pk" || tmpl.Table.RangeKey != "sk" || tmpl.Table.TTLAttribute != "expiresAt" {
		t.Errorf("table %+v", tmpl.Table)
	}
}

// TestParametersReachFunctionEnv: a parameter value of the emulated
// deployment reaches the functions' environment (the roles get the same
// values), and without one the parameter's default does.
func TestParametersReachFunctionEnv(t *testing.T) {
	for _, c := range []struct{ given, want string }{{"", "false"}, {"true", "true"}} {
		names := map[string]string{"RotationTable": "local-table"}
		if c.given != "" {
			names["RotateOnDemand"] = c.given
		}
		tmpl, err := LoadTemplate("../../../template.yaml", names)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range tmpl.Functions {
			if f.Env["ROTATE_ON_DEMAND"] != c.want {
				t.Errorf("RotateOnDemand %q: %s ROTATE_ON_DEMAND=%q, want %q", c.given, f.LogicalID, f.Env["ROTATE_ON_DEMAND"], c.want)
			}
		}
	}
}

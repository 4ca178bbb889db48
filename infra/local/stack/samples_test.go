package stack

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestEventsNameTheSample: every file of events/ that names a key, a secret
// or a secret version names what Options.Samples (make stack-up) creates, so
// `make invoke` and `make pipeline` find them.
func TestEventsNameTheSample(t *testing.T) {
	files, err := filepath.Glob("../../../events/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no events/*.json: %v", err)
	}
	named := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// The request is the input itself (execution-input.json), under
		// "input" (the fetch stage's event) or "request" (later stages).
		for _, req := range []any{doc, doc["input"], doc["request"]} {
			m, ok := req.(map[string]any)
			if !ok {
				continue
			}
			check := func(field, want string) {
				if v, ok := m[field]; ok {
					named++
					if v != want {
						t.Errorf("%s: %s is %v; the stack's sample is %s (infra/local/stack/samples.go)", filepath.Base(f), field, v, want)
					}
				}
			}
			check("keyId", SampleAlias)
			check("secretId", SampleSecret)
			check("secretVersionId", SampleSecretVersion)
		}
	}
	if named < 3 {
		t.Errorf("only %d sample references found in events/: the check reads nothing", named)
	}
}

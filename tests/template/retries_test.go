package template_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLambdaTasksRetryTimeouts: a Lambda that times out reaches Step
// Functions as Sandbox.Timedout (a client-side timeout as
// Lambda.ClientExecutionTimeoutException); every Lambda Task of both state
// machines retries them like the other Lambda service errors
// (docs/aws-behaviour.md, rows 18 and 19).
func TestLambdaTasksRetryTimeouts(t *testing.T) {
	for _, f := range []string{"rotation.asl.json", "fleet.asl.json"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "infra", "statemachine", f))
		if err != nil {
			t.Fatal(err)
		}
		var def struct{ States map[string]json.RawMessage }
		if err := json.Unmarshal(b, &def); err != nil {
			t.Fatal(err)
		}
		tasks := 0
		var walk func(map[string]json.RawMessage)
		walk = func(states map[string]json.RawMessage) {
			for name, raw := range states {
				var s struct {
					Type, Resource string
					Retry          []struct{ ErrorEquals []string }
					ItemProcessor  *struct{ States map[string]json.RawMessage }
				}
				if err := json.Unmarshal(raw, &s); err != nil {
					t.Fatal(err)
				}
				if s.ItemProcessor != nil {
					walk(s.ItemProcessor.States)
				}
				if s.Type != "Task" || !strings.Contains(s.Resource, "FunctionArn") {
					continue
				}
				tasks++
				var retried []string
				for _, r := range s.Retry {
					retried = append(retried, r.ErrorEquals...)
				}
				for _, e := range []string{"Sandbox.Timedout", "Lambda.ClientExecutionTimeoutException", "Lambda.ServiceException", "Runtime.ExitError"} {
					if !slices.Contains(retried, e) {
						t.Errorf("%s: Task %s does not retry %s", f, name, e)
					}
				}
			}
		}
		walk(def.States)
		if tasks == 0 {
			t.Errorf("%s: no Lambda Task found", f)
		}
	}
}

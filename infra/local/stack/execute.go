package stack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Execution is the --json result of infra/local/sfn/execute.mjs.
type Execution struct {
	ExecutionArn string          `json:"executionArn"`
	Name         string          `json:"name"`
	Status       string          `json:"status"`
	Output       json.RawMessage `json:"output"`
	Error        string          `json:"error"`
	Cause        string          `json:"cause"`
	States       []StateRun      `json:"states"`
	// ChildExecutions counts nested executions by status.
	ChildExecutions map[string]int `json:"childExecutions,omitempty"`
}

// StateRun is one state's run within an execution.
type StateRun struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	DurationMs float64 `json:"durationMs"`
	Outcome    string  `json:"outcome"`
	Error      string  `json:"error"`
}

// ExecuteOptions tune one local execution.
type ExecuteOptions struct {
	// Functions overrides invoke URLs (a test's proxy in front of one).
	Functions map[string]string
	// Human streams the runner's readable output to Out instead of
	// returning a parsed result.
	Human bool
	Out   io.Writer
	Name  string
	// WaitScale scales Retry intervals (tests use 0.01).
	WaitScale string
	// StateMachine is the logical id to run (default RotationStateMachine).
	StateMachine string
	// Children prints the states of nested executions (human mode).
	Children bool
}

// Execute runs the state machine of template.yaml on this stack with
// aws-local-stepfunctions (Node 22), each Task dispatched to the function
// template.yaml binds to it.
func (st *Stack) Execute(ctx context.Context, root string, input []byte, o ExecuteOptions) (*Execution, error) {
	fns := map[string]any{}
	for k, v := range st.Functions {
		fns[k] = v
		if len(st.Pools[k]) > 1 {
			fns[k] = st.Pools[k]
		}
	}
	for k, v := range o.Functions {
		fns[k] = v
	}
	dir, err := os.MkdirTemp(st.Dir, "exec-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fnPath, inPath := filepath.Join(dir, "functions.json"), filepath.Join(dir, "input.json")
	fb, _ := json.Marshal(fns)
	if err := os.WriteFile(fnPath, fb, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(inPath, input, 0o600); err != nil {
		return nil, err
	}
	args := []string{filepath.Join(root, "infra/local/sfn/execute.mjs"),
		"--template", filepath.Join(root, "template.yaml"), "--functions", fnPath, "--input", inPath,
		"--region", st.Region, "--account", Account,
		"--state-machine", cmp.Or(o.StateMachine, "RotationStateMachine")}
	if o.Children {
		args = append(args, "--children")
	}
	if o.Name != "" {
		args = append(args, "--name", o.Name)
	}
	if o.WaitScale != "" {
		args = append(args, "--wait-scale", o.WaitScale)
	}
	if !o.Human {
		args = append(args, "--json")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(Tools(root), "node22/bin/node"), args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stderr = &stderr
	if o.Human {
		cmd.Stdout = o.Out
		cmd.Stderr = o.Out
	} else {
		cmd.Stdout = &stdout
	}
	err = cmd.Run()
	if o.Human {
		if err != nil {
			return &Execution{Status: "FAILED"}, nil
		}
		return &Execution{Status: "SUCCEEDED"}, nil
	}
	var ex Execution
	if jerr := json.Unmarshal(stdout.Bytes(), &ex); jerr != nil {
		return nil, fmt.Errorf("state machine runner: %v; stdout: %s; stderr: %s", err, stdout.String(), stderr.String())
	}
	return &ex, nil
}

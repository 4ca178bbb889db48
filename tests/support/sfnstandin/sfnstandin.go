// Package sfnstandin answers the three Step Functions API actions
// `kms-reimport rotate` calls (StartExecution, DescribeExecution,
// GetExecutionHistory) for the local stack, which runs its state machines
// with aws-local-stepfunctions (infra/local/sfn) and has no Step Functions
// endpoint of its own. It speaks the AWS JSON 1.0 protocol the SDK uses
// (X-Amz-Target: AWSStepFunctions.<Action>), with the request and response
// members of the Step Functions API reference; timestamps are epoch
// seconds. A test tool: never shipped.
//
// What it models, and what not: an execution runs to its end through the
// local runner and then has its whole history; until then it is RUNNING with
// only ExecutionStarted. The history is synthesized from the runner's
// per-state results (each state's measured duration): StateEntered,
// TaskFailed for each error met, StateExited. Input and output details,
// Map iterations and nested executions' events are not given.
package sfnstandin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// Runner runs one execution of a state machine of template.yaml (its
// logical id) to its end.
type Runner func(ctx context.Context, stateMachine, name string, input []byte) (*stack.Execution, error)

// Server is the stand-in; its zero value needs Run, Region and Account.
type Server struct {
	Region, Account string
	Run             Runner
	// Ctx bounds the executions (default context.Background()).
	Ctx context.Context

	mu    sync.Mutex
	execs map[string]*execution
	seq   int
}

type execution struct {
	arn, machine, name, input string
	start, stop               time.Time
	result                    *stack.Execution
	err                       error
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, "SerializationException", "request body is not JSON: "+err.Error())
		return
	}
	var out any
	var code, msg string
	switch action {
	case "StartExecution":
		out, code, msg = s.start(body)
	case "DescribeExecution":
		out, code, msg = s.describe(str(body, "executionArn"))
	case "GetExecutionHistory":
		out, code, msg = s.history(body)
	default:
		code, msg = "UnknownOperationException", "the stand-in answers StartExecution, DescribeExecution and GetExecutionHistory, not "+action
	}
	if code != "" {
		apiError(w, code, msg)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out)
}

func apiError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// StateMachineARN is the ARN the stand-in gives a state machine of the
// template (its logical id as its name, as the local runner names it).
func (s *Server) StateMachineARN(logicalID string) string {
	return stack.StateMachineARN(s.Region, s.Account, logicalID)
}

func (s *Server) start(body map[string]any) (any, string, string) {
	smARN := str(body, "stateMachineArn")
	prefix := fmt.Sprintf("arn:aws:states:%s:%s:stateMachine:", s.Region, s.Account)
	machine, ok := strings.CutPrefix(smARN, prefix)
	if !ok || machine == "" {
		return nil, "StateMachineDoesNotExist", "State Machine Does Not Exist: '" + smARN + "'"
	}
	input := str(body, "input")
	if input == "" {
		input = "{}"
	}
	if !json.Valid([]byte(input)) {
		return nil, "InvalidExecutionInput", "Invalid State Machine Execution Input: the input is not JSON"
	}
	s.mu.Lock()
	if s.execs == nil {
		s.execs = map[string]*execution{}
	}
	s.seq++
	name := str(body, "name")
	if name == "" {
		name = fmt.Sprintf("standin-%d-%d", time.Now().UnixNano(), s.seq)
	}
	arn := fmt.Sprintf("arn:aws:states:%s:%s:execution:%s:%s", s.Region, s.Account, machine, name)
	if _, dup := s.execs[arn]; dup {
		s.mu.Unlock()
		return nil, "ExecutionAlreadyExists", "Execution Already Exists: '" + arn + "'"
	}
	e := &execution{arn: arn, machine: machine, name: name, input: input, start: time.Now()}
	s.execs[arn] = e
	s.mu.Unlock()
	ctx := s.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		res, err := s.Run(ctx, machine, name, []byte(input))
		s.mu.Lock()
		e.result, e.err, e.stop = res, err, time.Now()
		s.mu.Unlock()
	}()
	return map[string]any{"executionArn": arn, "startDate": epoch(e.start)}, "", ""
}

func (s *Server) get(arn string) (execution, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.execs[arn]
	if !ok {
		return execution{}, false
	}
	return *e, true
}

// status is the execution's status, error and cause as DescribeExecution
// gives them.
func (e execution) status() (string, string, string) {
	switch {
	case e.result == nil && e.err == nil:
		return "RUNNING", "", ""
	case e.err != nil:
		return "FAILED", "States.Runtime", e.err.Error()
	case e.result.Status == "SUCCEEDED":
		return "SUCCEEDED", "", ""
	case e.result.Status == "TIMED_OUT":
		return "TIMED_OUT", e.result.Error, e.result.Cause
	}
	return "FAILED", e.result.Error, e.result.Cause
}

func (s *Server) describe(arn string) (any, string, string) {
	e, ok := s.get(arn)
	if !ok {
		return nil, "ExecutionDoesNotExist", "Execution Does Not Exist: '" + arn + "'"
	}
	status, errName, cause := e.status()
	out := map[string]any{"executionArn": e.arn, "stateMachineArn": s.StateMachineARN(e.machine), "name": e.name,
		"status": status, "startDate": epoch(e.start), "input": e.input}
	if status != "RUNNING" {
		out["stopDate"] = epoch(e.stop)
	}
	if status == "SUCCEEDED" {
		out["output"] = string(e.result.Output)
	}
	if errName != "" || cause != "" {
		out["error"], out["cause"] = errName, cause
	}
	return out, "", ""
}

// events synthesizes the execution's history from the runner's states.
func (e execution) events() []map[string]any {
	var evs []map[string]any
	add := func(at time.Time, typ string, details map[string]any) {
		ev := map[string]any{"id": len(evs) + 1, "previousEventId": len(evs), "timestamp": epoch(at), "type": typ}
		for k, v := range details {
			ev[k] = v
		}
		evs = append(evs, ev)
	}
	add(e.start, "ExecutionStarted", map[string]any{"executionStartedEventDetails": map[string]any{"input": e.input}})
	status, errName, cause := e.status()
	if status == "RUNNING" {
		return evs
	}
	t, open := e.start, ""
	for _, st := range stateRuns(e.result) {
		if open != st.Name {
			add(t, st.Type+"StateEntered", map[string]any{"stateEnteredEventDetails": map[string]any{"name": st.Name}})
			open = st.Name
		}
		t = t.Add(time.Duration(st.DurationMs * float64(time.Millisecond)))
		if st.Error != "" {
			add(t, "TaskFailed", map[string]any{"taskFailedEventDetails": map[string]any{"error": st.Error, "resourceType": "lambda", "resource": "invoke"}})
		}
		if st.Outcome != "retry" {
			add(t, st.Type+"StateExited", map[string]any{"stateExitedEventDetails": map[string]any{"name": st.Name}})
			open = ""
		}
	}
	if t.Before(e.stop) {
		t = e.stop
	}
	switch status {
	case "SUCCEEDED":
		add(t, "ExecutionSucceeded", map[string]any{"executionSucceededEventDetails": map[string]any{"output": string(e.result.Output)}})
	case "TIMED_OUT":
		add(t, "ExecutionTimedOut", map[string]any{"executionTimedOutEventDetails": map[string]any{"error": errName, "cause": cause}})
	default:
		add(t, "ExecutionFailed", map[string]any{"executionFailedEventDetails": map[string]any{"error": errName, "cause": cause}})
	}
	return evs
}

func stateRuns(r *stack.Execution) []stack.StateRun {
	if r == nil {
		return nil
	}
	return r.States
}

func (s *Server) history(body map[string]any) (any, string, string) {
	e, ok := s.get(str(body, "executionArn"))
	if !ok {
		return nil, "ExecutionDoesNotExist", "Execution Does Not Exist: '" + str(body, "executionArn") + "'"
	}
	evs := e.events()
	if rev, _ := body["reverseOrder"].(bool); rev {
		for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
			evs[i], evs[j] = evs[j], evs[i]
		}
	}
	from, _ := strconv.Atoi(str(body, "nextToken"))
	size := 100 // the API's default maxResults
	if m, ok := body["maxResults"].(float64); ok && m > 0 {
		size = int(m)
	}
	from = min(from, len(evs))
	to := min(from+size, len(evs))
	out := map[string]any{"events": evs[from:to]}
	if to < len(evs) {
		out["nextToken"] = strconv.Itoa(to)
	}
	return out, "", ""
}

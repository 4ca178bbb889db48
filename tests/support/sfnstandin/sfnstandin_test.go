package sfnstandin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// TestAPI: the SDK's own client starts an execution, sees it RUNNING, then
// SUCCEEDED or FAILED with the runner's result, and reads the history page
// by page: the stand-in answers as the API reference documents.
func TestAPI(t *testing.T) {
	release := make(chan struct{})
	srv := &Server{Region: "eu-west-2", Account: "111122223333", Run: func(_ context.Context, sm, name string, input []byte) (*stack.Execution, error) {
		<-release
		if sm != "RotationStateMachine" || name != "run-1" {
			return nil, errors.New("wrong machine or name " + sm + " " + name)
		}
		return &stack.Execution{Status: "FAILED", Error: "KeyNotEligible", Cause: "origin AWS_KMS", States: []stack.StateRun{
			{Name: "FetchImportParameters", Type: "Task", DurationMs: 30, Outcome: "retry", Error: "AWSTransient"},
			{Name: "FetchImportParameters", Type: "Task", DurationMs: 20, Outcome: "caught", Error: "KeyNotEligible"},
			{Name: "FetchFailed", Type: "Pass", DurationMs: 1, Outcome: "ok"},
		}}, nil
	}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c := sfn.New(sfn.Options{Region: "eu-west-2", BaseEndpoint: aws.String(hs.URL), Credentials: aws.AnonymousCredentials{}})
	ctx := context.Background()
	if _, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String("arn:aws:states:eu-west-2:111122223333:stateMachine:Nope:x"), Input: aws.String("{")}); err == nil {
		t.Fatal("malformed input accepted")
	}
	out, err := c.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: aws.String(srv.StateMachineARN("RotationStateMachine")), Name: aws.String("run-1"), Input: aws.String(`{"keyId":"k"}`)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn})
	if err != nil || d.Status != types.ExecutionStatusRunning || aws.ToString(d.Input) != `{"keyId":"k"}` {
		t.Fatalf("running: %+v, %v", d, err)
	}
	close(release)
	for d.Status == types.ExecutionStatusRunning {
		time.Sleep(5 * time.Millisecond)
		if d, err = c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: out.ExecutionArn}); err != nil {
			t.Fatal(err)
		}
	}
	if d.Status != types.ExecutionStatusFailed || aws.ToString(d.Error) != "KeyNotEligible" || d.StopDate == nil {
		t.Fatalf("ended: %+v", d)
	}
	var got []types.HistoryEvent
	var token *string
	for {
		h, err := c.GetExecutionHistory(ctx, &sfn.GetExecutionHistoryInput{ExecutionArn: out.ExecutionArn, MaxResults: 2, NextToken: token})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Events...)
		if token = h.NextToken; token == nil {
			break
		}
	}
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, string(e.Type))
	}
	want := []string{"ExecutionStarted", "TaskStateEntered", "TaskFailed", "TaskFailed", "TaskStateExited", "PassStateEntered", "PassStateExited", "ExecutionFailed"}
	a, _ := json.Marshal(kinds)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Fatalf("history %s, want %s", a, b)
	}
	if d := got[4].Timestamp.Sub(*got[1].Timestamp); d < 49*time.Millisecond || d > 51*time.Millisecond {
		t.Errorf("FetchImportParameters took %s in the history, want the runner's 50ms", d)
	}
	if _, err := c.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(srv.StateMachineARN("x") + ":nope")}); err == nil {
		t.Error("an unknown execution is described")
	}
}

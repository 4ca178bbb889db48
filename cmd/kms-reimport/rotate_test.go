package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

const (
	testKey = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	testSM  = "arn:aws:states:eu-west-2:111122223333:stateMachine:RotationStateMachine-abc"
)

func cliRun(args ...string) (string, string, int) {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return o.String(), e.String(), code
}

// TestRotateRefusesBadInput: input the fetch stage would refuse, and a
// duplicate field Step Functions would silently collapse, are refused
// with exit 2 before any execution starts, naming the field (and the
// user's file).
func TestRotateRefusesBadInput(t *testing.T) {
	f := withFakes(t)
	dir := t.TempDir()
	dup := filepath.Join(dir, "my-input.json")
	os.WriteFile(dup, []byte(`{"keyId":"`+testKey+`","secretId":"s","validFor":"720h","validFor":"30d"}`), 0o600)
	bad := filepath.Join(dir, "broken.json")
	os.WriteFile(bad, []byte(`{"keyId":`), 0o600)
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"no key", []string{"--secret", "s"}, []string{"--key and --secret are required"}},
		{"bad validity", []string{"--key", testKey, "--secret", "s", "--valid-for", "400d"}, []string{`"validFor"`, "365 days"}},
		{"bad key id", []string{"--key", "not-a-key", "--secret", "s"}, []string{`"keyId"`}},
		{"duplicate field in the file", []string{"--input", dup}, []string{dup, `"validFor"`}},
		{"malformed file", []string{"--input", bad}, []string{bad}},
		{"missing file", []string{"--input", filepath.Join(dir, "nope.json")}, []string{"nope.json"}},
		{"file and flags", []string{"--input", dup, "--key", testKey}, []string{"excludes"}},
		{"stray argument", []string{"extra"}, []string{`unexpected argument "extra"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := cliRun(append([]string{"rotate", "--state-machine", testSM}, c.args...)...)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not name %q", errOut, w)
				}
			}
		})
	}
	if len(f.sfn.started) != 0 {
		t.Fatalf("an execution was started for refused input: %+v", f.sfn.started)
	}
}

// TestRotateStartsFromStackOutput: without --state-machine the ARN is the
// stack's StateMachineArn output; the input sent is the checked input,
// with only the fields given.
func TestRotateStartsFromStackOutput(t *testing.T) {
	f := withFakes(t)
	t.Setenv("STATE_MACHINE_ARN", "")
	f.stack.outputs["StateMachineArn"] = testSM
	out, errOut, code := cliRun("rotate", "--stack", "my-stack", "--key", "alias/payments", "--secret", "kms-reimport/p", "--valid-for", "30d", "--no-register")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(f.stack.asked) != 1 || f.stack.asked[0] != "my-stack" {
		t.Errorf("stacks described %v, want [my-stack]", f.stack.asked)
	}
	if len(f.sfn.started) != 1 || aws.ToString(f.sfn.started[0].StateMachineArn) != testSM {
		t.Fatalf("started %+v", f.sfn.started)
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(f.sfn.started[0].Input)), &in); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"keyId": "alias/payments", "secretId": "kms-reimport/p", "validFor": "30d", "register": false}
	if len(in) != len(want) {
		t.Errorf("input %v, want %v", in, want)
	}
	for k, v := range want {
		if in[k] != v {
			t.Errorf("input %s = %v, want %v", k, in[k], v)
		}
	}
	if !strings.Contains(out, "started arn:aws:states:eu-west-2:111122223333:execution:") {
		t.Errorf("output %q names no execution", out)
	}
}

// TestRotateNoStack: no --state-machine and no stack is an error naming
// what to pass, exit 1 (the deployment could not be reached), nothing started.
func TestRotateNoStack(t *testing.T) {
	f := withFakes(t)
	t.Setenv("STATE_MACHINE_ARN", "")
	_, errOut, code := cliRun("rotate", "--stack", "gone", "--key", testKey, "--secret", "s", "--valid-for", "30d")
	if code != exitFailure || !strings.Contains(errOut, "--state-machine") || len(f.sfn.started) != 0 {
		t.Fatalf("exit %d, stderr %q, started %d", code, errOut, len(f.sfn.started))
	}
}

func ev(typ sfntypes.HistoryEventType, at time.Time, mod func(*sfntypes.HistoryEvent)) sfntypes.HistoryEvent {
	e := sfntypes.HistoryEvent{Type: typ, Timestamp: aws.Time(at)}
	if mod != nil {
		mod(&e)
	}
	return e
}

func entered(name string, at time.Time) sfntypes.HistoryEvent {
	return ev(sfntypes.HistoryEventTypeTaskStateEntered, at, func(e *sfntypes.HistoryEvent) {
		e.StateEnteredEventDetails = &sfntypes.StateEnteredEventDetails{Name: aws.String(name)}
	})
}

func exited(name string, at time.Time) sfntypes.HistoryEvent {
	return ev(sfntypes.HistoryEventTypeTaskStateExited, at, func(e *sfntypes.HistoryEvent) {
		e.StateExitedEventDetails = &sfntypes.StateExitedEventDetails{Name: aws.String(name)}
	})
}

// history is an execution's events: a retried fetch, then the end.
func history(t0 time.Time, end sfntypes.HistoryEventType) []sfntypes.HistoryEvent {
	return []sfntypes.HistoryEvent{
		ev(sfntypes.HistoryEventTypeExecutionStarted, t0, nil),
		entered("FetchImportParameters", t0),
		ev(sfntypes.HistoryEventTypeTaskFailed, t0.Add(40*time.Millisecond), func(e *sfntypes.HistoryEvent) {
			e.TaskFailedEventDetails = &sfntypes.TaskFailedEventDetails{Error: aws.String("AWSTransient")}
		}),
		exited("FetchImportParameters", t0.Add(1500*time.Millisecond)),
		entered("VerifyImport", t0.Add(2*time.Second)),
		exited("VerifyImport", t0.Add(2250*time.Millisecond)),
		ev(end, t0.Add(3*time.Second), nil),
	}
}

// TestRotateWait: --wait prints each state with its duration (through
// every page of the history), the errors met, then the summary; exit 0
// renewed, 1 failed or not renewed.
func TestRotateWait(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	vt := t0.Add(720 * time.Hour)
	summary, _ := json.Marshal(map[string]any{"outcome": "RENEWED", "key": map[string]any{"arn": testKey, "keySpec": "SYMMETRIC_DEFAULT"},
		"verification": map[string]any{"keyState": "Enabled", "validTo": vt, "roundTrip": "Encrypt/Decrypt round trip: equal", "auditId": "IMPORT#x"}, "imports": 1})
	busy, _ := json.Marshal(map[string]any{"outcome": "ALREADY_IN_PROGRESS"})
	cases := []struct {
		name     string
		end      sfntypes.HistoryEventType
		describe sfn.DescribeExecutionOutput
		code     int
		want     []string
	}{
		{"renewed", sfntypes.HistoryEventTypeExecutionSucceeded,
			sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusSucceeded, Output: aws.String(string(summary))},
			exitOK, []string{"FetchImportParameters", "1.5s", "error AWSTransient", "VerifyImport", "250ms", "RENEWED in 3s", vt.Format(time.RFC3339), "IMPORT#x"}},
		{"failed", sfntypes.HistoryEventTypeExecutionFailed,
			sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusFailed, Error: aws.String("KeyNotEligible"), Cause: aws.String("origin AWS_KMS")},
			exitFailure, []string{"FAILED in 3s: KeyNotEligible", "origin AWS_KMS"}},
		{"another execution holds the key", sfntypes.HistoryEventTypeExecutionSucceeded,
			sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusSucceeded, Output: aws.String(string(busy))},
			exitFailure, []string{"ALREADY_IN_PROGRESS", "not renewed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := withFakes(t)
			f.sfn.events, f.sfn.pageSize = history(t0, c.end), 2
			c.describe.StartDate, c.describe.StopDate = aws.Time(t0), aws.Time(t0.Add(3*time.Second))
			f.sfn.describe = c.describe
			out, errOut, code := cliRun("rotate", "--state-machine", testSM, "--key", testKey, "--secret", "s", "--valid-for", "30d", "--wait", "--poll", "1ms")
			if code != c.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, c.code, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not show %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestVersion: --version prints a version and exits 0.
func TestVersion(t *testing.T) {
	out, _, code := cliRun("--version")
	if code != exitOK || !strings.HasPrefix(out, "kms-reimport ") || len(strings.TrimSpace(out)) <= len("kms-reimport") {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
	buildVersion = "v9.9.9"
	defer func() { buildVersion = "" }()
	if out, _, _ := cliRun("--version"); out != "kms-reimport v9.9.9\n" {
		t.Fatalf("ldflags version not shown: %q", out)
	}
}

// TestHelpStyle: every subcommand's --help has the same shape, on stdout,
// exit 0, with no flag default printed twice.
func TestHelpStyle(t *testing.T) {
	for _, c := range commands {
		out, errOut, code := cliRun(c.name, "--help")
		if code != exitOK || errOut != "" {
			t.Errorf("%s --help: exit %d, stderr %q", c.name, code, errOut)
		}
		for _, w := range []string{"Usage: kms-reimport " + c.name, "\n  --", "-h, --help", "\nExit codes: "} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help lacks %q:\n%s", c.name, w, out)
			}
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Count(line, "(default") > 1 {
				t.Errorf("%s --help prints a default twice: %q", c.name, line)
			}
		}
	}
}

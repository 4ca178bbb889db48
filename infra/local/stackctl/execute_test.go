package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadInputNamesTheUsersFile: malformed JSON is refused naming the
// user's file and the line, before any execution.
func TestReadInputNamesTheUsersFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "my-input.json")
	os.WriteFile(p, []byte("{\n  \"keyId\": \"k\",\n  \"secretId\": \n}"), 0o600)
	_, err := readInput(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("error %v: want the file %s and line 4", err, p)
	}
	os.WriteFile(p, []byte(`{"keyId":"k"}`), 0o600)
	if _, err := readInput(p); err != nil {
		t.Fatal(err)
	}
}

// TestFailedRotations: a fleet run's output with failed rotations is
// found in the runner's human output; a rotation's output never counts.
func TestFailedRotations(t *testing.T) {
	fleet := "PlanPage   Task  20 ms  ok\nSUCCEEDED arn:aws:states:eu-west-2:1:execution:FleetStateMachine:x\n{\n  \"pages\": 1,\n  \"failed\": 2,\n  \"failedKeys\": [{\"keyId\": \"k\", \"error\": \"KeyNotFound\"}]\n}\n"
	if n := failedRotations(humanOutput([]byte(fleet))); n != 2 {
		t.Fatalf("failed = %d, want 2", n)
	}
	ok := strings.Replace(fleet, `"failed": 2`, `"failed": 0`, 1)
	if n := failedRotations(humanOutput([]byte(ok))); n != 0 {
		t.Fatalf("failed = %d, want 0", n)
	}
	rotation := "SUCCEEDED arn:x\n{\"outcome\": \"RENEWED\"}\n"
	if n := failedRotations(humanOutput([]byte(rotation))); n != 0 {
		t.Fatalf("a rotation's output counted %d failures", n)
	}
	if humanOutput([]byte("FAILED arn:x\nError: X\n")) != nil {
		t.Fatal("output found in a failed run")
	}
}

// Package cli_test runs the kms-reimport command, built as an operator
// builds it, against a registry on DynamoDB Local and against the local
// stack.
package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// cliBin is the command under test, built once by TestMain.
var cliBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kms-reimport-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	cliBin = filepath.Join(dir, "kms-reimport")
	build := exec.Command("go", "build", "-o", cliBin, "github.com/kms-reimport/kms-reimport/cmd/kms-reimport")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/kms-reimport: %v\n%s", err, out)
		return 2
	}
	return m.Run()
}

// cliOn runs the built command with the test's environment (DynamoDB
// Local's endpoint, the table) and returns its stdout, stderr and exit
// code.
func cliOn(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(cliBin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0
	case errors.As(err, &exit):
		return o.String(), e.String(), exit.ExitCode()
	default:
		t.Fatalf("running %s: %v", cliBin, err)
		return "", "", -1
	}
}

// exitUsage is the command's exit code for bad usage (cmd/kms-reimport).
const exitUsage = 2

// statusReport and planEstimate are the fields of `status --json` and of
// `plan --json`'s estimate these tests read, as a script of an operator's
// reads them: the JSON names are the contract.
type statusReport struct {
	Keys []struct {
		KeyARN   string          `json:"keyArn"`
		DaysLeft *float64        `json:"daysLeft,omitempty"`
		Expired  bool            `json:"expired,omitempty"`
		Blocked  *registry.Block `json:"blocked,omitempty"`
	} `json:"keys"`
	Blocked int `json:"blocked"`
	Outlook struct {
		Expired      int `json:"expired"`
		Within7Days  int `json:"within7Days"`
		Within30Days int `json:"within30Days"`
		Within90Days int `json:"within90Days"`
		Next         []struct {
			registry.Expiry
			DaysLeft float64 `json:"daysLeft"`
		} `json:"next"`
	} `json:"outlook"`
	GeneratedAt time.Time `json:"generatedAt"`
}

type planEstimate struct {
	KMSRate     float64 `json:"kmsRate"`
	KMSRequests int     `json:"kmsRequests"`
	Seconds     float64 `json:"seconds"`
	Note        string  `json:"note"`
}

package cli_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/sfnstandin"
)

// opsCLI is the built command with the local stack's environment and the
// Step Functions stand-in's endpoint.
type opsCLI struct {
	bin string
	env []string
}

func (c opsCLI) run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("$ kms-reimport %s  (exit %d)\n%s%s", strings.Join(args, " "), code, o.String(), e.String())
	// No SDK log line in what the user sees.
	if strings.Contains(e.String(), "SDK ") || strings.Contains(o.String(), "SDK ") {
		t.Errorf("SDK log line in the output of %v:\n%s%s", args, o.String(), e.String())
	}
	return o.String(), e.String(), code
}

// TestOperatorCommandsOnLocalStack: rotate (started and followed through
// the Step Functions stand-in), history, status --check, selftest and plan
// --detailed-exitcode on a local stack, with their exit codes.
func TestOperatorCommandsOnLocalStack(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	st, err := stack.Up(ctx, stack.Options{Root: root, Dir: filepath.Join(dir, "stack"), Samples: true, Log: t.Logf})
	if err != nil {
		t.Fatalf("starting the local stack (make tools first; never skipped): %v", err)
	}
	t.Cleanup(func() { _ = st.Down() })
	srv := &sfnstandin.Server{Region: st.Region, Account: stack.Account, Ctx: ctx,
		Run: func(ctx context.Context, sm, name string, input []byte) (*stack.Execution, error) {
			return st.Execute(ctx, root, input, stack.ExecuteOptions{StateMachine: sm, Name: name, WaitScale: "0.01"})
		}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	// status asks STS the caller's account (GetCallerIdentity): moto answers it.
	c := opsCLI{bin: cliBin, env: append(st.ClientEnv(), "AWS_ENDPOINT_URL_STS="+st.Secrets, "AWS_ENDPOINT_URL_SFN="+hs.URL, "STATE_MACHINE_ARN="+srv.StateMachineARN("RotationStateMachine"))}
	alias, secret := st.Sample.Alias, st.Sample.SecretID

	// rotate: refused input (exit 2), a renewal followed to its end (exit 0).
	if _, errOut, code := c.run(t, "rotate", "--key", alias, "--secret", secret, "--valid-for", "400d"); code != 2 || !strings.Contains(errOut, "validFor") {
		t.Fatalf("rotate with a bad validity: exit %d", code)
	}
	out, _, code := c.run(t, "rotate", "--key", alias, "--secret", secret, "--valid-for", "30d", "--wrapping-key-spec", "RSA_2048", "--wait", "--poll", "200ms")
	if code != 0 {
		t.Fatalf("rotate --wait: exit %d", code)
	}
	for _, w := range []string{"started arn:aws:states:", "FetchImportParameters", "ImportKeyMaterial", "VerifyImport", "RENEWED in", st.Sample.KeyARN} {
		if !strings.Contains(out, w) {
			t.Errorf("rotate --wait does not show %q", w)
		}
	}
	// A key the product may not import into: the execution fails, exit 1.
	kc := kms.New(kms.Options{Region: st.Region, BaseEndpoint: aws.String(st.KMS), Credentials: aws.AnonymousCredentials{}})
	k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags()})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, code := c.run(t, "rotate", "--key", *k.KeyMetadata.Arn, "--secret", secret, "--valid-for", "30d", "--wrapping-key-spec", "RSA_2048", "--no-register", "--wait", "--poll", "200ms"); code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("rotate of an AWS_KMS key: exit %d", code)
	}

	// history: the import, its token, the evidence (a gap before the first import).
	out, _, code = c.run(t, "history", "--key", alias, "--since", "1h")
	if code != 0 || !strings.Contains(out, "import") || !strings.Contains(out, "token") || !strings.Contains(out, "GAP ") {
		t.Errorf("history: exit %d", code)
	}
	// status --check: healthy over 1 day (KMS agrees with the registry), expiring over 40.
	if _, _, code := c.run(t, "status", "--check", "--days", "1"); code != 0 {
		t.Errorf("status --check --days 1: exit %d", code)
	}
	if out, _, code := c.run(t, "status", "--check", "--days", "40", "--key", alias); code != 1 || !strings.Contains(out, "expiring") {
		t.Errorf("status --check --days 40: exit %d", code)
	}
	// selftest: a throwaway key and secret, one rotation, verified, cleaned up.
	out, _, code = c.run(t, "selftest", "--wrapping-key-spec", "RSA_2048", "--poll", "200ms")
	if code != 0 || !strings.Contains(out, "selftest passed") || !strings.Contains(out, "scheduled the throwaway key for deletion") || !strings.Contains(out, "deleted the secret") {
		t.Errorf("selftest: exit %d", code)
	}
	// plan: nothing due right after the renewal.
	if _, _, code := c.run(t, "plan", "--detailed-exitcode"); code != 0 {
		t.Errorf("plan --detailed-exitcode: exit %d, want 0", code)
	}
}

package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// TestRegisterAndStackUpOnLocalStack, on one local stack started as `make
// stack-up` starts it (samples, the Step Functions stand-in):
//   - register's checks with the built command: a missing secret, 16 bytes
//     for a symmetric key, a key without the managed tag, a secret outside
//     SecretNamePrefix each exit 2 naming the problem, and the registry is
//     unchanged; --dry-run writes nothing; a good registration writes;
//     deregister --key alias/... removes it;
//   - the stack's env (what `source .local/stack/env` exports) is enough
//     for `kms-reimport rotate --wait`;
//   - `make execute SM=FleetStateMachine` exits 0 for a fleet run with
//     nothing failed and non-zero once a rotation in it fails.
func TestRegisterAndStackUpOnLocalStack(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "stack")
	st, err := stack.Up(ctx, stack.Options{Root: root, Dir: dir, Samples: true, StepFunctions: true, Log: t.Logf})
	if err != nil {
		t.Fatalf("starting the local stack (make tools first; never skipped): %v", err)
	}
	t.Cleanup(func() { _ = st.Down() })
	envFile, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"export AWS_ENDPOINT_URL_SFN=", "export STATE_MACHINE_ARN=\"arn:aws:states:"} {
		if !strings.Contains(string(envFile), w) {
			t.Fatalf("the env file lacks %q:\n%s", w, envFile)
		}
	}
	// status asks STS the caller's account (GetCallerIdentity): moto answers it.
	c := opsCLI{bin: cliBin, env: append(st.ClientEnv(), "AWS_ENDPOINT_URL_STS="+st.Secrets)}
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kc, sc := kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	store := &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: st.Table}
	registered := func() []string {
		t.Helper()
		all, err := store.All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var arns []string
		for _, e := range all {
			arns = append(arns, e.KeyARN)
		}
		slices.Sort(arns)
		return arns
	}
	key := func(tags []kmstypes.Tag) string {
		k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		return *k.KeyMetadata.Arn
	}
	secret := func(name string, n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		if _, err := sc.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretBinary: b}); err != nil {
			t.Fatal(err)
		}
		return name
	}
	tagged, untagged := key(stack.ManagedKeyTags()), key(nil)
	good, short, outside := secret("kms-reimport/reg-good", 32), secret("kms-reimport/reg-short", 16), secret("other/reg-outside", 32)
	policy := []string{"--valid-for", "30d", "--wrapping-key-spec", "RSA_2048"}

	before := registered()
	for _, r := range []struct {
		name, key, secret string
		says              []string
	}{
		{"missing secret", tagged, "kms-reimport/reg-missing", []string{"kms-reimport/reg-missing"}},
		{"16 bytes for a symmetric key", tagged, short, []string{"16", "32"}},
		{"key without the managed tag", untagged, good, []string{"kms-reimport:managed", "missing"}},
		{"secret outside SecretNamePrefix", tagged, outside, []string{"other/reg-outside", "SecretNamePrefix"}},
	} {
		_, errOut, code := c.run(t, append([]string{"register", "--key", r.key, "--secret", r.secret}, policy...)...)
		for _, w := range r.says {
			if !strings.Contains(errOut, w) {
				t.Errorf("register, %s: the error does not name %q: %s", r.name, w, errOut)
			}
		}
		if code != 2 {
			t.Errorf("register, %s: exit %d, want 2", r.name, code)
		}
		if after := registered(); !slices.Equal(after, before) {
			t.Fatalf("register, %s: the registry changed: %v, was %v", r.name, after, before)
		}
	}
	if out, _, code := c.run(t, append([]string{"register", "--key", tagged, "--secret", good, "--dry-run"}, policy...)...); code != 0 || !strings.Contains(out, "nothing registered") {
		t.Errorf("register --dry-run: exit %d: %s", code, out)
	}
	if after := registered(); !slices.Equal(after, before) {
		t.Fatalf("register --dry-run wrote to the registry: %v", after)
	}
	if _, errOut, code := c.run(t, append([]string{"register", "--key", tagged, "--secret", good}, policy...)...); code != 0 || !slices.Contains(registered(), tagged) {
		t.Fatalf("register: exit %d, %s; registry %v", code, errOut, registered())
	}
	if _, err := kc.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/reg-good"), TargetKeyId: &tagged}); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := c.run(t, "deregister", "--key", "alias/reg-good"); code != 0 || !strings.Contains(out, tagged) || slices.Contains(registered(), tagged) {
		t.Fatalf("deregister --key alias/reg-good: exit %d, %s%s; registry %v", code, out, errOut, registered())
	}

	// rotate --wait with nothing but the stack's env: its Step Functions stand-in.
	out, _, code := c.run(t, "rotate", "--key", st.Sample.Alias, "--secret", st.Sample.SecretID, "--valid-for", "30d", "--wrapping-key-spec", "RSA_2048", "--wait", "--poll", "200ms")
	if code != 0 || !strings.Contains(out, "RENEWED in") {
		t.Fatalf("rotate --wait on the stack's env: exit %d", code)
	}

	// make execute SM=FleetStateMachine: nothing due, exit 0; a due key
	// whose secret is gone fails its rotation: exit non-zero.
	input := filepath.Join(t.TempDir(), "fleet.json")
	if err := os.WriteFile(input, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := makeExecute(t, root, dir, input); code != 0 {
		t.Fatalf("make execute SM=FleetStateMachine, nothing failed: exit %d\n%s", code, out)
	}
	if _, errOut, code := c.run(t, append([]string{"register", "--key", tagged, "--secret", good}, policy...)...); code != 0 {
		t.Fatalf("register: exit %d, %s", code, errOut)
	}
	if _, err := sc.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String(good), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	out, code = makeExecute(t, root, dir, input)
	if code == 0 || !strings.Contains(out, "1 rotation(s) failed") || !strings.Contains(out, tagged) {
		t.Fatalf("make execute SM=FleetStateMachine with a failed rotation: exit %d, want non-zero naming the key\n%s", code, out)
	}
}

// makeExecute runs `make execute INPUT=... SM=FleetStateMachine` on the
// stack in dir: its output (stdout and stderr) and exit code.
func makeExecute(t *testing.T, root, dir, input string) (string, int) {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "-s", "execute", "INPUT="+input, "SM=FleetStateMachine", "STACK_DIR="+dir)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if x, ok := err.(*exec.ExitError); ok {
		code = x.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("$ make execute INPUT=%s SM=FleetStateMachine  (exit %d)\n%s", input, code, out.String())
	return out.String(), code
}

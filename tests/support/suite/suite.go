// Package suite boots a test suite's local stack the one way every suite
// needs it: the emulators installed (never skipped: a missing tool fails
// and says how to install it), a stack in a directory of its own, SDK
// clients pointed at it, the tests, then a leak check of every log the
// stack wrote against every secret the tests registered, whatever order
// the tests ran in; the logs are kept when anything failed.
package suite

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// Suite is a running stack and its clients.
type Suite struct {
	Name  string
	Root  string
	Stack *stack.Stack
	KMS   *kms.Client
	SM    *secretsmanager.Client
	DB    *dynamodb.Client

	mu      sync.Mutex
	secrets [][]byte
}

// Secret registers bytes that must never appear in a log of the stack:
// key material, import tokens.
func (s *Suite) Secret(b []byte) {
	s.mu.Lock()
	s.secrets = append(s.secrets, append([]byte(nil), b...))
	s.mu.Unlock()
}

// Run is a suite's TestMain body: os.Exit(suite.Run(m, "rotation", opts,
// ready)). o.Root and o.Dir are filled in; ready (optional) gets the
// running suite before the tests run.
func Run(m *testing.M, name string, o stack.Options, ready func(*Suite) error) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "tests/"+name+": "+format+"\n", a...)
		return 1
	}
	root, err := stack.RepoRoot()
	if err != nil {
		return fail("%v", err)
	}
	tools := stack.Tools(root)
	need := []string{"bin/aws-lambda-rie", "dynamodb/DynamoDBLocal.jar", "node22/bin/node"}
	if o.KMS != stack.KMSStandIn {
		need = append(need, "bin/local-kms")
	}
	for _, p := range need {
		if _, err := os.Stat(filepath.Join(tools, p)); err != nil {
			return fail("%s is missing: run `make tools` first; these tests need the local stack and are never skipped", filepath.Join(tools, p))
		}
	}
	if _, err := os.Stat(filepath.Join(root, "infra/local/sfn/node_modules/aws-local-stepfunctions")); err != nil {
		return fail("infra/local/sfn/node_modules is missing: run `make tools` first")
	}
	for _, c := range []string{"moto_server", "java", "go"} {
		if _, err := exec.LookPath(c); err != nil {
			return fail("%s is not on PATH: run `make tools` first (infra/local/install.sh says how to get it)", c)
		}
	}
	dir, err := os.MkdirTemp("", "kms-reimport-"+name+"-")
	if err != nil {
		return fail("%v", err)
	}
	o.Root, o.Dir = root, dir
	if o.Log == nil {
		o.Log = func(f string, a ...any) { fmt.Fprintf(os.Stderr, name+": "+f+"\n", a...) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Up(ctx, o)
	if err != nil {
		return fail("starting the local stack: %v (logs in %s)", err, filepath.Join(dir, "logs"))
	}
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		_ = st.Down()
		return fail("%v", err)
	}
	s := &Suite{Name: name, Root: root, Stack: st, KMS: kms.NewFromConfig(cfg), SM: secretsmanager.NewFromConfig(cfg), DB: dynamodb.NewFromConfig(cfg)}
	if ready != nil {
		if err := ready(s); err != nil {
			_ = st.Down()
			return fail("%v", err)
		}
	}
	code := m.Run()
	if code == 0 {
		code = s.leakCheck(dir)
	}
	_ = st.Down()
	if code == 0 && os.Getenv("KEEP_STACK_DIR") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "tests/%s: stack logs kept in %s\n", name, filepath.Join(dir, "logs"))
	}
	return code
}

// Encodings are the forms a secret could take in a log line.
func Encodings(b []byte) []string {
	return []string{hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b), string(b)}
}

// leakCheck looks for every registered secret in every log of the stack.
func (s *Suite) leakCheck(dir string) int {
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	if len(logs) == 0 {
		fmt.Fprintf(os.Stderr, "tests/%s: no stack logs to check for leaks\n", s.Name)
		return 1
	}
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		for _, secret := range s.secrets {
			for _, enc := range Encodings(secret) {
				if len(enc) >= 16 && strings.Contains(string(b), enc) {
					fmt.Fprintf(os.Stderr, "tests/%s: a secret (key material or import token) leaked into %s\n", s.Name, f)
					return 1
				}
			}
		}
	}
	return 0
}

// Package integration runs the rotation state machine end to end on the
// local stack: local-kms, DynamoDB Local, moto's Secrets Manager, every
// function under the Lambda Runtime Interface Emulator, and the definition
// of template.yaml under aws-local-stepfunctions. The stack is started by
// TestMain and stopped when the tests end.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

var (
	root string
	st   *stack.Stack
	kc   *kms.Client
	sm   *secretsmanager.Client
	db   *dynamodb.Client
	toks *records.Tokens
	aud  *records.Imports
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	root, err = filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kms-reimport-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Never skipped: a missing emulator is a failure that says how to fix it.
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local stack: %v\n(run `make tools` to install the emulators)\n", err)
		return 1
	}
	defer func() {
		_ = st.Down()
		if os.Getenv("KEEP_STACK_DIR") == "" {
			_ = os.RemoveAll(dir)
		}
	}()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, sm, db = kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), dynamodb.NewFromConfig(cfg)
	toks = &records.Tokens{DB: db, Table: st.Table}
	aud = &records.Imports{DB: db, Table: st.Table}
	return m.Run()
}

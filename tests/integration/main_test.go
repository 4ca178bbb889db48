// Package integration runs the rotation state machine end to end on the
// local stack: local-kms, DynamoDB Local, moto's Secrets Manager, every
// function under the Lambda Runtime Interface Emulator, and the definition
// of template.yaml under aws-local-stepfunctions. The stack is started by
// TestMain and stopped when the tests end.
package integration

import (
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/tests/support/suite"
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

// S is the running suite; its leak check covers every secret remembered.
var S *suite.Suite

func TestMain(m *testing.M) {
	os.Exit(suite.Run(m, "integration", stack.Options{}, func(s *suite.Suite) error {
		S, root, st, kc, sm, db = s, s.Root, s.Stack, s.KMS, s.SM, s.DB
		toks = &records.Tokens{DB: db, Table: st.Table}
		aud = &records.Imports{DB: db, Table: st.Table}
		return nil
	}))
}

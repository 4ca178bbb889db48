// Package iam (local-kms, which wraps with RSA_2048 only) shows the local stack's IAM gate denying what AWS would
// deny: one stack whose roles come from a copy of template.yaml with one
// action removed (kms:ImportKeyMaterial from ImportMaterialRole), on which
// a rotation fails with AccessDenied named in its failure record; and the
// two deliberate denials of the template: a key without the managed-key
// tag, and Decrypt without the verification's encryption context.
package iam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/tests/support/suite"
)

var (
	S   *suite.Suite
	aud *records.Imports
)

// removed is the permission the mutated template lacks: the one statement
// of ImportMaterialRole on KMS, its action swapped for one the stage never
// calls (the statement stays valid JSON).
const (
	removedFrom = `"Sid": "ManagedKeys",
                    "Effect": "Allow",
                    "Action": ["kms:ImportKeyMaterial", "kms:ListKeyRotations"],`
	removedTo = `"Sid": "ManagedKeys",
                    "Effect": "Allow",
                    "Action": ["kms:GetKeyRotationStatus", "kms:ListKeyRotations"],`
)

func TestMain(m *testing.M) {
	root, err := stack.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/iam:", err)
		os.Exit(1)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/iam:", err)
		os.Exit(1)
	}
	if strings.Count(string(tmpl), removedFrom) != 1 {
		fmt.Fprintln(os.Stderr, "tests/iam: ImportMaterialRole's kms:ImportKeyMaterial statement is not where this test removes it: update removedFrom")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "kms-reimport-iam-template-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/iam:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	mutated := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(mutated, []byte(strings.Replace(string(tmpl), removedFrom, removedTo, 1)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "tests/iam:", err)
		os.Exit(1)
	}
	os.Exit(suite.Run(m, "iam", stack.Options{PolicyTemplate: mutated}, func(s *suite.Suite) error {
		S, aud = s, &records.Imports{DB: s.DB, Table: s.Stack.Table}
		return nil
	}))
}

func key(t *testing.T, tags []kmstypes.Tag) string {
	t.Helper()
	out, err := S.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{Tags: tags, Origin: kmstypes.OriginTypeExternal, Description: aws.String(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	return *out.KeyMetadata.Arn
}

func secret(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("kms-reimport/iam-%d", time.Now().UnixNano())
	m := make([]byte, 32)
	for i := range m {
		m[i] = byte(i*7 + 1)
	}
	S.Secret(m)
	if _, err := S.SM.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: &name, SecretBinary: m}); err != nil {
		t.Fatal(err)
	}
	return name
}

func run(t *testing.T, in map[string]any) *stack.Execution {
	t.Helper()
	b, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ex, err := S.Stack.Execute(ctx, S.Root, b, stack.ExecuteOptions{WaitScale: "0.01"})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	return ex
}

// failureRecord is the execution's one failed import record.
func failureRecord(t *testing.T, arn string) records.Import {
	t.Helper()
	recs, err := aud.List(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Outcome != records.ImportFailed {
		t.Fatalf("import records of %s: %+v, want one failed", arn, recs)
	}
	return recs[0]
}

// A removed permission is caught: the rotation fails at the import stage
// with AccessDenied for kms:ImportKeyMaterial, and its failure record says
// so.
func TestRemovedActionFailsRotation(t *testing.T) {
	arn := key(t, stack.ManagedKeyTags())
	ex := run(t, map[string]any{"keyId": arn, "secretId": secret(t), "validFor": "24h", "wrappingKeySpec": "RSA_2048"})
	if ex.Status != "FAILED" {
		t.Fatalf("execution %s, want FAILED: the role lacks kms:ImportKeyMaterial", ex.Status)
	}
	rec := failureRecord(t, arn)
	if rec.ErrorName != flow.AccessDenied {
		t.Errorf("failure recorded as %q, want %s (a denial is named, not Internal)", rec.ErrorName, flow.AccessDenied)
	}
	for _, want := range []string{"AccessDenied", "kms:ImportKeyMaterial", "ImportMaterialRole"} {
		if !strings.Contains(rec.Cause, want) {
			t.Errorf("failure record cause does not name %s: %q (error %s, stage %s)", want, rec.Cause, rec.ErrorName, rec.Stage)
		}
	}
	if rec.Stage != "import-material" {
		t.Errorf("failure recorded at stage %q, want import-material", rec.Stage)
	}
	md, err := S.KMS.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil || md.KeyMetadata.KeyState != kmstypes.KeyStatePendingImport {
		t.Fatalf("key after a denied import: %+v %v, want PendingImport", md, err)
	}
}

// The tag condition of every KMS statement: a key without the managed-key
// tag is refused at the first call, DescribeKey in the fetch stage.
func TestUntaggedKeyDenied(t *testing.T) {
	arn := key(t, nil)
	ex := run(t, map[string]any{"keyId": arn, "secretId": secret(t), "validFor": "24h", "wrappingKeySpec": "RSA_2048"})
	if ex.Status != "FAILED" {
		t.Fatalf("execution %s, want FAILED: the key is not tagged kms-reimport:managed=true", ex.Status)
	}
	if ex.Error != flow.AccessDenied {
		t.Errorf("execution error %q, want %s", ex.Error, flow.AccessDenied)
	}
	if !strings.Contains(ex.Cause, "kms:DescribeKey") || !strings.Contains(ex.Cause, "AccessDenied") {
		t.Errorf("cause does not name the denied kms:DescribeKey: %s", ex.Cause)
	}
}

// The verification's Decrypt is allowed only with its encryption context:
// the verify stage's role, called through its gate, may not Decrypt
// without it (nor with another purpose), and may with it.
func TestDecryptNeedsVerificationContext(t *testing.T) {
	ctx := context.Background()
	out, err := S.KMS.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	arn := *out.KeyMetadata.Arn
	// The decision comes before KMS looks at the ciphertext (or at the
	// key's state): an allowed request gets KMS's own error, never
	// AccessDeniedException.
	cfg, err := S.Stack.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verify := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(S.Stack.Gate["VerifyImportFunction"]) })
	execution := fmt.Sprintf("arn:aws:states:%s:%s:execution:RotationStateMachine:x", S.Stack.Region, stack.Account)
	for name, c := range map[string]struct {
		ec     map[string]string
		denied bool
	}{
		"no context":    {nil, true},
		"other purpose": {map[string]string{"purpose": "other", "execution": execution}, true},
		"extra key":     {map[string]string{"purpose": "kms-reimport verification", "execution": execution, "x": "y"}, true},
		"verification":  {map[string]string{"purpose": "kms-reimport verification", "execution": execution}, false},
	} {
		_, err := verify.Decrypt(ctx, &kms.DecryptInput{KeyId: &arn, CiphertextBlob: []byte("not a ciphertext"), EncryptionContext: c.ec})
		var ae smithy.APIError
		isDenied := errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException"
		if isDenied != c.denied {
			t.Errorf("%s: Decrypt as VerifyImportFunction: %v, want denied=%v", name, err, c.denied)
		}
		if isDenied && (!strings.Contains(ae.ErrorMessage(), "kms:Decrypt") || !strings.Contains(ae.ErrorMessage(), arn) || !strings.Contains(ae.ErrorMessage(), "VerifyImportRole")) {
			t.Errorf("%s: AccessDeniedException message does not name role, action and key: %s", name, ae.ErrorMessage())
		}
	}
}

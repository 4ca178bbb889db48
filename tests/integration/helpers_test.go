package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

var seq atomic.Int64

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

// externalKey creates a SYMMETRIC_DEFAULT key with origin EXTERNAL.
func externalKey(t *testing.T) string {
	t.Helper()
	out, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal, Description: aws.String(t.Name())})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if out.KeyMetadata.KeyState != kmstypes.KeyStatePendingImport {
		t.Fatalf("new EXTERNAL key is %s, want PendingImport", out.KeyMetadata.KeyState)
	}
	return *out.KeyMetadata.Arn
}

// materialSecret stores material as SecretBinary and returns the name.
// Every material made here is remembered so the leak check can look for it.
func materialSecret(t *testing.T, material []byte) string {
	t.Helper()
	name := uniq("kms-reimport/it")
	if _, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: &name, SecretBinary: material}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	remember(material)
	return name
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// secrets made by the tests: no log line, output or record may contain them.
var secretsSeen [][]byte

func remember(b []byte) {
	secretsSeen = append(secretsSeen, append([]byte(nil), b...))
	S.Secret(b) // and the suite checks every log for it at the end
}

// encodings of b that a leak would most likely take.
func encodings(b []byte) []string {
	return []string{
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		string(b),
	}
}

func assertNoSecretsIn(t *testing.T, where string, text string) {
	t.Helper()
	for _, s := range secretsSeen {
		for _, e := range encodings(s) {
			if len(e) >= 16 && strings.Contains(text, e) {
				t.Errorf("%s contains secret bytes (%d-byte secret)", where, len(s))
			}
		}
	}
}

type input map[string]any

func execute(t *testing.T, in input, o stack.ExecuteOptions) *stack.Execution {
	t.Helper()
	b, _ := json.Marshal(in)
	return executeRaw(t, b, o)
}

func executeRaw(t *testing.T, in []byte, o stack.ExecuteOptions) *stack.Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if o.WaitScale == "" {
		o.WaitScale = "0.01"
	}
	ex, err := st.Execute(ctx, root, in, o)
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	out, _ := json.Marshal(ex)
	assertNoSecretsIn(t, "execution result", string(out))
	return ex
}

func state(t *testing.T, ex *stack.Execution) flow.State {
	t.Helper()
	var s flow.State
	raw := ex.Output
	// The runner gives the output as JSON; tolerate a JSON string too.
	var str string
	if json.Unmarshal(raw, &str) == nil {
		raw = []byte(str)
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("execution output is not a state: %v: %s", err, ex.Output)
	}
	return s
}

func describe(t *testing.T, arn string) *kmstypes.KeyMetadata {
	t.Helper()
	out, err := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		t.Fatalf("DescribeKey: %v", err)
	}
	return out.KeyMetadata
}

func tokenRecords(t *testing.T, arn string) []records.Token {
	t.Helper()
	recs, err := toks.List(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Status != records.TokenIssued && r.Status != records.TokenWrapped && (len(r.ImportToken) > 0 || len(r.EncryptedKeyMaterial) > 0) {
			t.Errorf("token record %s is %s but still holds the token or wrapped material", r.SK, r.Status)
		}
	}
	return recs
}

func importRecords(t *testing.T, arn string) []records.Import {
	t.Helper()
	recs, err := aud.List(context.Background(), arn)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		assertNoSecretsIn(t, "import record", string(b))
	}
	return recs
}

func mustSucceed(t *testing.T, ex *stack.Execution) flow.State {
	t.Helper()
	if ex.Status != "SUCCEEDED" {
		t.Fatalf("execution %s: %s: %s\nstates: %+v", ex.Status, ex.Error, ex.Cause, ex.States)
	}
	return state(t, ex)
}

func mustFail(t *testing.T, ex *stack.Execution, errName string) {
	t.Helper()
	if ex.Status != "FAILED" {
		t.Fatalf("execution %s, want FAILED with %s", ex.Status, errName)
	}
	if ex.Error != errName {
		t.Fatalf("execution failed with %s (%s), want %s", ex.Error, ex.Cause, errName)
	}
}

func materialSecretString(t *testing.T, material []byte) string {
	t.Helper()
	name := uniq("kms-reimport/it")
	s := base64.StdEncoding.EncodeToString(material)
	if _, err := sm.CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{Name: &name, SecretString: &s}); err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	remember(material)
	return name
}

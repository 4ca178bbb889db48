package fetchparameters

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/tests/support/keybuild"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
)

// fakeSecrets answers GetSecretValue from a map: version "v1" of each.
type fakeSecrets map[string]*secretsmanager.GetSecretValueOutput

func (f fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	o, ok := f[*in.SecretId]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("no such secret")}
	}
	c := *o
	c.SecretBinary = append([]byte(nil), o.SecretBinary...)
	return &c, nil
}

func (f fakeSecrets) PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	return nil, errors.New("this test stores no secret")
}

func binSecret(b []byte) *secretsmanager.GetSecretValueOutput {
	return &secretsmanager.GetSecretValueOutput{SecretBinary: b, VersionId: aws.String("v1")}
}

func strSecret(s string) *secretsmanager.GetSecretValueOutput {
	return &secretsmanager.GetSecretValueOutput{SecretString: &s, VersionId: aws.String("v1")}
}

var ctx = context.Background()

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFetchPerKeyType(t *testing.T) {
	srv, client := kmsstandin.Serve(t, kmsstandin.Options{})
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, otherP256, p384 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384())
	sec1, _ := x509.MarshalECPrivateKey(p256)
	sec1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))

	cases := []struct {
		name        string
		spec        types.KeySpec
		usage       types.KeyUsageType
		secret      *secretsmanager.GetSecretValueOutput
		bound       []byte // material already imported (key Enabled)
		input       map[string]any
		wantErr     string // flow error name; "" for success
		wantMsg     string
		wantOps     string // stand-in operations for the key after CreateKey
		wantAlg     string
		wantSpec    string
		wantDefault bool
	}{
		{name: "symmetric defaults", spec: types.KeySpecSymmetricDefault, usage: types.KeyUsageTypeEncryptDecrypt, secret: binSecret(make32()),
			wantOps: "DescribeKey,GetParametersForImport", wantAlg: "RSAES_OAEP_SHA_256", wantSpec: "RSA_4096", wantDefault: true},
		{name: "HMAC_384 chosen algorithm", spec: types.KeySpecHmac384, usage: types.KeyUsageTypeGenerateVerifyMac, secret: binSecret(make([]byte, 48)),
			input:   map[string]any{"wrappingAlgorithm": "RSAES_OAEP_SHA_1", "wrappingKeySpec": "RSA_2048"},
			wantOps: "DescribeKey,GetParametersForImport", wantAlg: "RSAES_OAEP_SHA_1", wantSpec: "RSA_2048"},
		{name: "RSA_2048 defaults", spec: types.KeySpecRsa2048, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, rsa2048)),
			wantOps: "DescribeKey,GetParametersForImport", wantAlg: "RSA_AES_KEY_WRAP_SHA_256", wantSpec: "RSA_4096", wantDefault: true},
		{name: "ECC_NIST_P256 SEC1 PEM", spec: types.KeySpecEccNistP256, usage: types.KeyUsageTypeSignVerify, secret: strSecret(sec1PEM),
			wantOps: "DescribeKey,GetParametersForImport", wantAlg: "RSA_AES_KEY_WRAP_SHA_256", wantSpec: "RSA_4096", wantDefault: true},
		{name: "enabled key, same public key", spec: types.KeySpecEccNistP256, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, p256)), bound: pkcs8(t, p256),
			wantOps: "DescribeKey,GetPublicKey,GetParametersForImport", wantAlg: "RSA_AES_KEY_WRAP_SHA_256", wantSpec: "RSA_4096", wantDefault: true},
		{name: "enabled key, other public key", spec: types.KeySpecEccNistP256, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, otherP256)), bound: pkcs8(t, p256),
			wantErr: flow.InvalidSecret, wantMsg: "differs from the public key of", wantOps: "DescribeKey,GetPublicKey"},
		{name: "HMAC_256 material too short", spec: types.KeySpecHmac256, usage: types.KeyUsageTypeGenerateVerifyMac, secret: binSecret(make([]byte, 16)),
			wantErr: flow.InvalidSecret, wantOps: "DescribeKey"},
		{name: "wrong curve", spec: types.KeySpecEccNistP256, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, p384)),
			wantErr: flow.InvalidSecret, wantOps: "DescribeKey"},
		{name: "wrong modulus", spec: types.KeySpecRsa3072, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, rsa2048)),
			wantErr: flow.InvalidSecret, wantOps: "DescribeKey"},
		{name: "RSA key with RSAES_OAEP", spec: types.KeySpecRsa2048, usage: types.KeyUsageTypeSignVerify, secret: binSecret(pkcs8(t, rsa2048)),
			input:   map[string]any{"wrappingAlgorithm": "RSAES_OAEP_SHA_256", "wrappingKeySpec": "RSA_4096"},
			wantErr: flow.UnsupportedWrapping, wantOps: "DescribeKey"},
		{name: "legacy PKCS1 without opt-in", spec: types.KeySpecSymmetricDefault, usage: types.KeyUsageTypeEncryptDecrypt, secret: binSecret(make32()),
			input:   map[string]any{"wrappingAlgorithm": "RSAES_PKCS1_V1_5", "wrappingKeySpec": "RSA_2048"},
			wantErr: flow.UnsupportedWrapping, wantOps: "DescribeKey"},
		{name: "legacy PKCS1 with opt-in: KMS refuses it", spec: types.KeySpecSymmetricDefault, usage: types.KeyUsageTypeEncryptDecrypt, secret: binSecret(make32()),
			input:   map[string]any{"wrappingAlgorithm": "RSAES_PKCS1_V1_5", "wrappingKeySpec": "RSA_2048", "allowLegacyWrapping": true},
			wantErr: flow.UnsupportedWrapping, wantMsg: "ValidationException", wantOps: "DescribeKey,GetParametersForImport"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck, err := client.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: c.spec, KeyUsage: c.usage})
			if err != nil {
				t.Fatal(err)
			}
			arn := *ck.KeyMetadata.Arn
			if c.bound != nil {
				keybuild.ImportInto(t, client, arn, c.spec, c.bound)
			}
			srv.Advance(2 * time.Second) // past the stand-in's stale-read window (a key just created reads as missing)
			srv.ResetRequests()
			in := map[string]any{"keyId": arn, "secretId": "s", "validFor": "720h", "register": false}
			for k, v := range c.input {
				in[k] = v
			}
			raw, _ := json.Marshal(in)
			tokens := &memTokens{}
			st := &Stage{KMS: kmsaccess.Single{API: client}, Secrets: fakeSecrets{"s": c.secret}, Tokens: tokens,
				Leases: &memLeases{}, Materials: memMaterials{},
				Settings: settings.Settings{MaxTokenFetches: 3, DefaultValidFor: 720 * time.Hour}}
			out, err := st.Run(ctx, flow.State{Input: raw, Execution: flow.Execution{ID: "exec-1"}})
			if got := flow.NameOf(err); (err == nil) != (c.wantErr == "") || (err != nil && got != c.wantErr) {
				t.Fatalf("error %v (%s), want %q", err, got, c.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), c.wantMsg) {
				t.Fatalf("error %q does not say %q", err, c.wantMsg)
			}
			if ops := strings.Join(srv.OperationsFor(arn), ","); ops != c.wantOps {
				t.Fatalf("KMS requests %s, want %s", ops, c.wantOps)
			}
			recs := tokens.list(arn)
			if c.wantErr != "" {
				if len(recs) != 0 {
					t.Fatal("a token record was written for a refused request")
				}
				return
			}
			if w := out.Plan.Wrapping; w.Algorithm != c.wantAlg || w.KeySpec != c.wantSpec || w.Defaulted != c.wantDefault || out.Plan.SecretVersionID != "v1" {
				t.Fatalf("plan after fetch: wrapping %+v, secret version %q", w, out.Plan.SecretVersionID)
			}
			if r := out.Request; r.SecretVersionID != "" || r.WrappingAlgorithm != c.input["wrappingAlgorithm"] && r.WrappingAlgorithm != "" {
				t.Fatalf("request changed by the stage: %+v", r)
			}
			if tok := out.Progress.Token; tok == nil || tok.Fetches != 1 || len(recs) != 1 || recs[0].SK != tok.ID || recs[0].WrappingAlgorithm != c.wantAlg {
				t.Fatalf("progress %+v, token records %+v", out.Progress, recs)
			}
		})
	}
}

func make32() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// TestFetchPasses: the first pass plans and fetches; a later pass (fresh
// parameters for the same item) counts its fetches, up to the limit; a
// key whose lease another execution holds is RotationInProgress.
func TestFetchPasses(t *testing.T) {
	srv, client := kmsstandin.Serve(t, kmsstandin.Options{})
	ck, err := client.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	arn := *ck.KeyMetadata.Arn
	srv.Advance(2 * time.Second)
	tokens, leases := &memTokens{}, &memLeases{}
	st := &Stage{KMS: kmsaccess.Single{API: client}, Secrets: fakeSecrets{"s": binSecret(make32())}, Tokens: tokens, Leases: leases,
		Materials: memMaterials{}, Settings: settings.Settings{MaxTokenFetches: 2, DefaultValidFor: 720 * time.Hour}}
	raw, _ := json.Marshal(map[string]any{"keyId": arn, "secretId": "s", "validFor": "720h", "register": false})
	if err := leases.Acquire(ctx, arn, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Run(ctx, flow.State{Input: raw, Execution: flow.Execution{ID: "exec-1"}}); flow.NameOf(err) != flow.RotationInProgress {
		t.Fatalf("lease held by another execution: %v", err)
	}
	_ = leases.Release(ctx, arn, "other")
	s, err := st.Run(ctx, flow.State{Input: raw, Execution: flow.Execution{ID: "exec-1"}})
	if err != nil || s.Plan == nil || len(s.Plan.Items) != 1 || s.Progress.Token == nil || !s.Progress.Pending {
		t.Fatalf("first pass: %v %+v", err, s.Progress)
	}
	first := s.Progress.Token.ID
	s, err = st.Run(ctx, s)
	if err != nil || s.Progress.Token.Fetches != 2 || s.Progress.Token.ID == first || len(tokens.list(arn)) != 2 || s.Plan.Items[0].TokenID != "" {
		t.Fatalf("second fetch: %v, progress %+v, item %+v", err, s.Progress.Token, s.Plan.Items[0])
	}
	if _, err := st.Run(ctx, s); flow.NameOf(err) != flow.TokenRefreshLimitExceeded {
		t.Fatalf("third fetch with a limit of 2: %v", err)
	}
	if leases.owners[arn] != "" {
		t.Fatalf("a failed fetch kept the lease: %q", leases.owners[arn])
	}
}

package wrapmaterial

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	kwp "github.com/tink-crypto/tink-go/v2/kwp/subtle"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

type oneSecret struct {
	out secretsmanager.GetSecretValueOutput
}

func (o oneSecret) GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	c := o.out
	c.SecretBinary = append([]byte(nil), o.out.SecretBinary...)
	return &c, nil
}

func TestWrapPerAlgorithm(t *testing.T) {
	ctx := context.Background()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	rsaMaterial, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaMaterial)
	sym := bytes.Repeat([]byte{0x42}, 32)

	cases := []struct {
		name    string
		spec    string
		alg     string
		secret  []byte
		legacy  bool
		wantErr string
	}{
		{"symmetric OAEP SHA-256", "SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_256", sym, false, ""},
		{"HMAC OAEP SHA-1", "HMAC_256", "RSAES_OAEP_SHA_1", sym, false, ""},
		{"RSA private key AES key wrap", "RSA_2048", "RSA_AES_KEY_WRAP_SHA_256", rsaDER, false, ""},
		{"legacy PKCS1 with opt-in", "SYMMETRIC_DEFAULT", "RSAES_PKCS1_V1_5", sym, true, ""},
		{"legacy PKCS1 without opt-in", "SYMMETRIC_DEFAULT", "RSAES_PKCS1_V1_5", sym, false, flow.UnsupportedWrapping},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := memTokens{}
			arn := "arn:aws:kms:eu-west-2:111122223333:key/k"
			now := time.Now().UTC()
			rec := records.Token{KeyARN: arn, TokenID: "id", WrappingAlgorithm: c.alg, WrappingKeySpec: "RSA_2048", IssuedAt: now,
				ParametersValidTo: now.Add(24 * time.Hour), ExecutionID: "e", Status: records.TokenIssued, SecretVersionID: "v1",
				PublicKey: pubDER, ImportToken: []byte("token")}
			rec.SK = records.TokenSK(now, "id")
			store[rec.SK] = &rec
			st := &Stage{Secrets: oneSecret{secretsmanager.GetSecretValueOutput{SecretBinary: c.secret, VersionId: aws.String("v1")}}, Tokens: store}
			s := flow.State{Execution: flow.Execution{ID: "e"}, Request: &flow.Request{SecretID: "s", Choices: flow.Choices{AllowLegacyWrapping: c.legacy}},
				Key:      &flow.Key{ARN: arn, KeySpec: c.spec},
				Plan:     &flow.Plan{Items: []flow.PlanItem{{KeyARN: arn, SecretVersionID: "v1"}}},
				Progress: &flow.Progress{Pending: true, Token: &flow.TokenRef{ID: rec.SK, Fetches: 1}}}
			out, err := st.Run(ctx, s)
			if c.wantErr != "" {
				got := store[rec.SK]
				if flow.NameOf(err) != c.wantErr || got.Status != records.TokenIssued || len(got.EncryptedKeyMaterial) != 0 {
					t.Fatalf("got %v, want %s and the token record unchanged (%+v)", err, c.wantErr, got)
				}
				if strings.Contains(err.Error(), string(c.secret)) {
					t.Fatal("the error holds the material")
				}
				return
			}
			if err != nil || !out.Progress.Token.Wrapped {
				t.Fatalf("Run: %v", err)
			}
			got := store[rec.SK]
			if got.Status != records.TokenWrapped || got.SecretVersionID != "v1" {
				t.Fatalf("token record after the wrap: %+v", got)
			}
			enc := got.EncryptedKeyMaterial
			if got := unwrapLocally(t, priv, c.alg, enc); !bytes.Equal(got, c.secret) {
				t.Fatal("the wrapped material does not unwrap to the secret's material")
			}
		})
	}
}

// unwrapLocally undoes each algorithm with the standard library and tink.
func unwrapLocally(t *testing.T, priv *rsa.PrivateKey, alg string, enc []byte) []byte {
	t.Helper()
	var h hash.Hash = sha256.New()
	if strings.HasSuffix(alg, "SHA_1") {
		h = sha1.New()
	}
	switch {
	case alg == "RSAES_PKCS1_V1_5":
		//lint:ignore SA1019 checking the legacy opt-in's output
		out, err := rsa.DecryptPKCS1v15(nil, priv, enc)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case strings.HasPrefix(alg, "RSAES_OAEP"):
		out, err := rsa.DecryptOAEP(h, nil, priv, enc, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	k, err := rsa.DecryptOAEP(h, nil, priv, enc[:priv.Size()], nil)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := kwp.NewKWP(k)
	out, err := w.Unwrap(enc[priv.Size():])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

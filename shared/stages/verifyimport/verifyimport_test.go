package verifyimport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/tests/support/keybuild"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
)

var ctx = context.Background()

type oneSecret []byte

func (o oneSecret) GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return &secretsmanager.GetSecretValueOutput{SecretBinary: append([]byte(nil), o...), VersionId: aws.String("v1")}, nil
}

func pkcs8(t *testing.T, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ec(t *testing.T, c elliptic.Curve) []byte {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pkcs8(t, k)
}

func TestProofPerKeyType(t *testing.T) {
	srv, client := kmsstandin.Serve(t, kmsstandin.Options{})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER := pkcs8(t, rsaKey)
	hmacBytes := keybuild.Random(64)
	p256 := ec(t, elliptic.P256())
	cases := []struct {
		name     string
		spec     types.KeySpec
		usage    types.KeyUsageType
		imported []byte
		secret   []byte // what the secret version holds now
		wantErr  string
		proof    string
		ops      string
	}{
		{"symmetric", types.KeySpecSymmetricDefault, types.KeyUsageTypeEncryptDecrypt, keybuild.Random(32), nil, "", "Encrypt/Decrypt round trip", "DescribeKey,ListKeyRotations,Encrypt,Decrypt"},
		{"HMAC_512", types.KeySpecHmac512, types.KeyUsageTypeGenerateVerifyMac, hmacBytes, hmacBytes, "", "GenerateMac (HMAC_SHA_512) of a 32-byte random message equals a local HMAC", "DescribeKey,GenerateMac"},
		{"HMAC_224 other material", types.KeySpecHmac224, types.KeyUsageTypeGenerateVerifyMac, keybuild.Random(28), keybuild.Random(28), flow.VerificationFailed, "", "DescribeKey,GenerateMac"},
		{"RSA_2048 sign", types.KeySpecRsa2048, types.KeyUsageTypeSignVerify, rsaDER, rsaDER, "", "GetPublicKey equals the public key of the material of secret version v1; Sign (RSASSA_PSS_SHA_256)", "DescribeKey,GetPublicKey,Sign"},
		{"RSA_2048 encrypt", types.KeySpecRsa2048, types.KeyUsageTypeEncryptDecrypt, rsaDER, rsaDER, "", "encrypted locally (RSAES_OAEP_SHA_256) decrypts in KMS", "DescribeKey,GetPublicKey,Decrypt"},
		{"ECC_NIST_P256", types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, p256, p256, "", "Sign (ECDSA_SHA_256)", "DescribeKey,GetPublicKey,Sign"},
		{"ECC_NIST_P384", types.KeySpecEccNistP384, types.KeyUsageTypeSignVerify, ec(t, elliptic.P384()), nil, "", "Sign (ECDSA_SHA_384)", "DescribeKey,GetPublicKey,Sign"},
		{"ECC_NIST_P521", types.KeySpecEccNistP521, types.KeyUsageTypeSignVerify, ec(t, elliptic.P521()), nil, "", "Sign (ECDSA_SHA_512)", "DescribeKey,GetPublicKey,Sign"},
		{"ECC_SECG_P256K1", types.KeySpecEccSecgP256k1, types.KeyUsageTypeSignVerify, keybuild.Secp256k1PKCS8(t), nil, "", "Sign (ECDSA_SHA_256)", "DescribeKey,GetPublicKey,Sign"},
		{"ECC_NIST_P256 other public key", types.KeySpecEccNistP256, types.KeyUsageTypeSignVerify, p256, ec(t, elliptic.P256()), flow.VerificationFailed, "", "DescribeKey,GetPublicKey"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck, err := client.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: c.spec, KeyUsage: c.usage})
			if err != nil {
				t.Fatal(err)
			}
			arn := *ck.KeyMetadata.Arn
			keybuild.ImportInto(t, client, arn, c.spec, c.imported)
			srv.Advance(2 * time.Second) // past the stand-in's stale-read window: this test is about proofs
			srv.ResetRequests()
			secret := c.secret
			if secret == nil {
				secret = c.imported
			}
			imports, reg := &memAudit{}, &memRegistry{}
			st := &Stage{KMS: kmsaccess.Single{API: client}, Secrets: oneSecret(secret), Audit: imports, Tokens: &memTokens{},
				Leases: &memLeases{}, Materials: &memMaterials{}, Registry: reg}
			s := flow.State{
				Execution: flow.Execution{ID: "exec", StartTime: time.Now().UTC().Format(time.RFC3339)},
				Request:   &flow.Request{KeyID: arn, SecretID: "s", SecretVersionID: "v1", Policy: flow.Policy{ExpirationModel: flow.DoesNotExpire}},
				Key:       &flow.Key{ARN: arn, KeySpec: string(c.spec), KeyUsage: string(c.usage), StateBefore: "PendingImport"},
				Import:    &flow.ImportResult{ImportedAt: time.Now(), ExpirationModel: flow.DoesNotExpire},
				Plan: &flow.Plan{Items: []flow.PlanItem{{KeyARN: arn, SecretVersionID: "v1", New: true, TokenID: "tok", Fetches: 1}}, SecretVersionID: "v1",
					Wrapping: flow.Wrapping{Algorithm: "A", KeySpec: "RSA_4096", Defaulted: true}, Targets: []flow.Target{{KeyARN: arn, StateBefore: "PendingImport"}}},
				Progress: &flow.Progress{Item: 1},
			}
			out, err := st.Run(ctx, s)
			recs, lerr := imports.List(ctx, arn)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if ops := strings.Join(srv.OperationsFor(arn), ","); ops != c.ops {
				t.Errorf("KMS requests %s, want %s", ops, c.ops)
			}
			if c.wantErr != "" {
				if flow.NameOf(err) != c.wantErr || len(recs) != 0 {
					t.Fatalf("got %v, want %s and no audit record", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || !strings.Contains(recs[0].Verification, c.proof) || out.Verified.RoundTrip != recs[0].Verification {
				t.Fatalf("audit record %+v, want proof containing %q", recs, c.proof)
			}
			if r := recs[0]; !r.WrappingDefaulted || r.WrappingKeySpec != "RSA_4096" {
				t.Fatalf("audit record %+v", r)
			}
			// Not registered by this execution: the registry is only told of the renewal.
			if len(reg.renewals) != 1 || reg.renewals[0].KeyARN != arn || reg.renewals[0].Register != nil || reg.renewals[0].Execution != "exec" {
				t.Fatalf("registry: %+v, want one renewal of %s that registers nothing", reg.renewals, arn)
			}
		})
	}
}

// TestStaleReadsAreCheckedAgain: right after an import KMS reads may still
// show the key as it was (eventual consistency). The verify stage then
// asks for another pass (plan.recheck) instead of failing, records
// nothing, and succeeds once reads catch up; past its bound it fails with
// VerificationFailed.
func TestStaleReadsAreCheckedAgain(t *testing.T) {
	srv, client := kmsstandin.Serve(t, kmsstandin.Options{StaleReadWindow: 500 * time.Millisecond})
	ck, err := client.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	if err != nil {
		t.Fatal(err)
	}
	arn := *ck.KeyMetadata.Arn
	srv.Advance(time.Second)
	material := keybuild.Random(32)
	keybuild.ImportInto(t, client, arn, types.KeySpecHmac256, material)
	imports := &memAudit{}
	newStage := func(max int) *Stage {
		return &Stage{KMS: kmsaccess.Single{API: client}, Secrets: oneSecret(material), Audit: imports, Tokens: &memTokens{},
			Leases: &memLeases{}, Materials: &memMaterials{}, Registry: &memRegistry{}, MaxChecks: max}
	}
	state := func() flow.State {
		return flow.State{
			Execution: flow.Execution{ID: "exec", StartTime: time.Now().UTC().Format(time.RFC3339)},
			Request:   &flow.Request{KeyID: arn, SecretID: "s", SecretVersionID: "v1", Policy: flow.Policy{ExpirationModel: flow.DoesNotExpire}},
			Key:       &flow.Key{ARN: arn, KeySpec: "HMAC_256", StateBefore: "PendingImport"},
			Plan:      &flow.Plan{Items: []flow.PlanItem{{KeyARN: arn, SecretVersionID: "v1", New: true}}, SecretVersionID: "v1", Targets: []flow.Target{{KeyARN: arn}}},
			Progress:  &flow.Progress{Item: 1},
		}
	}
	// Bounded: one pass allowed, the read is stale, so it fails.
	if _, err := newStage(1).Run(ctx, state()); flow.NameOf(err) != flow.VerificationFailed || !strings.Contains(err.Error(), "PendingImport") {
		t.Fatalf("stale read with one check allowed: %v, want VerificationFailed naming the state", err)
	}
	out, err := newStage(5).Run(ctx, state())
	if err != nil || !out.Plan.Recheck || out.Plan.Checks != 1 || !strings.Contains(out.Plan.Waiting, "PendingImport") {
		t.Fatalf("stale read: %v, plan %+v; want a recheck naming what is not yet so", err, out.Plan)
	}
	if recs, _ := imports.List(ctx, arn); len(recs) != 0 {
		t.Fatalf("%d import records written before the import was verified", len(recs))
	}
	srv.Advance(time.Second) // reads catch up
	out, err = newStage(5).Run(ctx, out)
	if err != nil || out.Plan.Recheck || out.Verified == nil || out.Plan.Checks != 2 {
		t.Fatalf("after reads caught up: %v, plan %+v", err, out.Plan)
	}
	if recs, _ := imports.List(ctx, arn); len(recs) != 1 {
		t.Fatalf("%d import records, want 1", len(recs))
	}
}

// TestMaterialsAndDescribeAgree: each KMS read is eventually consistent on
// its own; a ListKeyRotations that shows the new ValidTo beside a
// DescribeKey that still shows the old one is not yet verified (the stale
// ValidTo would be recorded as the key's).
func TestMaterialsAndDescribeAgree(t *testing.T) {
	arn := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	old, renewed := time.Now().Add(time.Hour).UTC().Truncate(time.Second), time.Now().Add(90*24*time.Hour).UTC().Truncate(time.Second)
	r := &flow.Request{KeyID: arn, Policy: flow.Policy{ExpirationModel: flow.Expires}}
	now := time.Now()
	p := &flow.Plan{Items: []flow.PlanItem{{KeyARN: arn, KeyMaterialID: "m1", ValidTo: &renewed, ImportedAt: &now}}}
	list := []types.RotationsListEntry{{KeyMaterialId: aws.String("m1"), ImportState: types.ImportStateImported, KeyMaterialState: types.KeyMaterialStateCurrent,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &renewed}}
	// A second, older material expiring sooner: DescribeKey's ValidTo is
	// the earliest of all (row 43), not the current one's.
	sooner := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	two := append([]types.RotationsListEntry{{KeyMaterialId: aws.String("m0"), ImportState: types.ImportStateImported, KeyMaterialState: types.KeyMaterialStateNonCurrent,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &sooner}}, list...)
	for _, c := range []struct {
		name    string
		validTo *time.Time
		list    []types.RotationsListEntry
		waiting string
	}{
		{"DescribeKey stale", &old, list, "reads not yet consistent"},
		{"DescribeKey without ValidTo", nil, list, "reads not yet consistent"},
		{"both agree", &renewed, list, ""},
		{"two materials: the earliest", &sooner, two, ""},
		{"two materials: the current one's is not DescribeKey's", &renewed, two, "reads not yet consistent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			md := &types.KeyMetadata{Arn: aws.String(arn), KeyState: types.KeyStateEnabled, ValidTo: c.validTo}
			got := checkMaterials(md, r, p, c.list)
			if (c.waiting == "") != (got == "") || !strings.Contains(got, c.waiting) {
				t.Fatalf("checkMaterials: %q, want %q", got, c.waiting)
			}
		})
	}
}

package fleet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// adoptTag is the stack's AdoptTag: its fleet runs discover.
const adoptTag = "kms-reimport:adopt=true"

// TestDiscoveryAdoptsAndReports: with AdoptTag set, one fleet run
// registers a newly tagged EXTERNAL key whose secret holds its material
// and renews it (KMS enabled, ValidTo the deployment's DefaultValidFor
// ahead), and reports an untagged EXTERNAL key nobody manages whose
// material expires within ExpiryAlarmDays (stats.discovery: its ARN,
// account, Region and ValidTo), leaving it alone.
func TestDiscoveryAdoptsAndReports(t *testing.T) {
	ctx := context.Background()
	stamp := time.Now().UnixNano() % 1e9
	secret := fmt.Sprintf("kms-reimport/adopted-%d", stamp)
	m := make([]byte, 32)
	_, _ = rand.Read(m)
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &secret, SecretBinary: m}); err != nil {
		t.Fatal(err)
	}
	tags := append(stack.ManagedKeyTags(),
		kmstypes.Tag{TagKey: aws.String("kms-reimport:adopt"), TagValue: aws.String("true")},
		kmstypes.Tag{TagKey: aws.String("kms-reimport:secret"), TagValue: aws.String(secret)})
	k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, Tags: tags, Description: aws.String("tagged for adoption")})
	if err != nil {
		t.Fatal(err)
	}
	adopted := *k.KeyMetadata.Arn
	// Nobody's key: untagged, material expiring in 3 days (ExpiryAlarmDays 7).
	u, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, Description: aws.String("unmanaged")})
	if err != nil {
		t.Fatal(err)
	}
	unmanaged := *u.KeyMetadata.Arn
	validTo := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	importExpiring(t, unmanaged, validTo)
	if _, err := reg.Get(ctx, adopted); err == nil {
		t.Fatal("the tagged key is registered before the run")
	}

	ex := fleetRun(t)
	var stats planner.Stats
	if err := json.Unmarshal(ex.Output, &stats); err != nil {
		t.Fatalf("fleet output: %v: %s", err, ex.Output)
	}
	d := stats.Discovery
	if d == nil || d.Adopted < 1 || d.UnmanagedExpiring < 1 || d.Incomplete || len(d.Errors) != 0 {
		t.Fatalf("stats.discovery %+v; want the tagged key adopted and the unmanaged key reported", d)
	}
	i := slices.IndexFunc(d.Unmanaged, func(x planner.Unmanaged) bool { return x.KeyARN == unmanaged })
	if i < 0 {
		t.Fatalf("unmanaged keys %+v do not name %s", d.Unmanaged, unmanaged)
	}
	if x := d.Unmanaged[i]; x.Account != stack.Account || x.Region != st.Region || !x.ValidTo.Equal(validTo) || x.DaysLeft > 3 {
		t.Errorf("unmanaged %+v; want account %s, Region %s, ValidTo %s", x, stack.Account, st.Region, validTo)
	}
	e, err := reg.Get(ctx, adopted)
	if err != nil || e.SecretID != secret || e.WrappingKeySpec != "RSA_2048" {
		t.Fatalf("adopted entry %+v, %v; want secret %s", e, err, secret)
	}
	md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &adopted})
	if err != nil {
		t.Fatal(err)
	}
	if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil || time.Until(*md.KeyMetadata.ValidTo) < 700*time.Hour {
		t.Fatalf("adopted key after the run: %s, ValidTo %v; want renewed for DefaultValidFor (720h)", md.KeyMetadata.KeyState, md.KeyMetadata.ValidTo)
	}
	if _, err := reg.Get(ctx, unmanaged); err == nil {
		t.Error("the unmanaged key was registered")
	}
	um, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &unmanaged})
	if err != nil || !um.KeyMetadata.ValidTo.Equal(validTo) {
		t.Errorf("the unmanaged key changed: %v, %v", um.KeyMetadata.ValidTo, err)
	}
}

// importExpiring imports material into arn that expires at validTo.
func importExpiring(t *testing.T, arn string, validTo time.Time) {
	t.Helper()
	ctx := context.Background()
	alg, ws := kmstypes.AlgorithmSpecRsaesOaepSha256, kmstypes.WrappingKeySpecRsa2048
	p, err := kc.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wrapping.ParsePublicKey(p.PublicKey, ws)
	if err != nil {
		t.Fatal(err)
	}
	m := make([]byte, 32)
	_, _ = rand.Read(m)
	enc, err := wrapping.Wrap(pub, alg, m, nil)
	clear(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: enc,
		ExpirationModel: kmstypes.ExpirationModelTypeKeyMaterialExpires, ValidTo: &validTo}); err != nil {
		t.Fatal(err)
	}
}

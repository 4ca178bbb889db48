package stack

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// What the files of events/ name (infra/local/stack's tests check that they
// agree): a symmetric EXTERNAL key behind SampleAlias, and its material, 32
// random bytes, in SampleSecret at version SampleSecretVersion, the version
// the later-stage samples pin.
const (
	SampleAlias         = "alias/kms-reimport-sample"
	SampleSecret        = "kms-reimport/sample-material"
	SampleSecretVersion = "5b9c6f1e-3d2a-4c8b-9e7f-0a1b2c3d4e5f"
)

// Sample is the sample key and secret of a stack (Options.Samples).
type Sample struct {
	KeyARN          string `json:"keyArn"`
	Alias           string `json:"alias"`
	SecretID        string `json:"secretId"`
	SecretVersionID string `json:"secretVersionId"`
}

// createSamples makes the sample key (PendingImport, no material yet), its
// alias and its secret.
func (st *Stack) createSamples(ctx context.Context) (*Sample, error) {
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	kc := kms.NewFromConfig(cfg)
	k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Tags: ManagedKeyTags(),
		Origin:      kmstypes.OriginTypeExternal,
		KeySpec:     kmstypes.KeySpecSymmetricDefault,
		Description: aws.String("kms-reimport sample (events/)"),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the sample key: %w", err)
	}
	s := &Sample{KeyARN: *k.KeyMetadata.Arn, Alias: SampleAlias, SecretID: SampleSecret, SecretVersionID: SampleSecretVersion}
	if _, err := kc.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(s.Alias), TargetKeyId: &s.KeyARN}); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.Alias, err)
	}
	mat := make([]byte, 32)
	if _, err := rand.Read(mat); err != nil {
		return nil, err
	}
	_, err = secretsmanager.NewFromConfig(cfg).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String(s.SecretID), SecretBinary: mat, ClientRequestToken: aws.String(s.SecretVersionID),
		Description: aws.String("key material of " + s.Alias),
	})
	clear(mat)
	if err != nil {
		return nil, fmt.Errorf("creating the sample secret %s: %w", s.SecretID, err)
	}
	return s, nil
}

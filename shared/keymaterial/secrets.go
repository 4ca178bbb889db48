// ReadSecret reads key material from Secrets Manager and hands it over
// in the canonical form the material package checks.

package keymaterial

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// SecretReader is the part of Secrets Manager this package uses.
type SecretReader interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// ReadSecret returns the material of one secret version, checked against
// keySpec, and the concrete version id read. Exactly one of versionID and
// stage is used (versionID wins). The caller zeroes the material.
func ReadSecret(ctx context.Context, api SecretReader, secretID, versionID, stage string, keySpec types.KeySpec) ([]byte, string, error) {
	in := &secretsmanager.GetSecretValueInput{SecretId: &secretID}
	which := "stage " + stage
	if versionID != "" {
		in.VersionId = &versionID
		which = "version " + versionID
	} else if stage != "" {
		in.VersionStage = &stage
	}
	out, err := api.GetSecretValue(ctx, in)
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, "", flow.Wrap(flow.SecretNotFound, err, "secret %q (%s) not found", secretID, which)
		}
		var ir *smtypes.InvalidRequestException
		if errors.As(err, &ir) {
			return nil, "", flow.Wrap(flow.SecretNotFound, err, "secret %q (%s) cannot be read", secretID, which)
		}
		return nil, "", flow.FromAWS(err, flow.Internal, "GetSecretValue %q (%s)", secretID, which)
	}
	got := ""
	if out.VersionId != nil {
		got = *out.VersionId
	}
	m, err := FromSecret(keySpec, out.SecretBinary, out.SecretString)
	clear(out.SecretBinary)
	out.SecretString = nil
	if err != nil {
		return nil, "", flow.Wrap(flow.InvalidSecret, err, "secret %q version %s does not hold usable material for a %s key", secretID, got, keySpec)
	}
	return m, got, nil
}

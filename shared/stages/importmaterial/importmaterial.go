// Package importmaterial is the third stage: it checks that the import token has
// enough validity left and calls ImportKeyMaterial with the wrapped
// material and the requested expiry.
package importmaterial

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/stages/wrapmaterial"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// KMS is the part of KMS this stage calls.
type KMS interface {
	ImportKeyMaterial(context.Context, *kms.ImportKeyMaterialInput, ...func(*kms.Options)) (*kms.ImportKeyMaterialOutput, error)
}

// Stage imports key material.
type Stage struct {
	KMS              KMS
	Tokens           *records.Tokens
	MinTokenValidity time.Duration
	Now              func() time.Time
	// Regions gives the KMS client of a replica's Region (nil: KMS).
	Regions RegionalKMS
	// Materials records new key material as soon as it is imported.
	Materials *records.Materials
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	if err := wrapmaterial.Needs(s); err != nil {
		return s, err
	}
	if it := s.Plan.Current(); it != nil {
		return st.runItem(ctx, s, it)
	}
	r, k := s.Request, s.Key
	log := telemetry.Logger(ctx)
	rec, err := st.Tokens.Get(ctx, k.ARN, s.Token.ID)
	if err != nil {
		return s, wrapmaterial.TokenErr(err)
	}
	if rec.Status == records.TokenUsed {
		// A retry after a success whose answer was lost: KMS already has
		// the material with this token; don't import twice.
		log.Info("token already used; import was done by an earlier attempt", "tokenId", rec.SK)
		s.Import = &flow.ImportResult{ImportedAt: rec.UpdatedAt, ExpirationModel: r.ExpirationModel, ValidTo: r.ValidTo}
		return s, nil
	}
	if rec.Status != records.TokenWrapped {
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is %s; the import needs a wrapped token", rec.SK, rec.Status)
	}
	now := st.now()
	left := rec.ParametersValidTo.Sub(now)
	if left < st.MinTokenValidity {
		reason := fmt.Sprintf("remaining validity %s is below the required %s", left.Truncate(time.Second), st.MinTokenValidity)
		if err := st.Tokens.MarkExpired(ctx, k.ARN, rec.SK, reason); err != nil {
			return s, wrapmaterial.TokenErr(err)
		}
		log.Warn("import token too close to expiry; fresh parameters needed", "tokenId", rec.SK, "parametersValidTo", rec.ParametersValidTo, "remaining", left.String())
		return s, flow.Errorf(flow.ImportTokenExpiring, "import token %s (valid to %s) has %s left, less than the required %s", rec.SK, rec.ParametersValidTo.Format(time.RFC3339), left.Truncate(time.Second), st.MinTokenValidity)
	}

	in := &kms.ImportKeyMaterialInput{
		KeyId:                &k.ARN,
		ImportToken:          rec.ImportToken,
		EncryptedKeyMaterial: rec.EncryptedKeyMaterial,
		ExpirationModel:      types.ExpirationModelType(r.ExpirationModel),
	}
	if r.ExpirationModel == flow.Expires {
		v := r.ValidTo.UTC().Truncate(time.Second) // KMS wants whole seconds
		in.ValidTo = &v
	}
	_, err = st.KMS.ImportKeyMaterial(ctx, in)
	clear(rec.ImportToken)
	if err != nil {
		return s, st.importFailed(ctx, k.ARN, rec.SK, err)
	}
	if err := st.Tokens.MarkUsed(ctx, k.ARN, rec.SK); err != nil {
		return s, wrapmaterial.TokenErr(err)
	}
	s.Import = &flow.ImportResult{ImportedAt: now.UTC(), ExpirationModel: r.ExpirationModel, ValidTo: in.ValidTo}
	log.Info("key material imported", "tokenId", rec.SK, "expirationModel", r.ExpirationModel, "validTo", in.ValidTo)
	return s, nil
}

// importFailed names a KMS refusal and settles the token record.
func (st *Stage) importFailed(ctx context.Context, arn, sk string, err error) error {
	var (
		expired *types.ExpiredImportTokenException
		invalid *types.InvalidImportTokenException
		wrong   *types.IncorrectKeyMaterialException
		cipher  *types.InvalidCiphertextException
		state   *types.KMSInvalidStateException
		nf      *types.NotFoundException
	)
	var named error
	switch {
	case errors.As(err, &expired):
		named = flow.Wrap(flow.ImportTokenExpiring, err, "ImportKeyMaterial for %s: KMS says token %s expired", arn, sk)
		if e := st.Tokens.MarkExpired(ctx, arn, sk, "KMS: ExpiredImportTokenException"); e != nil {
			return wrapmaterial.TokenErr(e)
		}
		return named
	case errors.As(err, &wrong):
		named = flow.Wrap(flow.IncorrectKeyMaterial, err, "ImportKeyMaterial for %s: the material is not the one already bound to the key", arn)
	case errors.As(err, &invalid):
		named = flow.Wrap(flow.InvalidImportToken, err, "ImportKeyMaterial for %s", arn)
	case errors.As(err, &cipher):
		named = flow.Wrap(flow.InvalidCiphertext, err, "ImportKeyMaterial for %s: KMS could not unwrap the material", arn)
	case errors.As(err, &state), errors.As(err, &nf):
		named = flow.Wrap(flow.KeyNotEligible, err, "ImportKeyMaterial for %s", arn)
	default:
		// Transient errors leave the token as it is: the retried import
		// uses it again.
		named = flow.FromAWS(err, flow.Internal, "ImportKeyMaterial for %s", arn)
		if flow.NameOf(named) == flow.AWSTransient {
			return named
		}
	}
	if e := st.Tokens.MarkFailed(ctx, arn, sk, flow.NameOf(named)+": "+flow.AWSCode(err)); e != nil {
		return wrapmaterial.TokenErr(e)
	}
	return named
}

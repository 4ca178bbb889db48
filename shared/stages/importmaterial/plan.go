package importmaterial

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/stages/wrapmaterial"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// RegionalKMS hands out the KMS client of a Region (replicas).
type RegionalKMS interface {
	For(region string) *kms.Client
}

func (st *Stage) kmsFor(region, home string) KMS {
	if st.Regions == nil || region == "" || region == home {
		return st.KMS
	}
	return st.Regions.For(region)
}

// runItem imports the plan's current item and moves to the next.
func (st *Stage) runItem(ctx context.Context, s flow.State, it *flow.PlanItem) (flow.State, error) {
	r, k, p := s.Request, s.Key, s.Plan
	log := telemetry.Logger(ctx).With("targetKeyArn", it.KeyARN, "region", it.Region, "item", p.Next)
	rec, err := st.Tokens.Get(ctx, k.ARN, s.Token.ID)
	if err != nil {
		return s, wrapmaterial.TokenErr(err)
	}
	if rec.TargetKeyARN != "" && rec.TargetKeyARN != it.KeyARN {
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is for %s, not for the plan's item %s", rec.SK, rec.TargetKeyARN, it.KeyARN)
	}
	now := st.now()
	var validTo *time.Time
	if r.ExpirationModel == flow.Expires {
		v := r.ValidTo.UTC().Truncate(time.Second)
		validTo = &v
	}
	id := it.KeyMaterialID
	switch {
	case rec.Status == records.TokenUsed:
		log.Info("token already used; import was done by an earlier attempt", "tokenId", rec.SK)
		if rec.KeyMaterialID != "" {
			id = rec.KeyMaterialID
		}
		now = rec.UpdatedAt
	case rec.Status != records.TokenWrapped:
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is %s; the import needs a wrapped token", rec.SK, rec.Status)
	default:
		if left := rec.ParametersValidTo.Sub(now); left < st.MinTokenValidity {
			if err := st.Tokens.MarkExpired(ctx, k.ARN, rec.SK, fmt.Sprintf("remaining validity %s is below the required %s", left.Truncate(time.Second), st.MinTokenValidity)); err != nil {
				return s, wrapmaterial.TokenErr(err)
			}
			return s, flow.Errorf(flow.ImportTokenExpiring, "import token %s (valid to %s) has %s left, less than the required %s", rec.SK, rec.ParametersValidTo.Format(time.RFC3339), left.Truncate(time.Second), st.MinTokenValidity)
		}
		in := &kms.ImportKeyMaterialInput{
			KeyId:                &it.KeyARN,
			ImportToken:          rec.ImportToken,
			EncryptedKeyMaterial: rec.EncryptedKeyMaterial,
			ExpirationModel:      types.ExpirationModelType(r.ExpirationModel),
			ValidTo:              validTo,
			ImportType:           types.ImportType(it.ImportType),
		}
		if it.ImportType == flow.ExistingKeyMaterial && it.KeyMaterialID != "" {
			in.KeyMaterialId = &it.KeyMaterialID
		}
		out, err := st.kmsFor(it.Region, kmsaccess.RegionOf(k.ARN)).ImportKeyMaterial(ctx, in)
		clear(rec.ImportToken)
		if err != nil {
			return s, st.importFailed(ctx, k.ARN, rec.SK, err)
		}
		if out.KeyMaterialId != nil && *out.KeyMaterialId != "" {
			id = *out.KeyMaterialId
		}
		if err := st.Tokens.MarkUsedWith(ctx, k.ARN, rec.SK, id); err != nil {
			return s, wrapmaterial.TokenErr(err)
		}
	}
	if !it.Replica && !it.New && id != "" && st.Materials != nil {
		// Reimported: recorded at once, so a rerun after a later failure
		// knows which version holds it.
		mr := records.Material{KeyARN: k.ARN, KeyMaterialID: id, SecretID: r.SecretID, SecretVersionID: it.SecretVersionID,
			State: records.MaterialImported, FirstImportedAt: now.UTC(), LastImportedAt: now.UTC(), ExecutionID: s.Execution.ID}
		if err := st.Materials.Merge(ctx, mr); err != nil {
			return s, flow.FromAWS(err, flow.Internal, "recording key material %s of %s", flow.ShortID(id), k.ARN)
		}
	}
	if it.New && !it.Replica {
		if id == "" {
			return s, flow.Errorf(flow.Internal, "ImportKeyMaterial (NEW_KEY_MATERIAL) for %s returned no KeyMaterialId", it.KeyARN)
		}
		// Recorded at once: a later failure before RotateKeyOnDemand is
		// resumed by the next execution, which only rotates.
		if st.Materials != nil {
			mr := records.Material{KeyARN: k.ARN, KeyMaterialID: id, SecretID: r.SecretID, SecretVersionID: it.SecretVersionID,
				State: newState(p), Generated: p.Generated, FirstImportedAt: now.UTC(), LastImportedAt: now.UTC(),
				ExecutionID: s.Execution.ID}
			if validTo != nil {
				mr.ValidTo = map[string]time.Time{it.Region: *validTo}
			}
			if err := st.Materials.Put(ctx, mr); err != nil {
				return s, flow.FromAWS(err, flow.Internal, "recording new key material %s of %s", flow.ShortID(id), k.ARN)
			}
		}
		p.NewMaterialID = id
		for i := range p.Items {
			if p.Items[i].New && p.Items[i].Replica {
				p.Items[i].KeyMaterialID = id
			}
		}
	}
	t := now.UTC()
	it.KeyMaterialID, it.ImportedAt, it.ValidTo = id, &t, validTo
	s.Import = &flow.ImportResult{ImportedAt: t, ExpirationModel: r.ExpirationModel, ValidTo: validTo}
	log.Info("key material imported", "tokenId", rec.SK, "importType", it.ImportType, "keyMaterialId", id,
		"secretVersionId", it.SecretVersionID, "validTo", validTo)
	p.Advance()
	return s, nil
}

func newState(p *flow.Plan) string {
	if p.Rotate {
		return records.MaterialPendingRotation
	}
	return records.MaterialCurrent // a first import
}

package verifyimport

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Rotator is the part of KMS the plan path adds.
type Rotator interface {
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
	RotateKeyOnDemand(context.Context, *kms.RotateKeyOnDemandInput, ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error)
}

// RegionalKMS hands out the KMS client of a Region (replicas).
type RegionalKMS interface {
	For(region string) *kms.Client
}

func (st *Stage) describerFor(region, home string) kmsaccess.Describer {
	if st.Regions == nil || region == "" || region == home {
		return st.KMS
	}
	return st.Regions.For(region)
}

func listRotations(ctx context.Context, api Rotator, arn string) ([]types.RotationsListEntry, error) {
	var out []types.RotationsListEntry
	p := kms.NewListKeyRotationsPaginator(api, &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListKeyRotations for %s", arn)
		}
		out = append(out, page.Rotations...)
	}
	return out, nil
}

// runPlan rotates (when asked) and verifies every target of the plan,
// then records materials, audit trail and registry.
func (st *Stage) runPlan(ctx context.Context, s flow.State) (flow.State, error) {
	r, k, p := s.Request, s.Key, s.Plan
	switch {
	case s.Execution.ID == "":
		return s, flow.Errorf(flow.InvalidInput, "field \"execution.id\" is empty")
	case r == nil || k == nil || k.ARN == "":
		return s, flow.Errorf(flow.InvalidInput, "fields \"request\" and \"key\" are missing; this stage runs after the fetch stage")
	case p.Pending:
		return s, flow.Errorf(flow.InvalidInput, "the plan still has imports to do (item %d of %d)", p.Next, len(p.Items))
	}
	if st.Rotator == nil {
		return s, flow.Errorf(flow.Internal, "the verify stage has no rotation client")
	}
	log := telemetry.Logger(ctx)
	home := kmsaccess.RegionOf(k.ARN)
	var rotatedAt *time.Time
	if p.Rotate && !p.Rotated {
		if p.NewMaterialID == "" {
			return s, flow.Errorf(flow.VerificationFailed, "no new key material was imported into %s, nothing to rotate to", k.ARN)
		}
		rots, err := listRotations(ctx, st.Rotator, k.ARN)
		if err != nil {
			return s, err
		}
		state := ""
		for _, e := range rots {
			if aws.ToString(e.KeyMaterialId) == p.NewMaterialID {
				state = string(e.KeyMaterialState)
			}
		}
		switch types.KeyMaterialState(state) {
		case types.KeyMaterialStatePendingRotation:
			if _, err := st.Rotator.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &k.ARN}); err != nil {
				return s, flow.FromAWS(err, flow.Internal, "RotateKeyOnDemand for %s (to material %s)", k.ARN, flow.ShortID(p.NewMaterialID))
			}
			log.Info("rotated to new key material", "keyMaterialId", p.NewMaterialID)
		case types.KeyMaterialStateCurrent:
			log.Info("already rotated by an earlier attempt", "keyMaterialId", p.NewMaterialID)
		default:
			return s, flow.Errorf(flow.VerificationFailed, "new key material %s of %s is in state %q, not PENDING_ROTATION or CURRENT", flow.ShortID(p.NewMaterialID), k.ARN, state)
		}
		p.Rotated = true
		t := st.now().UTC()
		rotatedAt = &t
	}

	// The primary: every material imported, each import's ValidTo as
	// asked, the new material current.
	md, err := kmsaccess.Describe(ctx, st.KMS, k.ARN)
	if err != nil {
		return s, err
	}
	rots, err := listRotations(ctx, st.Rotator, k.ARN)
	if err != nil {
		return s, err
	}
	byID := map[string]types.RotationsListEntry{}
	for _, e := range rots {
		byID[aws.ToString(e.KeyMaterialId)] = e
	}
	primarySkipped := len(p.Targets) > 0 && p.Targets[0].Skipped
	if !primarySkipped {
		if md.KeyState != types.KeyStateEnabled {
			return s, flow.Errorf(flow.VerificationFailed, "key %s is %s after the imports, not Enabled", k.ARN, md.KeyState)
		}
		for _, e := range rots {
			if e.ImportState != types.ImportStateImported {
				return s, flow.Errorf(flow.VerificationFailed, "key material %s of %s is %s after the imports", flow.ShortID(aws.ToString(e.KeyMaterialId)), k.ARN, e.ImportState)
			}
		}
	}
	for _, it := range p.Items {
		if it.Replica || it.ValidTo == nil {
			continue
		}
		e, ok := byID[it.KeyMaterialID]
		if !ok || e.ValidTo == nil || !e.ValidTo.Equal(*it.ValidTo) {
			got := "none"
			if ok && e.ValidTo != nil {
				got = e.ValidTo.UTC().Format(time.RFC3339)
			}
			return s, flow.Errorf(flow.VerificationFailed, "key material %s of %s has ValidTo %s after the import, want %s", flow.ShortID(it.KeyMaterialID), k.ARN, got, it.ValidTo.Format(time.RFC3339))
		}
	}
	if p.Rotate {
		if e := byID[p.NewMaterialID]; e.KeyMaterialState != types.KeyMaterialStateCurrent {
			return s, flow.Errorf(flow.VerificationFailed, "after RotateKeyOnDemand the new key material %s of %s is %s, not CURRENT", flow.ShortID(p.NewMaterialID), k.ARN, e.KeyMaterialState)
		}
	}
	if len(p.Targets) > 0 {
		p.Targets[0].StateAfter, p.Targets[0].ValidTo = string(md.KeyState), md.ValidTo
	}
	// Every replica renewed: Enabled, in its own Region.
	var replicas []registry.Replica
	for i := range p.Targets {
		t := &p.Targets[i]
		if !t.Replica {
			continue
		}
		rmd, err := kmsaccess.Describe(ctx, st.describerFor(t.Region, home), t.KeyARN)
		if err != nil {
			return s, err
		}
		t.StateAfter, t.ValidTo = string(rmd.KeyState), rmd.ValidTo
		if !t.Skipped && rmd.KeyState != types.KeyStateEnabled {
			return s, flow.Errorf(flow.VerificationFailed, "replica %s is %s after the imports, not Enabled", t.KeyARN, rmd.KeyState)
		}
		replicas = append(replicas, registry.Replica{Region: t.Region, KeyARN: t.KeyARN, ValidTo: rmd.ValidTo, State: string(rmd.KeyState)})
	}
	proof := "primary not renewed in this execution (replicas only)"
	if md.KeyState == types.KeyStateEnabled {
		if proof, err = st.roundTrip(ctx, k.ARN, s.Execution.ID); err != nil {
			return s, err
		}
	}

	// Material map: every material with its secret version and state.
	now := st.now().UTC()
	if st.Materials != nil {
		mm, err := st.Materials.List(ctx, k.ARN)
		if err != nil {
			return s, flow.FromAWS(err, flow.Internal, "material map of %s", k.ARN)
		}
		for _, e := range rots {
			id := aws.ToString(e.KeyMaterialId)
			rec, ok := mm[id]
			if !ok {
				rec = records.Material{KeyARN: k.ARN, KeyMaterialID: id, SecretID: r.SecretID, FirstImportedAt: now, ExecutionID: s.Execution.ID}
			}
			for _, it := range p.Items {
				if it.KeyMaterialID != id || it.ImportedAt == nil {
					continue
				}
				rec.SecretVersionID, rec.LastImportedAt, rec.ExecutionID = it.SecretVersionID, *it.ImportedAt, s.Execution.ID
				if it.ValidTo != nil {
					if rec.ValidTo == nil {
						rec.ValidTo = map[string]time.Time{}
					}
					rec.ValidTo[it.Region] = *it.ValidTo
				}
			}
			if rec.SecretVersionID == "" {
				continue // not known: the next fetch stage names it
			}
			switch e.KeyMaterialState {
			case types.KeyMaterialStateCurrent:
				rec.State = records.MaterialCurrent
			case types.KeyMaterialStatePendingRotation:
				rec.State = records.MaterialPendingRotation
			default:
				rec.State = records.MaterialNonCurrent
			}
			if id == p.NewMaterialID && rotatedAt != nil {
				rec.RotatedAt = rotatedAt
			}
			if id == p.NewMaterialID {
				rec.Generated = rec.Generated || p.Generated
			}
			if err := st.Materials.Put(ctx, rec); err != nil {
				return s, flow.FromAWS(err, flow.Internal, "material map of %s", k.ARN)
			}
		}
	}

	rec := records.Import{
		SK: records.ImportSK(s.Execution.StartTime, s.Execution.ID), KeyARN: k.ARN, KeyID: r.KeyID, RecordedAt: now,
		Outcome: records.ImportSucceeded, ExpirationModel: r.ExpirationModel, ValidTo: md.ValidTo, ValidToBefore: k.ValidToBefore,
		KeyStateBefore: k.StateBefore, KeyStateAfter: string(md.KeyState), SecretID: r.SecretID, SecretVersionID: r.SecretVersionID,
		WrappingAlgorithm: r.WrappingAlgorithm, WrappingKeySpec: r.WrappingKeySpec, WrappingDefaulted: r.WrappingDefaulted,
		ExecutionID: s.Execution.ID, Verification: proof, Rotated: p.Rotate && p.Rotated, Resumed: p.Resumed,
	}
	if p.Rotate {
		rec.NewMaterialID = p.NewMaterialID
	}
	if s.Import != nil {
		rec.ImportedAt = &s.Import.ImportedAt
	}
	if s.Token != nil {
		rec.TokenID, rec.TokenFetches = s.Token.ID, s.Token.Fetches
	}
	for _, it := range p.Items {
		rec.Materials = append(rec.Materials, records.ImportMaterial{Region: it.Region, KeyARN: it.KeyARN, KeyMaterialID: it.KeyMaterialID,
			SecretVersionID: it.SecretVersionID, ImportType: it.ImportType, ValidTo: it.ValidTo, TokenID: it.TokenID, ImportedAt: it.ImportedAt})
	}
	for _, t := range p.Targets {
		rec.Regions = append(rec.Regions, records.ImportRegion{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, StateBefore: t.StateBefore,
			StateAfter: t.StateAfter, ValidTo: t.ValidTo, Skipped: t.Skipped})
	}
	if err := st.Audit.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording the import of %s", k.ARN)
	}
	if err := st.bookkeep(ctx, s, md.ValidTo, now); err != nil {
		return s, err
	}
	if st.Registry != nil {
		if err := st.Registry.RecordOutcome(ctx, k.ARN, registry.Outcome{Replicas: replicas, RotatedAt: rotatedAt, Materials: len(rots)}); err != nil {
			return s, flow.FromAWS(err, flow.Internal, "noting the renewal of %s", k.ARN)
		}
	}
	s.Verified = &flow.Verification{KeyState: string(md.KeyState), ValidTo: md.ValidTo, RoundTrip: proof, AuditID: rec.SK}
	log.Info("plan verified and recorded", "imports", len(p.Items), "rotated", p.Rotated, "materials", len(rots), "auditId", rec.SK)
	return s, nil
}

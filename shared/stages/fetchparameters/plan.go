package fetchparameters

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Rotations is the part of KMS the plan reads.
type Rotations interface {
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
}

// SecretWriter stores generated material as a new secret version.
type SecretWriter interface {
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// RegionalKMS hands out the KMS client of a Region (replicas).
type RegionalKMS interface {
	For(region string) *kms.Client
}

// wantsPlan says whether the key takes the plan path: a symmetric key
// that can hold several materials (DescribeKey reports a
// CurrentKeyMaterialId, which KMS does since on-demand rotation of
// imported material exists), a multi-Region key, or a rotation.
func wantsPlan(r *flow.Request, md *types.KeyMetadata) (bool, error) {
	if md.KeySpec != types.KeySpecSymmetricDefault {
		if r.Rotate || r.RotateEvery != "" {
			return false, flow.Errorf(flow.RotationNotSupported, "key %s has key spec %s: HMAC and asymmetric keys hold one key material for life, so they cannot rotate to new material; renew without \"rotate\"/\"rotateEvery\"", *md.Arn, md.KeySpec)
		}
		return false, nil
	}
	if md.MultiRegion != nil && *md.MultiRegion && md.MultiRegionConfiguration != nil && md.MultiRegionConfiguration.MultiRegionKeyType == types.MultiRegionKeyTypeReplica {
		p := ""
		if pk := md.MultiRegionConfiguration.PrimaryKey; pk != nil && pk.Arn != nil {
			p = *pk.Arn
		}
		return false, flow.Errorf(flow.KeyNotEligible, "key %s is a multi-Region replica: run kms-reimport on its primary key %s, which imports into every replica", *md.Arn, p)
	}
	return r.Rotate || (md.MultiRegion != nil && *md.MultiRegion) || md.CurrentKeyMaterialId != nil || len(r.Regions) > 0, nil
}

func (st *Stage) kmsFor(region, home string) KMS {
	if st.Regions == nil || region == "" || region == home {
		return st.KMS
	}
	return st.Regions.For(region)
}

type rotation struct {
	id, state, importState string
	validTo                *time.Time
}

func listMaterials(ctx context.Context, api Rotations, arn string) ([]rotation, error) {
	var out []rotation
	p := kms.NewListKeyRotationsPaginator(api, &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListKeyRotations for %s", arn)
		}
		for _, e := range page.Rotations {
			out = append(out, rotation{id: aws.ToString(e.KeyMaterialId), state: string(e.KeyMaterialState), importState: string(e.ImportState), validTo: e.ValidTo})
		}
	}
	return out, nil
}

// plan computes s.Plan for the key md describes (first pass only).
func (st *Stage) plan(ctx context.Context, s *flow.State, md *types.KeyMetadata) error {
	r, arn := s.Request, *md.Arn
	home := kmsaccess.RegionOf(arn)
	log := telemetry.Logger(ctx).With("keyArn", arn)
	if st.Materials == nil {
		return flow.Errorf(flow.Internal, "the fetch stage has no material map configured")
	}
	rots, err := listMaterials(ctx, st.KMS, arn)
	if err != nil {
		return err
	}
	mm, err := st.Materials.List(ctx, arn)
	if err != nil {
		return flow.FromAWS(err, flow.Internal, "material map of %s", arn)
	}
	p := &flow.Plan{Rotate: r.Rotate}

	// Bootstrap: a key with one material the product never mapped (first
	// imported on the single-material path) takes the request's secret.
	if len(mm) == 0 && len(rots) == 1 {
		m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, r.SecretVersionID, r.SecretVersionStage, types.KeySpecSymmetricDefault)
		if err != nil {
			return err
		}
		keymaterial.Zero(m)
		mm[rots[0].id] = records.Material{KeyARN: arn, KeyMaterialID: rots[0].id, SecretID: r.SecretID, SecretVersionID: version, State: records.MaterialCurrent}
		log.Info("material map bootstrapped from the request's secret", "keyMaterialId", rots[0].id, "secretVersionId", version)
	}

	// Every material must have a readable secret version before any token
	// is asked for.
	versionOf := map[string]string{}
	for _, m := range rots {
		rec, ok := mm[m.id]
		if !ok {
			log.Error("key material without a secret version", "keyMaterialId", m.id, "keyMaterialState", m.state)
			return flow.Errorf(flow.MaterialSecretMissing, "key %s has key material %s (state %s) that the material map does not know: no secret version holds it, so it cannot be reimported and the key will become unusable at its ValidTo %s; record which version of secret %q holds it (docs/rotation.md)", arn, flow.ShortID(m.id), m.state, fmtTime(m.validTo), r.SecretID)
		}
		secretID := rec.SecretID
		if secretID == "" {
			secretID = r.SecretID
		}
		b, _, err := keymaterial.ReadSecret(ctx, st.Secrets, secretID, rec.SecretVersionID, "", types.KeySpecSymmetricDefault)
		if err != nil {
			if flow.NameOf(err) == flow.SecretNotFound {
				log.Error("key material's secret version cannot be read", "keyMaterialId", m.id, "secretVersionId", rec.SecretVersionID)
				return flow.Wrap(flow.MaterialSecretMissing, err, "key material %s of key %s is held by version %s of secret %q, which cannot be read", flow.ShortID(m.id), arn, rec.SecretVersionID, secretID)
			}
			return err
		}
		keymaterial.Zero(b)
		versionOf[m.id] = rec.SecretVersionID
	}
	r.SecretVersionID = ""
	for _, m := range rots {
		if m.state == string(types.KeyMaterialStateCurrent) {
			r.SecretVersionID = versionOf[m.id]
		}
	}

	// The new material of a rotation, or one imported by an earlier
	// execution that failed before RotateKeyOnDemand.
	var pending *rotation
	for i := range rots {
		if rots[i].state == string(types.KeyMaterialStatePendingRotation) {
			pending = &rots[i]
		}
	}
	if r.Rotate && len(rots) == 0 {
		return flow.Errorf(flow.InvalidInput, "key %s has no key material yet: import its first material without \"rotate\"", arn)
	}
	if r.Rotate {
		if pending != nil && pending.importState == string(types.ImportStateImported) {
			p.Resumed, p.NewMaterialID, p.NewSecretVersionID = true, pending.id, versionOf[pending.id]
			log.Info("new material already imported by an earlier execution; only rotating", "keyMaterialId", pending.id, "secretVersionId", p.NewSecretVersionID)
		} else {
			v, generated, err := st.newMaterial(ctx, s, mm)
			if err != nil {
				return err
			}
			p.NewSecretVersionID, p.Generated = v, generated
		}
		r.SecretVersionID = p.NewSecretVersionID
	}

	// Targets: the primary and every replica.
	p.Targets = []flow.Target{{Region: home, KeyARN: arn, StateBefore: string(md.KeyState), ValidToBefore: md.ValidTo}}
	if mc := md.MultiRegionConfiguration; mc != nil {
		for _, rk := range mc.ReplicaKeys {
			rarn, region := aws.ToString(rk.Arn), aws.ToString(rk.Region)
			if region == "" {
				region = kmsaccess.RegionOf(rarn)
			}
			rmd, err := kmsaccess.Describe(ctx, st.kmsFor(region, home), rarn)
			if err != nil {
				return err
			}
			// A replica has its primary's key spec; origin and state are its own.
			if rmd.Origin != types.OriginTypeExternal || (rmd.KeyState != types.KeyStatePendingImport && rmd.KeyState != types.KeyStateEnabled) {
				return flow.Errorf(flow.KeyNotEligible, "replica %s of %s has origin %s and state %s; an import needs origin EXTERNAL and state PendingImport or Enabled", rarn, arn, rmd.Origin, rmd.KeyState)
			}
			p.Targets = append(p.Targets, flow.Target{Region: region, KeyARN: rarn, Replica: true, StateBefore: string(rmd.KeyState), ValidToBefore: rmd.ValidTo})
		}
	}
	if len(r.Regions) > 0 {
		for _, g := range r.Regions {
			if !slices.ContainsFunc(p.Targets, func(t flow.Target) bool { return t.Region == g }) {
				return flow.Errorf(flow.InvalidInput, "field \"regions\" names %s, but key %s has no primary or replica there", g, arn)
			}
		}
		for i := range p.Targets {
			p.Targets[i].Skipped = !slices.Contains(r.Regions, p.Targets[i].Region)
		}
	}

	// Items: every material of every target renewed, then the new one.
	for _, m := range rots {
		if p.Resumed && m.id == p.NewMaterialID {
			continue
		}
		if p.Resumed && m.importState == string(types.ImportStateImported) {
			continue // reimported by the earlier execution; only rotate
		}
		for _, t := range p.Targets {
			if t.Skipped || (t.Replica && p.Resumed) {
				continue
			}
			p.Items = append(p.Items, flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, KeyMaterialID: m.id,
				SecretVersionID: versionOf[m.id], ImportType: flow.ExistingKeyMaterial})
		}
	}
	if len(rots) == 0 {
		// Nothing imported yet: the first import, from the request's
		// secret, into the primary (ImportType omitted, as for any first
		// import) and then the same material into each replica.
		m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, r.SecretVersionID, r.SecretVersionStage, types.KeySpecSymmetricDefault)
		if err != nil {
			return err
		}
		keymaterial.Zero(m)
		r.SecretVersionID, p.NewSecretVersionID = version, version
		for _, t := range p.Targets {
			it := flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, SecretVersionID: version, New: true, ImportType: flow.ExistingKeyMaterial}
			if !t.Replica {
				it.ImportType = ""
			}
			p.Items = append(p.Items, it)
		}
	}
	if r.Rotate {
		for _, t := range p.Targets {
			it := flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, SecretVersionID: p.NewSecretVersionID, New: true, ImportType: flow.ExistingKeyMaterial}
			switch {
			case !t.Replica && p.Resumed:
				continue
			case !t.Replica:
				it.ImportType = flow.NewKeyMaterial
			default:
				it.KeyMaterialID = p.NewMaterialID // filled after the primary's import otherwise
			}
			p.Items = append(p.Items, it)
		}
	}
	p.Pending = len(p.Items) > 0
	s.Plan = p
	if err := chooseWrapping(r, types.KeySpecSymmetricDefault, 32); err != nil {
		return err
	}
	log.Info("plan of imports", "materials", len(rots), "targets", len(p.Targets), "imports", len(p.Items), "rotate", p.Rotate, "resumed", p.Resumed)
	return nil
}

// newMaterial returns the secret version with the rotation's new
// material: the user's (newMaterialStage) or one generated and stored
// first, so it is never lost if a later step fails.
func (st *Stage) newMaterial(ctx context.Context, s *flow.State, mm map[string]records.Material) (string, bool, error) {
	r := s.Request
	m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, "", r.NewMaterialStage, types.KeySpecSymmetricDefault)
	if err == nil {
		keymaterial.Zero(m)
		if rec, mapped := records.MaterialByVersion(mm, version); !mapped {
			return version, r.GenerateMaterial, nil
		} else if !r.GenerateMaterial {
			return "", false, flow.Errorf(flow.NewMaterialInvalid, "the version at stage %s of secret %q (%s) already holds key material %s of the key: put the new material in a new version with that label first", r.NewMaterialStage, r.SecretID, version, flow.ShortID(rec.KeyMaterialID))
		}
	} else if flow.NameOf(err) != flow.SecretNotFound || !r.GenerateMaterial {
		if flow.NameOf(err) == flow.SecretNotFound {
			return "", false, flow.Wrap(flow.NewMaterialInvalid, err, "no new key material at stage %s of secret %q", r.NewMaterialStage, r.SecretID)
		}
		return "", false, err
	}
	if st.SecretWriter == nil {
		return "", false, flow.Errorf(flow.Internal, "the fetch stage cannot write secrets")
	}
	// Generate 32 random bytes (SYMMETRIC_DEFAULT) and store them as a new
	// version; the request token is derived from the execution, so a
	// retried stage finds the version it already wrote.
	token := requestToken(s.Execution.ID)
	buf := make([]byte, 32)
	defer clear(buf)
	if _, err := rand.Read(buf); err != nil {
		return "", false, flow.Wrap(flow.Internal, err, "generating key material")
	}
	_, err = st.SecretWriter.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: &r.SecretID, SecretBinary: buf, ClientRequestToken: &token, VersionStages: []string{r.NewMaterialStage},
	})
	var exists *smtypes.ResourceExistsException
	if errors.As(err, &exists) {
		err = nil // this execution stored it already
	}
	if err != nil {
		return "", false, flow.FromAWS(err, flow.Internal, "storing generated key material in secret %q", r.SecretID)
	}
	telemetry.Logger(ctx).Info("new key material generated and stored", "secretId", r.SecretID, "secretVersionId", token, "stage", r.NewMaterialStage)
	return token, true, nil
}

// requestToken is a version id (UUID form) derived from the execution.
func requestToken(execID string) string {
	h := sha256.Sum256([]byte("kms-reimport generated material\x00" + execID))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339)
}

// fetchItem asks for import parameters for the plan's current item.
func (st *Stage) fetchItem(ctx context.Context, s flow.State) (flow.State, error) {
	p, r := s.Plan, s.Request
	it := p.Current()
	if it == nil {
		p.Pending = false
		return s, nil
	}
	if it.Fetches >= st.Settings.MaxTokenFetches {
		return s, flow.Errorf(flow.TokenRefreshLimitExceeded, "import parameters for %s (material %s) were fetched %d times in this execution (limit %d)", it.KeyARN, flow.ShortID(it.KeyMaterialID), it.Fetches, st.Settings.MaxTokenFetches)
	}
	api := st.kmsFor(it.Region, kmsaccess.RegionOf(s.Key.ARN))
	out, err := api.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: &it.KeyARN, WrappingAlgorithm: types.AlgorithmSpec(r.WrappingAlgorithm), WrappingKeySpec: types.WrappingKeySpec(r.WrappingKeySpec),
	})
	if err != nil {
		return s, gpiErr(err, it.KeyARN, r)
	}
	if out.ParametersValidTo == nil || len(out.ImportToken) == 0 || len(out.PublicKey) == 0 {
		return s, flow.Errorf(flow.Internal, "GetParametersForImport for %s returned an incomplete answer", it.KeyARN)
	}
	issued := st.now().UTC()
	id := newID()
	rec := records.Token{
		KeyARN: s.Key.ARN, TokenID: id, WrappingAlgorithm: r.WrappingAlgorithm, WrappingKeySpec: r.WrappingKeySpec,
		IssuedAt: issued, ParametersValidTo: out.ParametersValidTo.UTC(), ExecutionID: s.Execution.ID, Status: records.TokenIssued,
		SecretVersionID: it.SecretVersionID, PublicKey: out.PublicKey, ImportToken: out.ImportToken,
		TargetKeyARN: it.KeyARN, Region: it.Region, ImportType: it.ImportType, KeyMaterialID: it.KeyMaterialID,
	}
	rec.SK = records.TokenSK(issued, id)
	if err := st.Tokens.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording import parameters for %s", it.KeyARN)
	}
	clear(out.ImportToken)
	it.Fetches++
	it.TokenID = rec.SK
	s.Token = &flow.TokenRef{ID: rec.SK, ParametersValidTo: rec.ParametersValidTo, Fetches: it.Fetches}
	telemetry.Logger(ctx).Info("import parameters fetched", "tokenId", rec.SK, "item", p.Next, "targetKeyArn", it.KeyARN, "region", it.Region,
		"importType", it.ImportType, "keyMaterialId", it.KeyMaterialID, "secretVersionId", it.SecretVersionID, "fetch", it.Fetches)
	return s, nil
}

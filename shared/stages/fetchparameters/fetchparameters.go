// Package fetchparameters is the first stage: it validates the request,
// checks the key and every material it will import, plans the imports
// (one per material and Region: a key with one material in one Region is a
// plan with one item), then calls GetParametersForImport for the plan's
// current item and records the answer in a token record. Only a reference
// to that record leaves the stage. The state machine comes back here for
// each further item, and for fresh parameters when a token was too close to
// its expiry.
package fetchparameters

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// Secrets is the part of Secrets Manager this stage calls: it reads every
// material's version, and stores generated material (generateMaterial).
type Secrets interface {
	keymaterial.SecretReader
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// Stage fetches import parameters.
type Stage struct {
	KMS       kmsaccess.Regional
	Secrets   Secrets
	Tokens    *records.Tokens
	Leases    *records.Leases
	Materials *records.Materials
	Settings  settings.Settings
	Now       func() time.Time
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	out, err := st.run(ctx, s)
	if err != nil && out.Key != nil && flow.NameOf(err) != flow.RotationInProgress {
		// A failed fetch gives back the lease it took (a retry takes it
		// again): record-failure gets the state from before this stage and
		// may not know the key's ARN, and the key must not stay locked.
		if rerr := st.Leases.Release(ctx, out.Key.ARN, s.Execution.ID); rerr != nil {
			telemetry.Logger(ctx).Warn("lease not released", "error", rerr.Error())
		}
	}
	return out, err
}

func (st *Stage) run(ctx context.Context, s flow.State) (flow.State, error) {
	if s.Execution.ID == "" {
		return s, flow.Errorf(flow.InvalidInput, "field \"execution.id\" is empty; the state machine passes $$.Execution.Id")
	}
	if s.Request == nil {
		r, err := flow.ParseRequest(s.Input, st.now(), st.Settings.RequestOptions())
		if err != nil {
			return s, err
		}
		s.Request = r
	}
	s.Input = nil
	if s.Plan != nil {
		// Back for the plan's next item (or fresh parameters for this one).
		if err := st.takeLease(ctx, s.Key.ARN, s.Execution.ID); err != nil {
			return s, err
		}
		return st.fetchItem(ctx, s)
	}
	r := s.Request
	md, err := kmsaccess.Describe(ctx, st.KMS.In(""), r.KeyID)
	if err != nil {
		return s, err
	}
	if err := kmsaccess.CheckImportable(md); err != nil {
		return s, err
	}
	arn := *md.Arn
	// Taken before anything else is read or spent for this key.
	if err := st.takeLease(ctx, arn, s.Execution.ID); err != nil {
		return s, err
	}
	// Holding the lease, settle what earlier executions left open (a
	// stopped or crashed one): their tokens will never be used.
	if n, err := st.Tokens.SettleOthers(ctx, arn, s.Execution.ID, st.now()); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "settling the token records of %s", arn)
	} else if n > 0 {
		telemetry.Logger(ctx).Warn("token records left open by earlier executions settled", "keyArn", arn, "records", n)
	}
	s.Key = &flow.Key{ARN: arn, KeySpec: string(md.KeySpec), KeyUsage: string(md.KeyUsage), StateBefore: string(md.KeyState), ValidToBefore: md.ValidTo}
	if err := st.plan(ctx, &s, md); err != nil {
		return s, err
	}
	return st.fetchItem(ctx, s)
}

// takeLease takes (or, for the same execution, extends) the key's lease.
func (st *Stage) takeLease(ctx context.Context, arn, execID string) error {
	var held *records.LeaseHeld
	if err := st.Leases.Acquire(ctx, arn, execID, st.now()); errors.As(err, &held) {
		return flow.Wrap(flow.RotationInProgress, err, "rotation already in progress")
	} else if err != nil {
		return flow.FromAWS(err, flow.Internal, "lease of %s", arn)
	}
	return nil
}

// listsMaterials says whether the plan is built from KMS's list of the
// key's materials: a symmetric key that reports them (or must, to be
// rotated or renewed Region by Region).
func listsMaterials(r *flow.Request, md *types.KeyMetadata) bool {
	return md.KeySpec == types.KeySpecSymmetricDefault &&
		(kmsaccess.ListsMaterials(md) || r.Rotate || aws.ToBool(md.MultiRegion) || len(r.Regions) > 0)
}

// plan computes s.Plan for the key md describes (first pass only). Every
// material must have a readable secret version of the right shape before
// any import token is asked for, so a wrong secret costs nothing and
// changes nothing.
func (st *Stage) plan(ctx context.Context, s *flow.State, md *types.KeyMetadata) error {
	r, arn := s.Request, *md.Arn
	home := kmsaccess.RegionOf(arn)
	log := telemetry.Logger(ctx).With("keyArn", arn)
	if md.KeySpec != types.KeySpecSymmetricDefault && (r.Rotate || r.RotateEvery != "") {
		return flow.Errorf(flow.RotationNotSupported, "key %s has key spec %s: HMAC and asymmetric keys hold one key material for life, so they cannot rotate to new material; renew without \"rotate\"/\"rotateEvery\"", arn, md.KeySpec)
	}
	if mc := md.MultiRegionConfiguration; aws.ToBool(md.MultiRegion) && mc != nil && mc.MultiRegionKeyType == types.MultiRegionKeyTypeReplica {
		p := ""
		if mc.PrimaryKey != nil {
			p = aws.ToString(mc.PrimaryKey.Arn)
		}
		return kmsaccess.NotPrimary(md, p)
	}
	p := &flow.Plan{Rotate: r.Rotate, Listed: listsMaterials(r, md)}
	var rots []types.RotationsListEntry
	mm := map[string]records.Material{}
	if p.Listed {
		var err error
		if rots, err = kmsaccess.ListMaterials(ctx, st.KMS.In(home), arn); err != nil {
			return err
		}
		if mm, err = st.Materials.List(ctx, arn); err != nil {
			return flow.FromAWS(err, flow.Internal, "material map of %s", arn)
		}
	}
	idOf := func(e types.RotationsListEntry) string { return aws.ToString(e.KeyMaterialId) }

	// Bootstrap: a key with one material the product never mapped takes
	// the request's secret.
	if len(mm) == 0 && len(rots) == 1 {
		version, _, err := st.readMaterial(ctx, arn, md, r.SecretID, r.SecretVersionID, r.SecretVersionStage)
		if err != nil {
			return err
		}
		mm[idOf(rots[0])] = records.Material{KeyARN: arn, KeyMaterialID: idOf(rots[0]), SecretID: r.SecretID, SecretVersionID: version, State: records.MaterialCurrent}
		log.Info("material map bootstrapped from the request's secret", "keyMaterialId", flow.ShortID(idOf(rots[0])), "secretVersionId", version)
	}
	versionOf := map[string]string{}
	for _, e := range rots {
		id := idOf(e)
		rec, ok := mm[id]
		if !ok {
			log.Error("key material without a secret version", "keyMaterialId", flow.ShortID(id), "keyMaterialState", e.KeyMaterialState)
			return flow.Errorf(flow.MaterialSecretMissing, "key %s has key material %s (state %s) that the material map does not know: no secret version holds it, so it cannot be reimported and the key will become unusable at its ValidTo %s; record which version of secret %q holds it (docs/rotation.md)", arn, flow.ShortID(id), e.KeyMaterialState, fmtTime(e.ValidTo), r.SecretID)
		}
		secretID := rec.SecretID
		if secretID == "" {
			secretID = r.SecretID
		}
		if _, _, err := st.readMaterial(ctx, arn, md, secretID, rec.SecretVersionID, ""); err != nil {
			if flow.NameOf(err) == flow.SecretNotFound {
				log.Error("key material's secret version cannot be read", "keyMaterialId", flow.ShortID(id), "secretVersionId", rec.SecretVersionID)
				return flow.Wrap(flow.MaterialSecretMissing, err, "key material %s of key %s is held by version %s of secret %q, which cannot be read", flow.ShortID(id), arn, rec.SecretVersionID, secretID)
			}
			return err
		}
		versionOf[id] = rec.SecretVersionID
		if e.KeyMaterialState == types.KeyMaterialStateCurrent {
			r.SecretVersionID = rec.SecretVersionID
		}
	}

	if r.Rotate && len(rots) == 0 {
		return flow.Errorf(flow.InvalidInput, "key %s has no key material yet: import its first material without \"rotate\"", arn)
	}
	if r.Rotate {
		if err := st.resumeOrNew(ctx, s, p, rots, mm, versionOf); err != nil {
			return err
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
			rmd, err := kmsaccess.Describe(ctx, st.KMS.In(region), rarn)
			if err != nil {
				return err
			}
			if err := kmsaccess.CheckReplica(rmd, arn); err != nil {
				return err
			}
			p.Targets = append(p.Targets, flow.Target{Region: region, KeyARN: rarn, Replica: true, StateBefore: string(rmd.KeyState), ValidToBefore: rmd.ValidTo})
		}
	}
	for _, g := range r.Regions {
		if !slices.ContainsFunc(p.Targets, func(t flow.Target) bool { return t.Region == g }) {
			return flow.Errorf(flow.InvalidInput, "field \"regions\" names %s, but key %s has no primary or replica there", g, arn)
		}
	}
	if len(r.Regions) > 0 {
		for i := range p.Targets {
			p.Targets[i].Skipped = !slices.Contains(r.Regions, p.Targets[i].Region)
		}
	}

	// Items: every listed material of every target renewed, then the new one.
	for _, e := range rots {
		if p.Resumed && (idOf(e) == p.NewMaterialID || e.ImportState == types.ImportStateImported) {
			continue // imported by the earlier execution; only rotate
		}
		for _, t := range p.Targets {
			if t.Skipped || (t.Replica && p.Resumed) {
				continue
			}
			p.Items = append(p.Items, flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, KeyMaterialID: idOf(e),
				SecretVersionID: versionOf[idOf(e)], ImportType: flow.ExistingKeyMaterial})
		}
	}
	materialLen := 32
	if len(rots) == 0 {
		// No material KMS names: the key's one material (a first import, an
		// HMAC or asymmetric key, or a KMS that lists none) from the
		// request's secret, into the primary with ImportType omitted (as
		// for any first import, and as KMS requires for HMAC and asymmetric
		// keys), then the same material into each replica.
		version, n, err := st.readMaterial(ctx, arn, md, r.SecretID, r.SecretVersionID, r.SecretVersionStage)
		if err != nil {
			return err
		}
		r.SecretVersionID, p.NewSecretVersionID, materialLen = version, version, n
		for _, t := range p.Targets {
			if t.Skipped {
				continue
			}
			it := flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, SecretVersionID: version, New: true}
			if t.Replica && md.KeySpec == types.KeySpecSymmetricDefault {
				it.ImportType = flow.ExistingKeyMaterial
			}
			p.Items = append(p.Items, it)
		}
	}
	if r.Rotate && !p.Rotated {
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
	if err := chooseWrapping(r, md.KeySpec, materialLen); err != nil {
		return err
	}
	log.Info("plan of imports", "materials", len(rots), "targets", len(p.Targets), "imports", len(p.Items), "rotate", p.Rotate, "resumed", p.Resumed)
	return nil
}

// resumeOrNew finds the rotation's new material. An earlier execution's
// new material (recorded pending rotation in the material map) is resumed:
// imported again into every replica (harmless where it is already, needed
// where it is not) and rotated to; if KMS already
// made it current, the rotation is done and nothing is rotated twice. Else
// the new material is the user's or generated, and the key must still have
// an on-demand rotation left.
func (st *Stage) resumeOrNew(ctx context.Context, s *flow.State, p *flow.Plan, rots []types.RotationsListEntry, mm map[string]records.Material, versionOf map[string]string) error {
	log := telemetry.Logger(ctx)
	onDemand := 0
	for _, e := range rots {
		id := aws.ToString(e.KeyMaterialId)
		if e.RotationType == types.RotationTypeOnDemand {
			onDemand++
		}
		switch {
		case e.ImportState != types.ImportStateImported:
		case e.KeyMaterialState == types.KeyMaterialStatePendingRotation,
			e.KeyMaterialState == types.KeyMaterialStatePendingMultiRegionImportAndRotation:
			p.Resumed, p.NewMaterialID, p.NewSecretVersionID = true, id, versionOf[id]
			log.Info("new material already imported by an earlier execution; only rotating", "keyMaterialId", flow.ShortID(id), "keyMaterialState", e.KeyMaterialState)
			return nil
		case e.KeyMaterialState == types.KeyMaterialStateCurrent && mm[id].State == records.MaterialPendingRotation:
			// The earlier execution's rotation finished after it stopped.
			t := st.now().UTC()
			if at := mm[id].RotatedAt; at != nil {
				t = *at
			}
			p.Resumed, p.Rotated, p.RotationStartedAt, p.NewMaterialID, p.NewSecretVersionID = true, true, &t, id, versionOf[id]
			log.Info("new material of an earlier execution is current already; recording its rotation", "keyMaterialId", flow.ShortID(id))
			return nil
		}
	}
	if onDemand >= flow.MaxOnDemandRotations {
		return flow.Errorf(flow.RotationLimitExceeded, "key %s has had %d on-demand rotations, the most KMS allows over a key's life (RotateKeyOnDemand quota %d); nothing was changed: renew without \"rotate\", or move to a new key", s.Key.ARN, onDemand, flow.MaxOnDemandRotations)
	}
	v, generated, err := st.newMaterial(ctx, s, mm)
	if err != nil {
		return err
	}
	p.NewSecretVersionID, p.Generated = v, generated
	return nil
}

// readMaterial reads one secret version and checks its material fits the
// key: its shape for the key spec and, for an asymmetric key that already
// has its material, the same public key (KMS would refuse anything else
// with IncorrectKeyMaterial; the refusal is cheaper before a token is
// fetched). It returns the version read and the material's length; the
// plaintext is zeroed before it returns.
func (st *Stage) readMaterial(ctx context.Context, arn string, md *types.KeyMetadata, secretID, versionID, stage string) (string, int, error) {
	m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, secretID, versionID, stage, md.KeySpec)
	if err != nil {
		return "", 0, err
	}
	n := len(m)
	var pub []byte
	if keymaterial.IsAsymmetric(md.KeySpec) {
		// Derives the public key (for secp256k1 too), which also proves the
		// private key is whole.
		pub, err = keymaterial.PublicKeyDER(md.KeySpec, m)
	}
	keymaterial.Zero(m)
	if err != nil {
		return "", 0, flow.Wrap(flow.InvalidSecret, err, "secret %q version %s does not hold a usable %s private key", secretID, version, md.KeySpec)
	}
	if pub != nil && md.KeyState == types.KeyStateEnabled {
		out, err := st.KMS.In(kmsaccess.RegionOf(arn)).GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &arn})
		if err != nil {
			return "", 0, flow.FromAWS(err, flow.Internal, "GetPublicKey for %s", arn)
		}
		if !bytes.Equal(out.PublicKey, pub) {
			return "", 0, flow.Errorf(flow.InvalidSecret, "secret %q version %s holds a private key whose public key (SHA-256 %s) differs from the public key of %s (SHA-256 %s): it is not the material already bound to the key",
				secretID, version, Fingerprint(pub), arn, Fingerprint(out.PublicKey))
		}
	}
	return version, n, nil
}

// Fingerprint is a short, loggable SHA-256 fingerprint of a public key.
func Fingerprint(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// chooseWrapping fills in the defaults for the key type and checks the
// combination before any token is requested.
func chooseWrapping(r *flow.Request, spec types.KeySpec, materialLen int) error {
	alg, ks := wrapping.Defaults(spec)
	if r.WrappingAlgorithm == "" && r.WrappingKeySpec == "" {
		r.WrappingDefaulted = true
	}
	if r.WrappingAlgorithm == "" {
		r.WrappingAlgorithm = string(alg)
	}
	if r.WrappingKeySpec == "" {
		r.WrappingKeySpec = string(ks)
	}
	if err := wrapping.Check(spec, types.AlgorithmSpec(r.WrappingAlgorithm), types.WrappingKeySpec(r.WrappingKeySpec), materialLen, r.AllowLegacyWrapping); err != nil {
		return flow.Wrap(flow.UnsupportedWrapping, err, "wrapping %s material", spec)
	}
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
	// Generate 32 random bytes (SYMMETRIC_DEFAULT) and store them as a new
	// version; the request token is derived from the execution, so a
	// retried stage finds the version it already wrote.
	token := requestToken(s.Execution.ID)
	buf := make([]byte, 32)
	defer clear(buf)
	if _, err := rand.Read(buf); err != nil {
		return "", false, flow.Wrap(flow.Internal, err, "generating key material")
	}
	_, err = st.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
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
		return s, flow.Errorf(flow.TokenRefreshLimitExceeded, "import parameters for %s (material %s) were fetched %d times in this execution (limit %d); each token was too close to expiry when the import stage got it", it.KeyARN, flow.ShortID(it.KeyMaterialID), it.Fetches, st.Settings.MaxTokenFetches)
	}
	out, err := st.KMS.In(it.Region).GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: &it.KeyARN, WrappingAlgorithm: types.AlgorithmSpec(r.WrappingAlgorithm), WrappingKeySpec: types.WrappingKeySpec(r.WrappingKeySpec),
	})
	if err != nil {
		return s, gpiErr(err, it.KeyARN, r)
	}
	defer clear(out.ImportToken)
	if out.ParametersValidTo == nil || len(out.ImportToken) == 0 || len(out.PublicKey) == 0 {
		return s, flow.Errorf(flow.Internal, "GetParametersForImport for %s returned an incomplete answer", it.KeyARN)
	}
	issued := st.now().UTC()
	rec := records.Token{
		KeyARN: s.Key.ARN, TokenID: newID(), WrappingAlgorithm: r.WrappingAlgorithm, WrappingKeySpec: r.WrappingKeySpec,
		IssuedAt: issued, ParametersValidTo: out.ParametersValidTo.UTC(), ExecutionID: s.Execution.ID, Status: records.TokenIssued,
		SecretVersionID: it.SecretVersionID, PublicKey: out.PublicKey, ImportToken: out.ImportToken,
		TargetKeyARN: it.KeyARN, Region: it.Region, ImportType: it.ImportType, KeyMaterialID: it.KeyMaterialID,
	}
	rec.SK = records.TokenSK(issued, rec.TokenID)
	if err := st.Tokens.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording import parameters for %s", it.KeyARN)
	}
	it.Fetches++
	it.TokenID = rec.SK
	s.Token = &flow.TokenRef{ID: rec.SK, ParametersValidTo: rec.ParametersValidTo, Fetches: it.Fetches}
	telemetry.Logger(ctx).Info("import parameters fetched", "tokenId", rec.SK, "parametersValidTo", rec.ParametersValidTo, "item", p.Next,
		"targetKeyArn", it.KeyARN, "region", it.Region, "importType", it.ImportType, "keyMaterialId", flow.ShortID(it.KeyMaterialID),
		"wrappingAlgorithm", r.WrappingAlgorithm, "wrappingKeySpec", r.WrappingKeySpec, "secretVersionId", it.SecretVersionID, "fetch", it.Fetches)
	return s, nil
}

// gpiErr names a GetParametersForImport error.
func gpiErr(err error, arn string, r *flow.Request) error {
	var is *types.KMSInvalidStateException
	var uo *types.UnsupportedOperationException
	switch {
	case errors.As(err, &is), errors.As(err, &uo):
		return kmsaccess.Refused("GetParametersForImport", arn, err)
	case flow.AWSCode(err) == "ValidationException":
		return flow.Wrap(flow.UnsupportedWrapping, err, "GetParametersForImport for %s with %s/%s", arn, r.WrappingAlgorithm, r.WrappingKeySpec)
	}
	return flow.FromAWS(err, flow.Internal, "GetParametersForImport for %s", arn)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

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
	"github.com/kms-reimport/kms-reimport/shared/renewal"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Secrets is the part of Secrets Manager this stage calls: it reads every
// material's version, and stores generated material (generateMaterial).
type Secrets interface {
	keymaterial.SecretReader
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// Tokens is the part of the token store this stage calls.
type Tokens interface {
	SettleOthers(ctx context.Context, keyARN, executionID string, now time.Time) (int, error)
	Put(ctx context.Context, r records.Token) error
}

// Leases is the part of the lease store this stage calls.
type Leases interface {
	Acquire(ctx context.Context, arn, owner string, now time.Time) error
	Release(ctx context.Context, arn, owner string) error
}

// Materials is the part of the material map this stage reads.
type Materials interface {
	List(ctx context.Context, keyARN string) (map[string]records.Material, error)
}

// Stage fetches import parameters.
type Stage struct {
	KMS       kmsaccess.Regional
	Secrets   Secrets
	Tokens    Tokens
	Leases    Leases
	Materials Materials
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
	if s.Plan != nil && s.Progress != nil {
		// Back for the plan's next item (or fresh parameters for this one).
		if err := st.takeLease(ctx, s.Key.ARN, s.Execution.ID); err != nil {
			return s, err
		}
		return st.fetchItem(ctx, s)
	}
	r := s.Request
	md, err := kmsaccess.Describe(ctx, kmsaccess.ForKey(st.KMS, r.KeyID), r.KeyID)
	if err != nil {
		return s, err
	}
	if err := kmsaccess.CheckImportable(md); err != nil {
		return s, err
	}
	d := renewal.Deployment{NoRotation: st.Settings.NoRotation, NoGeneratedMaterial: st.Settings.NoGeneratedMaterial, NoMaterialProofs: st.Settings.NoMaterialProofs}
	if err := renewal.Permitted(r, md.KeySpec, d); err != nil {
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

// plan gathers the facts, lets renewal.Decide make the plan and writes it
// (first pass only). Nothing is requested from KMS for an import, and no
// material generated, before the plan exists.
func (st *Stage) plan(ctx context.Context, s *flow.State, md *types.KeyMetadata) error {
	f, err := st.gather(ctx, s, md)
	if err != nil {
		return err
	}
	d, err := renewal.Decide(f)
	if err != nil {
		return err
	}
	log := telemetry.Logger(ctx).With("keyArn", s.Key.ARN)
	if d.Bootstrapped != "" {
		log.Info("material map bootstrapped from the request's secret", "keyMaterialId", flow.ShortID(d.Bootstrapped), "secretVersionId", d.Plan.SecretVersionID)
	}
	p := d.Plan
	if p.Resumed {
		log.Info("new material of an earlier execution resumed; only rotating", "keyMaterialId", flow.ShortID(p.NewMaterialID), "rotated", p.Rotated)
	}
	if d.Generate {
		if err := st.storeGenerated(ctx, s.Request, p.NewSecretVersionID); err != nil {
			return err
		}
	}
	s.Plan, s.Progress = p, p.Start()
	log.Info("plan of imports", "materials", len(f.Materials), "targets", len(p.Targets), "imports", len(p.Items), "rotate", p.Rotate, "resumed", p.Resumed,
		"wrappingAlgorithm", p.Wrapping.Algorithm, "wrappingKeySpec", p.Wrapping.KeySpec)
	return nil
}

// gather collects what renewal.Decide needs: the key's materials and the
// material map (when it lists them), each replica's DescribeKey, and every
// secret read it will look up. A key Decide refuses on its own is refused
// before anything else is read.
func (st *Stage) gather(ctx context.Context, s *flow.State, md *types.KeyMetadata) (renewal.Facts, error) {
	r, arn := s.Request, *md.Arn
	f := renewal.Facts{Request: r, ExecutionID: s.Execution.ID, Now: st.now(), Key: md}
	if err := renewal.Refuse(r, md); err != nil {
		return f, err
	}
	if renewal.ListsMaterials(r, md) {
		var err error
		if f.Materials, err = kmsaccess.ListMaterials(ctx, kmsaccess.ForKey(st.KMS, arn), arn); err != nil {
			return f, err
		}
		if f.Map, err = st.Materials.List(ctx, arn); err != nil {
			return f, flow.FromAWS(err, flow.Internal, "material map of %s", arn)
		}
		logUnmapped(ctx, f.Materials, f.Map)
	}
	var err error
	if f.Replicas, err = st.replicas(ctx, md); err != nil {
		return f, err
	}
	f.Secrets, err = st.readSecrets(ctx, md, renewal.SecretsToRead(r, f.Materials, f.Map))
	return f, err
}

// logUnmapped logs the full id of each material the map does not know
// (Decide's MaterialSecretMissing names only its first 16 hex digits); a
// key with one material and an empty map is bootstrapped, not missing.
func logUnmapped(ctx context.Context, rots []types.RotationsListEntry, mm map[string]records.Material) {
	if len(mm) == 0 && len(rots) == 1 {
		return
	}
	for _, e := range rots {
		if id := aws.ToString(e.KeyMaterialId); mm[id].KeyMaterialID == "" {
			telemetry.Logger(ctx).Error("key material without a secret version", "keyMaterialId", id, "keyMaterialState", e.KeyMaterialState)
		}
	}
}

// replicas describes every replica of a multi-Region primary in its Region.
func (st *Stage) replicas(ctx context.Context, md *types.KeyMetadata) ([]renewal.Replica, error) {
	mc := md.MultiRegionConfiguration
	if mc == nil {
		return nil, nil
	}
	var out []renewal.Replica
	for _, rk := range mc.ReplicaKeys {
		rarn, region := aws.ToString(rk.Arn), aws.ToString(rk.Region)
		if region == "" {
			region = kmsaccess.RegionOf(rarn)
		}
		rmd, err := kmsaccess.Describe(ctx, kmsaccess.ForKeyIn(st.KMS, rarn, region), rarn)
		if err != nil {
			return nil, err
		}
		out = append(out, renewal.Replica{Region: region, ARN: rarn, Meta: rmd})
	}
	return out, nil
}

// readSecrets reads each secret version once. What a read finds wrong
// with the material (missing, wrong shape) is a fact for Decide; an error
// of Secrets Manager or KMS itself ends the stage.
func (st *Stage) readSecrets(ctx context.Context, md *types.KeyMetadata, refs []renewal.SecretRef) (map[renewal.SecretRef]renewal.SecretRead, error) {
	out := map[renewal.SecretRef]renewal.SecretRead{}
	for _, ref := range refs {
		if _, done := out[ref]; done {
			continue
		}
		version, n, err := st.readMaterial(ctx, md, ref)
		if err != nil && flow.NameOf(err) != flow.SecretNotFound && flow.NameOf(err) != flow.InvalidSecret {
			return nil, err
		}
		out[ref] = renewal.SecretRead{VersionID: version, Length: n, Err: err}
	}
	return out, nil
}

// readMaterial reads one secret version and checks its material fits the
// key: its shape for the key spec and, for an asymmetric key that already
// has its material, the same public key (KMS would refuse anything else
// with IncorrectKeyMaterial; the refusal is cheaper before a token is
// fetched). It returns the version read and the material's length; the
// plaintext is zeroed before it returns.
func (st *Stage) readMaterial(ctx context.Context, md *types.KeyMetadata, ref renewal.SecretRef) (string, int, error) {
	arn, spec := *md.Arn, md.KeySpec
	m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, ref.SecretID, ref.VersionID, ref.Stage, spec)
	if err != nil {
		return "", 0, err
	}
	n := len(m)
	var pub []byte
	if keymaterial.IsAsymmetric(spec) {
		// Derives the public key (for secp256k1 too), which also proves the
		// private key is whole.
		pub, err = keymaterial.PublicKeyDER(spec, m)
	}
	keymaterial.Zero(m)
	if err != nil {
		return "", 0, flow.Wrap(flow.InvalidSecret, err, "secret %q version %s does not hold a usable %s private key", ref.SecretID, version, spec)
	}
	if pub != nil && md.KeyState == types.KeyStateEnabled {
		out, err := kmsaccess.ForKey(st.KMS, arn).GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &arn})
		if err != nil {
			return "", 0, flow.FromAWS(err, flow.Internal, "GetPublicKey for %s", arn)
		}
		if !bytes.Equal(out.PublicKey, pub) {
			return "", 0, flow.Errorf(flow.InvalidSecret, "secret %q version %s holds a private key whose public key (SHA-256 %s) differs from the public key of %s (SHA-256 %s): it is not the material already bound to the key",
				ref.SecretID, version, Fingerprint(pub), arn, Fingerprint(out.PublicKey))
		}
	}
	return version, n, nil
}

// Fingerprint is a short, loggable SHA-256 fingerprint of a public key.
func Fingerprint(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// storeGenerated generates 32 random bytes (SYMMETRIC_DEFAULT) and stores
// them as version `version` of the secret, labelled newMaterialStage; the
// version id is derived from the execution, so a retried stage finds the
// version it already wrote.
func (st *Stage) storeGenerated(ctx context.Context, r *flow.Request, version string) error {
	buf := make([]byte, renewal.SymmetricLength)
	defer clear(buf)
	if _, err := rand.Read(buf); err != nil {
		return flow.Wrap(flow.Internal, err, "generating key material")
	}
	_, err := st.Secrets.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId: &r.SecretID, SecretBinary: buf, ClientRequestToken: &version, VersionStages: []string{r.NewMaterialStage},
	})
	var exists *smtypes.ResourceExistsException
	if errors.As(err, &exists) {
		err = nil // this execution stored it already
	}
	if err != nil {
		return flow.FromAWS(err, flow.Internal, "storing generated key material in secret %q", r.SecretID)
	}
	telemetry.Logger(ctx).Info("new key material generated and stored", "secretId", r.SecretID, "secretVersionId", version, "stage", r.NewMaterialStage)
	return nil
}

// fetchItem asks for import parameters for the plan's current item.
func (st *Stage) fetchItem(ctx context.Context, s flow.State) (flow.State, error) {
	w, pr := s.Plan.Wrapping, s.Progress
	it := s.Current()
	if it == nil {
		pr.Pending = false
		return s, nil
	}
	fetches := 0
	if pr.Token != nil {
		fetches = pr.Token.Fetches
	}
	if fetches >= st.Settings.MaxTokenFetches {
		return s, flow.Errorf(flow.TokenRefreshLimitExceeded, "import parameters for %s (material %s) were fetched %d times in this execution (limit %d); each token was too close to expiry when the import stage got it", it.KeyARN, flow.ShortID(it.KeyMaterialID), fetches, st.Settings.MaxTokenFetches)
	}
	out, err := kmsaccess.ForKeyIn(st.KMS, it.KeyARN, it.Region).GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId: &it.KeyARN, WrappingAlgorithm: types.AlgorithmSpec(w.Algorithm), WrappingKeySpec: types.WrappingKeySpec(w.KeySpec),
	})
	if err != nil {
		return s, gpiErr(err, it.KeyARN, w)
	}
	defer clear(out.ImportToken)
	if out.ParametersValidTo == nil || len(out.ImportToken) == 0 || len(out.PublicKey) == 0 {
		return s, flow.Errorf(flow.Internal, "GetParametersForImport for %s returned an incomplete answer", it.KeyARN)
	}
	issued := st.now().UTC()
	rec := records.Token{
		KeyARN: s.Key.ARN, TokenID: newID(), WrappingAlgorithm: w.Algorithm, WrappingKeySpec: w.KeySpec,
		IssuedAt: issued, ParametersValidTo: out.ParametersValidTo.UTC(), ExecutionID: s.Execution.ID, Status: records.TokenIssued,
		SecretVersionID: it.SecretVersionID, PublicKey: out.PublicKey, ImportToken: out.ImportToken,
		TargetKeyARN: it.KeyARN, Region: it.Region, ImportType: it.ImportType, KeyMaterialID: it.KeyMaterialID,
	}
	rec.SK = records.TokenSK(issued, rec.TokenID)
	if err := st.Tokens.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording import parameters for %s", it.KeyARN)
	}
	pr.Token = &flow.TokenRef{ID: rec.SK, ParametersValidTo: rec.ParametersValidTo, Fetches: fetches + 1}
	telemetry.Logger(ctx).Info("import parameters fetched", "tokenId", rec.SK, "parametersValidTo", rec.ParametersValidTo, "item", pr.Item,
		"targetKeyArn", it.KeyARN, "region", it.Region, "importType", it.ImportType, "keyMaterialId", flow.ShortID(it.KeyMaterialID),
		"wrappingAlgorithm", w.Algorithm, "wrappingKeySpec", w.KeySpec, "secretVersionId", it.SecretVersionID, "fetch", pr.Token.Fetches)
	return s, nil
}

// gpiErr names a GetParametersForImport error.
func gpiErr(err error, arn string, w flow.Wrapping) error {
	var is *types.KMSInvalidStateException
	var uo *types.UnsupportedOperationException
	switch {
	case errors.As(err, &is), errors.As(err, &uo):
		return kmsaccess.Refused("GetParametersForImport", arn, err)
	case flow.AWSCode(err) == "ValidationException":
		return flow.Wrap(flow.UnsupportedWrapping, err, "GetParametersForImport for %s with %s/%s", arn, w.Algorithm, w.KeySpec)
	}
	return flow.FromAWS(err, flow.Internal, "GetParametersForImport for %s", arn)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Package renewal decides a key's plan of imports. Decide is a pure
// function: no context, no client, no clock. The fetch stage gathers the
// facts (what DescribeKey said of the key and of each replica, the key's
// materials as ListKeyRotations lists them, the material map, what reading
// each secret version found), calls Decide, and writes what it returns.
// The facts hold no key material: the gatherer reads each secret, checks
// its shape, zeroes it and keeps only its version id, length or error.
package renewal

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// SymmetricLength is the length of SYMMETRIC_DEFAULT key material.
const SymmetricLength = 32

// SecretRef names one secret read: a version id, or a staging label when
// the version is not pinned.
type SecretRef struct {
	SecretID  string
	VersionID string
	Stage     string
}

// SecretRead is what reading a SecretRef found: the version read and the
// material's length, or why it is not usable (a named flow error:
// SecretNotFound, InvalidSecret, ...). Never the material itself.
type SecretRead struct {
	VersionID string
	Length    int
	Err       error
}

// Replica is a replica of the key, as DescribeKey in its Region said.
type Replica struct {
	Region string
	ARN    string
	Meta   *types.KeyMetadata
}

// Facts is everything Decide needs.
type Facts struct {
	Request     *flow.Request
	ExecutionID string
	Now         time.Time
	// Key is the primary's (or the given key's) DescribeKey.
	Key      *types.KeyMetadata
	Replicas []Replica
	// Materials is ListKeyRotations(ALL_KEY_MATERIAL) of the key, when
	// ListsMaterials says it is listed; Map is the material map then.
	Materials []types.RotationsListEntry
	Map       map[string]records.Material
	// Secrets holds the reads SecretsToRead asked for.
	Secrets map[SecretRef]SecretRead
}

// Decision is the plan, and what the stage must do before it fetches.
type Decision struct {
	Plan *flow.Plan
	// Generate: store generated material as version Plan.NewSecretVersionID
	// (with label Request.NewMaterialStage) before anything is imported.
	Generate bool
	// Bootstrapped names the material mapped to the request's secret
	// version, for a key with one material the map did not know yet.
	Bootstrapped string
}

// ListsMaterials says whether the plan is built from KMS's list of the
// key's materials: a symmetric key that reports them (or must, to be
// rotated or renewed Region by Region).
func ListsMaterials(r *flow.Request, md *types.KeyMetadata) bool {
	return md.KeySpec == types.KeySpecSymmetricDefault &&
		(kmsaccess.ListsMaterials(md) || r.Rotate || aws.ToBool(md.MultiRegion) || len(r.Regions) > 0)
}

// Deployment is what the deployment's roles allow (template parameters
// RotateOnDemand, GeneratedMaterial, MaterialProofs).
type Deployment struct {
	NoRotation, NoGeneratedMaterial, NoMaterialProofs bool
}

// Permitted refuses, before anything is read or changed, a request the
// deployment's roles would deny halfway: a rotation where RotateOnDemand
// is false (the new material would be imported, then RotateKeyOnDemand
// denied), generated material where GeneratedMaterial is false, and an
// HMAC or asymmetric key where MaterialProofs is false (its proof reads
// the material secret).
func Permitted(r *flow.Request, spec types.KeySpec, d Deployment) error {
	switch {
	case d.NoRotation && (r.Rotate || r.RotateEvery != ""):
		return flow.Errorf(flow.InvalidInput, "field \"rotate\"/\"rotateEvery\" asks for a rotation to new material, which this deployment does not allow (template parameter RotateOnDemand is false): renew without them, or deploy with RotateOnDemand=true")
	case d.NoGeneratedMaterial && r.GenerateMaterial:
		return flow.Errorf(flow.InvalidInput, "field \"generateMaterial\" is true, which this deployment does not allow (template parameter GeneratedMaterial is false): put the new material in the secret under %q yourself, or deploy with GeneratedMaterial=true", r.NewMaterialStage)
	case d.NoMaterialProofs && spec != types.KeySpecSymmetricDefault:
		return flow.Errorf(flow.InvalidInput, "key spec %s is proven against its material, which this deployment does not allow (template parameter MaterialProofs is false): deploy with MaterialProofs=true to renew HMAC and asymmetric keys", spec)
	}
	return nil
}

// Refuse is Decide's first check, on the key alone: the gatherer calls it
// before it reads anything else, so a refused key costs one DescribeKey.
func Refuse(r *flow.Request, md *types.KeyMetadata) error {
	arn := aws.ToString(md.Arn)
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
	return nil
}

// RequestSecret is the request's own secret read.
func RequestSecret(r *flow.Request) SecretRef {
	return SecretRef{SecretID: r.SecretID, VersionID: r.SecretVersionID, Stage: r.SecretVersionStage}
}

// NewMaterialSecret is the read of a rotation's new material.
func NewMaterialSecret(r *flow.Request) SecretRef {
	return SecretRef{SecretID: r.SecretID, Stage: r.NewMaterialStage}
}

// materialSecret is the read of a mapped material's version.
func materialSecret(r *flow.Request, m records.Material) SecretRef {
	id := m.SecretID
	if id == "" {
		id = r.SecretID
	}
	return SecretRef{SecretID: id, VersionID: m.SecretVersionID}
}

// SecretsToRead lists the reads Decide looks up, given the materials and
// the map: every mapped material's version, the request's secret when
// the key lists no material or one the map does not know yet, and the
// rotation's new material.
func SecretsToRead(r *flow.Request, rots []types.RotationsListEntry, mm map[string]records.Material) []SecretRef {
	var refs []SecretRef
	if len(rots) == 0 || (len(mm) == 0 && len(rots) == 1) {
		refs = append(refs, RequestSecret(r))
	}
	for _, e := range rots {
		if m, ok := mm[aws.ToString(e.KeyMaterialId)]; ok {
			refs = append(refs, materialSecret(r, m))
		}
	}
	if r.Rotate && r.NewMaterialStage != "" {
		refs = append(refs, NewMaterialSecret(r))
	}
	return refs
}

// GeneratedVersionID is the secret version id (UUID form) of material
// generated by an execution: derived from the execution, so a retried
// stage finds the version it already stored.
func GeneratedVersionID(execID string) string {
	h := sha256.Sum256([]byte("kms-reimport generated material\x00" + execID))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Decide builds the plan from the facts, or returns the named error that
// refuses it. Every material must have a readable secret version of the
// right shape, every renewed replica must be importable, and the wrapping
// must fit the key, before the plan exists: a wrong secret or key costs
// nothing and changes nothing.
func Decide(f Facts) (Decision, error) {
	r, md := f.Request, f.Key
	if err := Refuse(r, md); err != nil {
		return Decision{}, err
	}
	p := &flow.Plan{Rotate: r.Rotate, Listed: ListsMaterials(r, md), SecretVersionID: r.SecretVersionID}
	d := Decision{Plan: p}
	versionOf, err := d.versions(f)
	if err != nil {
		return Decision{}, err
	}
	if r.Rotate {
		if err := d.rotation(f, versionOf); err != nil {
			return Decision{}, err
		}
		p.SecretVersionID = p.NewSecretVersionID
	}
	if p.Targets, err = targets(f); err != nil {
		return Decision{}, err
	}
	materialLen, err := d.items(f, versionOf)
	if err != nil {
		return Decision{}, err
	}
	if p.Wrapping, err = ChooseWrapping(r, md.KeySpec, materialLen); err != nil {
		return Decision{}, err
	}
	return d, nil
}

// versions maps every listed material to the secret version that holds
// it (bootstrapping the map from the request for a key with one material
// the map does not know), checking each was read.
func (d *Decision) versions(f Facts) (map[string]string, error) {
	r, arn, mm := f.Request, aws.ToString(f.Key.Arn), f.Map
	versionOf := map[string]string{}
	if len(mm) == 0 && len(f.Materials) == 1 {
		read := f.Secrets[RequestSecret(r)]
		if read.Err != nil {
			return nil, read.Err
		}
		id := aws.ToString(f.Materials[0].KeyMaterialId)
		versionOf[id], d.Bootstrapped = read.VersionID, id
		if f.Materials[0].KeyMaterialState == types.KeyMaterialStateCurrent {
			d.Plan.SecretVersionID = read.VersionID
		}
		return versionOf, nil
	}
	for _, e := range f.Materials {
		id := aws.ToString(e.KeyMaterialId)
		rec, ok := mm[id]
		if !ok {
			return nil, flow.Errorf(flow.MaterialSecretMissing, "key %s has key material %s (state %s) that the material map does not know: no secret version holds it, so it cannot be reimported and the key will become unusable at its ValidTo %s; record which version of secret %q holds it (docs/rotation.md)", arn, flow.ShortID(id), e.KeyMaterialState, fmtTime(e.ValidTo), r.SecretID)
		}
		ref := materialSecret(r, rec)
		if read := f.Secrets[ref]; read.Err != nil {
			if flow.NameOf(read.Err) == flow.SecretNotFound {
				return nil, flow.Wrap(flow.MaterialSecretMissing, read.Err, "key material %s of key %s is held by version %s of secret %q, which cannot be read", flow.ShortID(id), arn, rec.SecretVersionID, ref.SecretID)
			}
			return nil, read.Err
		}
		versionOf[id] = rec.SecretVersionID
		if e.KeyMaterialState == types.KeyMaterialStateCurrent {
			d.Plan.SecretVersionID = rec.SecretVersionID
		}
	}
	return versionOf, nil
}

// rotation finds the rotation's new material. An earlier execution's new
// material (pending rotation in KMS, or current in KMS and pending
// rotation in the map) is resumed: only rotated to, or recorded as
// rotated. Else the new material is the user's or generated, and the key
// must still have an on-demand rotation left.
func (d *Decision) rotation(f Facts, versionOf map[string]string) error {
	p, arn := d.Plan, aws.ToString(f.Key.Arn)
	if len(f.Materials) == 0 {
		return flow.Errorf(flow.InvalidInput, "key %s has no key material yet: import its first material without \"rotate\"", arn)
	}
	for _, e := range f.Materials {
		id := aws.ToString(e.KeyMaterialId)
		switch {
		case e.ImportState != types.ImportStateImported:
		case e.KeyMaterialState == types.KeyMaterialStatePendingRotation,
			e.KeyMaterialState == types.KeyMaterialStatePendingMultiRegionImportAndRotation:
			p.Resumed, p.NewMaterialID, p.NewSecretVersionID = true, id, versionOf[id]
			return nil
		case e.KeyMaterialState == types.KeyMaterialStateCurrent && f.Map[id].State == records.MaterialPendingRotation:
			// The earlier execution's rotation finished after it stopped.
			t := f.Now.UTC()
			if at := f.Map[id].RotatedAt; at != nil {
				t = *at
			}
			p.Resumed, p.Rotated, p.RotationStartedAt, p.NewMaterialID, p.NewSecretVersionID = true, true, &t, id, versionOf[id]
			return nil
		}
	}
	if err := rotation.CheckQuota(arn, f.Materials); err != nil {
		return err
	}
	return d.newMaterial(f)
}

// newMaterial picks the rotation's new material: the user's version at
// newMaterialStage, or material to generate and store first, so it is
// never lost if a later step fails.
func (d *Decision) newMaterial(f Facts) error {
	r, p := f.Request, d.Plan
	read := f.Secrets[NewMaterialSecret(r)]
	switch {
	case read.Err == nil:
		rec, mapped := records.MaterialByVersion(f.Map, read.VersionID)
		if !mapped {
			// With generateMaterial, an unmapped version there is the one
			// generated by an earlier attempt.
			p.NewSecretVersionID, p.Generated = read.VersionID, r.GenerateMaterial
			return nil
		}
		if !r.GenerateMaterial {
			return flow.Errorf(flow.NewMaterialInvalid, "the version at stage %s of secret %q (%s) already holds key material %s of the key: put the new material in a new version with that label first", r.NewMaterialStage, r.SecretID, read.VersionID, flow.ShortID(rec.KeyMaterialID))
		}
	case flow.NameOf(read.Err) != flow.SecretNotFound:
		return read.Err
	case !r.GenerateMaterial:
		return flow.Wrap(flow.NewMaterialInvalid, read.Err, "no new key material at stage %s of secret %q", r.NewMaterialStage, r.SecretID)
	}
	p.NewSecretVersionID, p.Generated, d.Generate = GeneratedVersionID(f.ExecutionID), true, true
	return nil
}

// targets are the primary and every replica, each replica importable,
// and marked skipped outside the request's "regions".
func targets(f Facts) ([]flow.Target, error) {
	r, md, arn := f.Request, f.Key, aws.ToString(f.Key.Arn)
	ts := []flow.Target{{Region: kmsaccess.RegionOf(arn), KeyARN: arn, StateBefore: string(md.KeyState), ValidToBefore: md.ValidTo}}
	for _, rp := range f.Replicas {
		rmd := *rp.Meta
		if rmd.Arn == nil {
			rmd.Arn = aws.String(rp.ARN)
		}
		// A replica has its primary's key spec; origin and state are its
		// own. The refusal carries the facts the registry decides on. A
		// replica outside the request's "regions" is not renewed, so its
		// state (say PendingDeletion) blocks nothing.
		renewed := len(r.Regions) == 0 || slices.Contains(r.Regions, rp.Region)
		if err := kmsaccess.CheckReplica(&rmd, arn); err != nil && renewed {
			return nil, err
		}
		ts = append(ts, flow.Target{Region: rp.Region, KeyARN: rp.ARN, Replica: true, StateBefore: string(rmd.KeyState), ValidToBefore: rmd.ValidTo})
	}
	for _, g := range r.Regions {
		if !slices.ContainsFunc(ts, func(t flow.Target) bool { return t.Region == g }) {
			return nil, flow.Errorf(flow.InvalidInput, "field \"regions\" names %s, but key %s has no primary or replica there", g, arn)
		}
	}
	if len(r.Regions) > 0 {
		for i := range ts {
			ts[i].Skipped = !slices.Contains(r.Regions, ts[i].Region)
		}
	}
	return ts, nil
}

// items lists the imports: every listed material into every renewed
// target, then the key's one material where KMS lists none, then the
// rotation's new material. It returns the length of the material the
// wrapping must fit.
func (d *Decision) items(f Facts, versionOf map[string]string) (int, error) {
	p := d.Plan
	for _, e := range f.Materials {
		id := aws.ToString(e.KeyMaterialId)
		if p.Resumed && (id == p.NewMaterialID || e.ImportState == types.ImportStateImported) {
			continue // imported by the earlier execution; only rotate
		}
		for _, t := range p.Targets {
			if t.Skipped || (t.Replica && p.Resumed) {
				continue
			}
			p.Items = append(p.Items, flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, KeyMaterialID: id,
				SecretVersionID: versionOf[id], ImportType: flow.ExistingKeyMaterial})
		}
	}
	if len(f.Materials) == 0 {
		return d.onlyMaterial(f)
	}
	if f.Request.Rotate && !p.Rotated {
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
	return SymmetricLength, nil
}

// onlyMaterial plans the key's one material where KMS names none (a
// first import, an HMAC or asymmetric key, or a KMS that lists none):
// from the request's secret into the primary with ImportType omitted (as
// for any first import, and as KMS requires for HMAC and asymmetric keys),
// then the same material into each renewed replica.
func (d *Decision) onlyMaterial(f Facts) (int, error) {
	p, md := d.Plan, f.Key
	read := f.Secrets[RequestSecret(f.Request)]
	if read.Err != nil {
		return 0, read.Err
	}
	p.SecretVersionID, p.NewSecretVersionID = read.VersionID, read.VersionID
	for _, t := range p.Targets {
		if t.Skipped {
			continue
		}
		it := flow.PlanItem{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, SecretVersionID: read.VersionID, New: true}
		if t.Replica && md.KeySpec == types.KeySpecSymmetricDefault {
			it.ImportType = flow.ExistingKeyMaterial
		}
		p.Items = append(p.Items, it)
	}
	return read.Length, nil
}

// ChooseWrapping takes the request's algorithm and spec, the defaults for
// the key spec where it names none, and checks the combination: the
// rotation's choice, and kms-reimport register's check.
func ChooseWrapping(r *flow.Request, spec types.KeySpec, materialLen int) (flow.Wrapping, error) {
	alg, ks := wrapping.Defaults(spec)
	w := flow.Wrapping{Algorithm: r.WrappingAlgorithm, KeySpec: r.WrappingKeySpec, Defaulted: r.WrappingAlgorithm == "" && r.WrappingKeySpec == ""}
	if w.Algorithm == "" {
		w.Algorithm = string(alg)
	}
	if w.KeySpec == "" {
		w.KeySpec = string(ks)
	}
	if err := wrapping.Check(spec, types.AlgorithmSpec(w.Algorithm), types.WrappingKeySpec(w.KeySpec), materialLen, r.AllowLegacyWrapping); err != nil {
		return flow.Wrapping{}, flow.Wrap(flow.UnsupportedWrapping, err, "wrapping %s material", spec)
	}
	return w, nil
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339)
}

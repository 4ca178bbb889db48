// Package importmaterial is the third stage: it checks that the import
// token of the plan's current item has enough validity left and calls
// ImportKeyMaterial with the wrapped material and the requested expiry,
// in the item's Region.
package importmaterial

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Tokens is the part of the token store this stage calls: the one read
// of the token bytes, and the record's final statuses.
type Tokens interface {
	GetWithToken(ctx context.Context, keyARN, sk string) (*records.Token, error)
	MarkUsedWith(ctx context.Context, keyARN, sk, keyMaterialID string) error
	MarkExpired(ctx context.Context, keyARN, sk, reason string) error
	MarkFailed(ctx context.Context, keyARN, sk, reason string) error
}

// Materials is the part of the material map this stage reads and
// writes.
type Materials interface {
	Put(ctx context.Context, r records.Material) error
	Merge(ctx context.Context, r records.Material) error
	List(ctx context.Context, keyARN string) (map[string]records.Material, error)
}

// Leases is the part of the lease store this stage calls.
type Leases interface {
	Fence(ctx context.Context, arn, owner string, now time.Time) error
}

// Stage imports key material.
type Stage struct {
	KMS              kmsaccess.Regional
	Tokens           Tokens
	Materials        Materials
	Leases           Leases
	MinTokenValidity time.Duration
	Now              func() time.Time
	// ListSettle is how long, after KMS refused this execution's new
	// material as incorrect, the stage keeps reading ListKeyRotations for
	// the material an earlier attempt imported: KMS is eventually
	// consistent (docs/aws-behaviour.md row 12), and a retry right after
	// a crash may read the key as it was before that import (0:
	// DefaultListSettle).
	ListSettle time.Duration
}

// DefaultListSettle is within the "less than a few seconds" KMS's changes
// typically take to propagate, and far below the function's Timeout.
const DefaultListSettle = 3 * time.Second

// listReads is how many times ListSettle is read across.
const listReads = 4

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// Run imports the plan's current item and moves to the next.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	if err := s.CheckToken(); err != nil {
		return s, err
	}
	r, k, it := s.Request, s.Key, s.Current()
	log := telemetry.Logger(ctx).With("targetKeyArn", it.KeyARN, "region", it.Region, "item", s.Progress.Item)
	rec, err := st.Tokens.GetWithToken(ctx, k.ARN, s.Progress.Token.ID)
	if err != nil {
		return s, tokenErr(err)
	}
	defer clear(rec.ImportToken)
	if rec.TargetKeyARN != "" && rec.TargetKeyARN != it.KeyARN {
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is for %s, not for the plan's item %s", rec.SK, rec.TargetKeyARN, it.KeyARN)
	}
	validTo := requestedValidTo(r)
	id, at := it.KeyMaterialID, st.now()
	switch {
	case rec.Status == records.TokenUsed:
		// A retry after a success whose answer was lost: KMS already has
		// the material with this token; don't import twice.
		log.Info("token already used; import was done by an earlier attempt", "tokenId", rec.SK)
		if rec.KeyMaterialID != "" {
			id = rec.KeyMaterialID
		}
		at = rec.UpdatedAt
	case rec.Status != records.TokenWrapped:
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is %s; the import needs a wrapped token", rec.SK, rec.Status)
	default:
		if id, err = st.importItem(ctx, s, rec, validTo, at); err != nil {
			return s, err
		}
	}
	if err := st.recordMaterial(ctx, s, it, id, at.UTC(), validTo); err != nil {
		return s, err
	}
	t := at.UTC()
	it.KeyMaterialID, it.ImportedAt, it.ValidTo = id, &t, validTo
	s.Import = &flow.ImportResult{ImportedAt: t, ExpirationModel: string(r.ExpirationModel), ValidTo: validTo}
	log.Info("key material imported", "tokenId", rec.SK, "importType", it.ImportType, "keyMaterialId", flow.ShortID(id),
		"secretVersionId", it.SecretVersionID, "expirationModel", r.ExpirationModel, "validTo", validTo)
	s.Advance()
	return s, nil
}

// requestedValidTo is the expiry asked for, in whole seconds as KMS wants
// it; nil for material that does not expire.
func requestedValidTo(r *flow.Request) *time.Time {
	if r.ExpirationModel != flow.Expires || r.ValidTo == nil {
		return nil
	}
	v := r.ValidTo.UTC().Truncate(time.Second)
	return &v
}

// importItem refuses a token too close to its expiry, fences the lease,
// calls ImportKeyMaterial for the current item and marks the token used.
// It returns the KeyMaterialId KMS named (else the item's).
func (st *Stage) importItem(ctx context.Context, s flow.State, rec *records.Token, validTo *time.Time, now time.Time) (string, error) {
	k, it := s.Key, s.Current()
	if left := rec.ParametersValidTo.Sub(now); left < st.MinTokenValidity {
		if err := st.Tokens.MarkExpired(ctx, k.ARN, rec.SK, fmt.Sprintf("remaining validity %s is below the required %s", left.Truncate(time.Second), st.MinTokenValidity)); err != nil {
			return "", tokenErr(err)
		}
		telemetry.Logger(ctx).Warn("import token too close to expiry; fresh parameters needed", "tokenId", rec.SK, "parametersValidTo", rec.ParametersValidTo, "remaining", left.String())
		return "", flow.Errorf(flow.ImportTokenExpiring, "import token %s (valid to %s) has %s left, less than the required %s", rec.SK, rec.ParametersValidTo.Format(time.RFC3339), left.Truncate(time.Second), st.MinTokenValidity)
	}
	in := &kms.ImportKeyMaterialInput{
		KeyId:                &it.KeyARN,
		ImportToken:          rec.ImportToken,
		EncryptedKeyMaterial: rec.EncryptedKeyMaterial,
		ExpirationModel:      types.ExpirationModelType(s.Request.ExpirationModel),
		ValidTo:              validTo,
		// Empty for a first import and for HMAC and asymmetric keys:
		// the SDK then omits it, as KMS requires for those keys.
		ImportType: types.ImportType(it.ImportType),
	}
	if it.ImportType == flow.ExistingKeyMaterial && it.KeyMaterialID != "" {
		in.KeyMaterialId = &it.KeyMaterialID
	}
	if err := fence(ctx, st.Leases, k.ARN, s.Execution.ID, now); err != nil {
		return "", err
	}
	out, err := kmsaccess.ForKeyIn(st.KMS, it.KeyARN, it.Region).ImportKeyMaterial(ctx, in)
	var wrong *types.IncorrectKeyMaterialException
	if err != nil && it.Replica && it.New && errors.As(err, &wrong) {
		// The replica may not know the primary's new material yet:
		// multi-Region properties reach replicas asynchronously. The
		// token stays usable; the state machine retries with backoff.
		return "", flow.Wrap(flow.ReplicaNotSynced, err, "ImportKeyMaterial for replica %s: material %s is not associated with it yet", it.KeyARN, flow.ShortID(it.KeyMaterialID))
	}
	if err != nil && errors.As(err, &wrong) && it.New && !it.Replica && it.ImportType == flow.NewKeyMaterial {
		// An earlier attempt of this execution may have imported the new
		// material and crashed before recording it: KMS then refuses the
		// same material as new again. Recognise it and go on.
		if id, found, ferr := st.settledOrphan(ctx, s, validTo); ferr != nil || found {
			if ferr != nil {
				return "", ferr
			}
			telemetry.Logger(ctx).Warn("new key material found imported by an earlier attempt; recorded now", "keyMaterialId", flow.ShortID(id), "tokenId", rec.SK)
			if err := st.Tokens.MarkUsedWith(ctx, k.ARN, rec.SK, id); err != nil {
				return "", tokenErr(err)
			}
			return id, nil
		}
	}
	if err != nil {
		return "", st.importFailed(ctx, k.ARN, it.KeyARN, rec.SK, err)
	}
	id := it.KeyMaterialID
	if out.KeyMaterialId != nil && *out.KeyMaterialId != "" {
		id = *out.KeyMaterialId
	}
	if err := st.Tokens.MarkUsedWith(ctx, k.ARN, rec.SK, id); err != nil {
		return "", tokenErr(err)
	}
	return id, nil
}

// recordMaterial notes in the material map, at once, which secret version
// holds the material just imported into the primary: a rerun after a
// later failure knows it. New material of a rotation is recorded pending
// rotation (the next execution only rotates), and its id is what the
// replicas' items import.
func (st *Stage) recordMaterial(ctx context.Context, s flow.State, it *flow.PlanItem, id string, at time.Time, validTo *time.Time) error {
	r, k, p := s.Request, s.Key, s.Plan
	if it.Replica {
		return nil
	}
	if id == "" {
		// KMS named no material (HMAC, asymmetric, or a KMS that does not
		// track materials): nothing to map, unless replicas need the id.
		if it.New && p.HasReplicaItems() {
			return flow.Errorf(flow.Internal, "ImportKeyMaterial for %s returned no KeyMaterialId, which its replicas' imports need", it.KeyARN)
		}
		return nil
	}
	mr := records.Material{KeyARN: k.ARN, KeyMaterialID: id, SecretID: r.SecretID, SecretVersionID: it.SecretVersionID,
		State: records.MaterialImported, FirstImportedAt: at, LastImportedAt: at, ExecutionID: s.Execution.ID}
	if !it.New {
		if err := st.Materials.Merge(ctx, mr); err != nil {
			return flow.FromAWS(err, flow.Internal, "recording key material %s of %s", flow.ShortID(id), k.ARN)
		}
		return nil
	}
	mr.State, mr.Generated = records.MaterialCurrent, p.Generated // a first import
	if p.Rotate {
		mr.State = records.MaterialPendingRotation
	}
	if validTo != nil {
		mr.ValidTo = map[string]time.Time{it.Region: *validTo}
	}
	if err := st.Materials.Put(ctx, mr); err != nil {
		return flow.FromAWS(err, flow.Internal, "recording new key material %s of %s", flow.ShortID(id), k.ARN)
	}
	p.NewMaterialID = id
	for i := range p.Items {
		if p.Items[i].New && p.Items[i].Replica {
			p.Items[i].KeyMaterialID = id
		}
	}
	return nil
}

// settledOrphan is orphan read again over ListSettle until the material
// is found: what an earlier attempt imported a moment ago may not be
// listed yet.
func (st *Stage) settledOrphan(ctx context.Context, s flow.State, validTo *time.Time) (string, bool, error) {
	settle := st.ListSettle
	if settle <= 0 {
		settle = DefaultListSettle
	}
	for read := 1; ; read++ {
		id, found, err := st.orphan(ctx, s, validTo)
		if err != nil || found || read == listReads {
			return id, found, err
		}
		select {
		case <-ctx.Done():
			return "", false, nil
		case <-time.After(settle / (listReads - 1)):
		}
	}
}

// orphan looks, after KMS refused this execution's new material as
// incorrect, for the material an earlier attempt of the same execution
// imported as NEW_KEY_MATERIAL before it crashed: a material of the key
// that the material map does not know (every new material is mapped
// right after its import), imported and pending rotation, with this
// execution's expiration model and ValidTo (fixed when its input was
// read, the same for every attempt). Exactly one such material is it;
// none or several are not recognised (the refusal stands).
func (st *Stage) orphan(ctx context.Context, s flow.State, validTo *time.Time) (string, bool, error) {
	k := s.Key
	mm, err := st.Materials.List(ctx, k.ARN)
	if err != nil {
		return "", false, flow.FromAWS(err, flow.Internal, "material map of %s", k.ARN)
	}
	listed, err := kmsaccess.ListMaterials(ctx, st.KMS.In(kmsaccess.RegionOf(k.ARN)), k.ARN)
	if err != nil {
		return "", false, err
	}
	var found []string
	for _, e := range listed {
		id := aws.ToString(e.KeyMaterialId)
		if _, mapped := mm[id]; mapped || id == "" || e.ImportState != types.ImportStateImported || !pendingRotation(e.KeyMaterialState) {
			continue
		}
		if string(e.ExpirationModel) != string(s.Request.ExpirationModel) || !sameTime(e.ValidTo, validTo) {
			continue
		}
		found = append(found, id)
	}
	if len(found) != 1 {
		return "", false, nil
	}
	return found[0], true, nil
}

func pendingRotation(st types.KeyMaterialState) bool {
	return st == types.KeyMaterialStatePendingRotation || st == types.KeyMaterialStatePendingMultiRegionImportAndRotation
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// fence proves the execution still holds the key's lease right before it
// changes KMS.
func fence(ctx context.Context, l Leases, arn, execID string, now time.Time) error {
	var lost *records.LeaseLost
	if err := l.Fence(ctx, arn, execID, now); errors.As(err, &lost) {
		return flow.Wrap(flow.LeaseLost, err, "not importing into %s", arn)
	} else if err != nil {
		return flow.FromAWS(err, flow.Internal, "lease of %s", arn)
	}
	return nil
}

// tokenErr names a token store error.
func tokenErr(err error) error {
	if errors.Is(err, records.ErrConflict) {
		return flow.Wrap(flow.TokenStateConflict, err, "token record")
	}
	return flow.FromAWS(err, flow.Internal, "token record")
}

// importFailed names a KMS refusal of the import into target (the key or
// a replica) and settles the token record of arn.
func (st *Stage) importFailed(ctx context.Context, arn, target, sk string, err error) error {
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
			return tokenErr(e)
		}
		return named
	case errors.As(err, &wrong):
		named = flow.Wrap(flow.IncorrectKeyMaterial, err, "ImportKeyMaterial for %s: the material is not the one already bound to the key", arn)
	case errors.As(err, &invalid):
		named = flow.Wrap(flow.InvalidImportToken, err, "ImportKeyMaterial for %s", arn)
	case errors.As(err, &cipher):
		named = flow.Wrap(flow.InvalidCiphertext, err, "ImportKeyMaterial for %s: KMS could not unwrap the material", arn)
	case errors.As(err, &state), errors.As(err, &nf):
		named = kmsaccess.Refused("ImportKeyMaterial", target, err)
	default:
		// Transient errors leave the token as it is: the retried import
		// uses it again.
		named = flow.FromAWS(err, flow.Internal, "ImportKeyMaterial for %s", arn)
		if flow.NameOf(named) == flow.AWSTransient {
			return named
		}
	}
	if e := st.Tokens.MarkFailed(ctx, arn, sk, flow.NameOf(named)+": "+flow.AWSCode(err)); e != nil {
		return tokenErr(e)
	}
	return named
}

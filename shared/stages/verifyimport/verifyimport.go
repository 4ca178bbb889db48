// Package verifyimport is the last stage: it proves the key is Enabled with
// the expiry asked for and that it works, then writes the import record.
package verifyimport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// The stores this stage uses, as small as it uses them: records.Imports,
// records.Tokens, records.Leases, records.Materials and registry.Store
// in the functions; in-memory fakes in unit tests.
type (
	// Audit writes the import record (once: records.ErrRecorded after).
	Audit interface {
		Put(context.Context, records.Import) error
	}
	// Tokens settles the token records an execution left open.
	Tokens interface {
		AbandonExecution(ctx context.Context, keyARN, executionID, reason string) (int, error)
	}
	// Leases fences a change of the key and gives the lease back.
	Leases interface {
		Fence(ctx context.Context, arn, owner string, now time.Time) error
		Release(ctx context.Context, arn, owner string) error
	}
	// Materials is the material map.
	Materials interface {
		List(ctx context.Context, keyARN string) (map[string]records.Material, error)
		Put(context.Context, records.Material) error
	}
	// Registry notes a verified renewal in one conditional write.
	Registry interface {
		RecordRenewal(context.Context, registry.Renewal) (bool, error)
	}
)

// Stage verifies an import and records it.
type Stage struct {
	KMS kmsaccess.Regional
	// Secrets is read for HMAC and asymmetric keys, whose proof compares
	// KMS's answer with one computed from the pinned secret version.
	Secrets   keymaterial.SecretReader
	Audit     Audit
	Tokens    Tokens
	Leases    Leases
	Materials Materials
	// Registry keeps the key's renewal status (and registers it when the
	// request asks to).
	Registry Registry
	// MaxChecks bounds the verify passes of one execution (0: the default).
	MaxChecks int
	Now       func() time.Time
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// home is the KMS client of the Region of arn.
func (st *Stage) home(arn string) kmsaccess.API { return kmsaccess.ForKey(st.KMS, arn) }

// Run rotates (when asked) and verifies every target of the plan, then
// records materials, audit trail and registry.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	if err := s.CheckFetched(); err != nil {
		return s, err
	}
	r, k, p := s.Request, s.Key, s.Plan
	if pr := s.Progress; pr != nil && pr.Pending {
		return s, flow.Errorf(flow.InvalidInput, "the plan still has imports to do (item %d of %d)", pr.Item, len(p.Items))
	}
	log := telemetry.Logger(ctx)
	p.Recheck, p.Waiting = false, ""
	p.Checks++
	o, waiting, err := st.observe(ctx, s)
	if err != nil {
		return s, err
	}
	if waiting != "" {
		// KMS is not (yet) as the imports left it: a rotation still
		// running, or reads that do not show the latest writes.
		if p.Checks >= st.maxChecks() {
			return s, flow.Errorf(flow.VerificationFailed, "%s (still so after %d checks)", waiting, p.Checks)
		}
		p.Recheck, p.Waiting = true, waiting
		log.Info("not yet as expected; checking again after a wait", "waiting", waiting, "check", p.Checks)
		return s, nil
	}
	md, rots, replicas := o.md, o.rots, o.replicas
	var rotatedAt *time.Time
	if p.Rotated {
		rotatedAt = p.RotationStartedAt
	}
	proof := "primary not renewed in this execution (replicas only)"
	if md.KeyState == types.KeyStateEnabled {
		if proof, err = st.prove(ctx, md, secretVersion{r.SecretID, p.SecretVersionID}, s.Execution.ID); err != nil {
			return s, err
		}
	}
	now := st.now().UTC()
	if err := st.mapMaterials(ctx, s, rots, rotatedAt, now); err != nil {
		return s, err
	}

	rec := records.Import{
		SK: records.ImportSK(s.Execution.StartTime, s.Execution.ID), KeyARN: k.ARN, KeyID: r.KeyID, RecordedAt: now,
		Outcome: records.ImportSucceeded, ExpirationModel: string(r.ExpirationModel), ValidTo: md.ValidTo, ValidToBefore: k.ValidToBefore,
		KeyStateBefore: k.StateBefore, KeyStateAfter: string(md.KeyState), SecretID: r.SecretID, SecretVersionID: p.SecretVersionID,
		WrappingAlgorithm: p.Wrapping.Algorithm, WrappingKeySpec: p.Wrapping.KeySpec, WrappingDefaulted: p.Wrapping.Defaulted,
		ExecutionID: s.Execution.ID, Verification: proof, Rotated: p.Rotate && p.Rotated, Resumed: p.Resumed,
	}
	if p.Rotate {
		rec.NewMaterialID = p.NewMaterialID
	}
	if s.Import != nil {
		rec.ImportedAt = &s.Import.ImportedAt
	}
	if t := s.LastToken(); t != nil {
		rec.TokenID, rec.TokenFetches = t.ID, t.Fetches
	}
	for _, it := range p.Items {
		rec.Materials = append(rec.Materials, records.ImportMaterial{Region: it.Region, KeyARN: it.KeyARN, KeyMaterialID: it.KeyMaterialID,
			SecretVersionID: it.SecretVersionID, ImportType: it.ImportType, ValidTo: it.ValidTo, TokenID: it.TokenID, ImportedAt: it.ImportedAt})
	}
	for _, t := range p.Targets {
		rec.Regions = append(rec.Regions, records.ImportRegion{Region: t.Region, KeyARN: t.KeyARN, Replica: t.Replica, StateBefore: t.StateBefore,
			StateAfter: t.StateAfter, ValidTo: t.ValidTo, Skipped: t.Skipped})
	}
	if err := st.Audit.Put(ctx, rec); err != nil && !errors.Is(err, records.ErrRecorded) {
		// ErrRecorded: a retried attempt of this stage wrote it already.
		return s, flow.FromAWS(err, flow.Internal, "recording the import of %s", k.ARN)
	}
	renewal := registry.Renewal{KeyARN: k.ARN, Execution: s.Execution.ID, At: now, ValidTo: md.ValidTo, Replicas: replicas, RotatedAt: rotatedAt, Materials: len(rots)}
	if err := st.bookkeep(ctx, s, renewal); err != nil {
		return s, err
	}
	s.Verified = &flow.Verification{KeyState: string(md.KeyState), ValidTo: md.ValidTo, RoundTrip: proof, AuditID: rec.SK}
	s.Summarize()
	log.Info("import verified and recorded", "keyState", md.KeyState, "validTo", md.ValidTo, "imports", len(p.Items), "rotated", p.Rotated, "materials", len(rots), "auditId", rec.SK)
	return s, nil
}

// DefaultMaxChecks bounds the verify passes of one execution; with the
// state machine's 5-second wait between them, about five minutes.
const DefaultMaxChecks = 60

func (st *Stage) maxChecks() int {
	if st.MaxChecks > 0 {
		return st.MaxChecks
	}
	return DefaultMaxChecks
}

// observed is what KMS said about the key and its replicas.
type observed struct {
	md       *types.KeyMetadata
	rots     []types.RotationsListEntry
	replicas []registry.Replica
}

// observe rotates when asked and reads the key, its materials and its
// replicas. A non-empty waiting says what is not yet as expected: the
// caller checks again after a wait, a bounded number of times.
func (st *Stage) observe(ctx context.Context, s flow.State) (observed, string, error) {
	r, k, p := s.Request, s.Key, s.Plan
	api := st.home(k.ARN)
	var o observed
	if p.Rotate && !p.Rotated {
		// The list that shows the rotation done is the one checked below:
		// no second ListKeyRotations on that pass.
		waiting, err := st.rotate(ctx, api, k.ARN, s.Execution.ID, p, &o.rots)
		if err != nil || waiting != "" {
			return o, waiting, err
		}
	}
	md, err := kmsaccess.Describe(ctx, api, k.ARN)
	if err != nil {
		return o, "", err
	}
	o.md = md
	if o.rots == nil && (p.Listed || kmsaccess.ListsMaterials(md)) {
		if o.rots, err = kmsaccess.ListMaterials(ctx, api, k.ARN); err != nil {
			return o, "", err
		}
	}
	primarySkipped := len(p.Targets) > 0 && p.Targets[0].Skipped
	if !primarySkipped {
		if md.KeyState != types.KeyStateEnabled {
			return o, fmt.Sprintf("key %s is %s after the imports, not Enabled", k.ARN, md.KeyState), nil
		}
		if waiting := checkMaterials(md, r, p, o.rots); waiting != "" {
			return o, waiting, nil
		}
	}
	if len(p.Targets) > 0 {
		p.Targets[0].StateAfter, p.Targets[0].ValidTo = string(md.KeyState), md.ValidTo
	}
	// Every replica renewed: Enabled, in its own Region.
	for i := range p.Targets {
		t := &p.Targets[i]
		if !t.Replica {
			continue
		}
		rmd, err := kmsaccess.Describe(ctx, kmsaccess.ForKeyIn(st.KMS, t.KeyARN, t.Region), t.KeyARN)
		if err != nil {
			return o, "", err
		}
		t.StateAfter, t.ValidTo = string(rmd.KeyState), rmd.ValidTo
		if !t.Skipped && rmd.KeyState != types.KeyStateEnabled {
			return o, fmt.Sprintf("replica %s is %s after the imports, not Enabled", t.KeyARN, rmd.KeyState), nil
		}
		if !t.Skipped {
			if waiting, err := st.checkReplica(ctx, p, t, rmd); err != nil || waiting != "" {
				return o, waiting, err
			}
		}
		o.replicas = append(o.replicas, registry.Replica{Region: t.Region, KeyARN: t.KeyARN, ValidTo: rmd.ValidTo, State: string(rmd.KeyState)})
	}
	return o, "", nil
}

// rotate makes the plan's new material current (shared/rotation): one
// pass, which finds the rotation done, starts it (the lease fenced first),
// or says what it waits for.
func (st *Stage) rotate(ctx context.Context, api kmsaccess.API, arn, execID string, p *flow.Plan, listed *[]types.RotationsListEntry) (string, error) {
	fence := func() error {
		var lost *records.LeaseLost
		if err := st.Leases.Fence(ctx, arn, execID, st.now()); errors.As(err, &lost) {
			return flow.Wrap(flow.LeaseLost, err, "not rotating %s", arn)
		} else if err != nil {
			return flow.FromAWS(err, flow.Internal, "lease of %s", arn)
		}
		return nil
	}
	started := p.RotationStartedAt != nil
	pr, err := rotation.Advance(ctx, api, arn, p.NewMaterialID, p.RotationStartedAt, st.now(), fence)
	p.RotationStartedAt = pr.StartedAt
	if err != nil {
		return "", err
	}
	if !started && pr.StartedAt != nil {
		telemetry.Logger(ctx).Info("rotation to new key material started or found done", "keyMaterialId", flow.ShortID(p.NewMaterialID), "done", pr.Done)
	}
	if pr.Done {
		p.Rotated, *listed = true, pr.Listed
	}
	return pr.Waiting, nil
}

// checkReplica checks the ValidTo of a renewed replica. KMS reports a
// key's ValidTo as "the earliest time at which any imported key material
// permanently associated with this KMS key expires" (KeyMetadata.ValidTo,
// SDK kms v1.62.6), not the ValidTo of the last import. A rotating key
// (which ListKeyRotations answers for) is checked against its replica's
// list of materials: each material imported here with its ValidTo, and
// the key's ValidTo the earliest of them. Otherwise every material of the
// replica was imported here, and the earliest of those imports is it.
func (st *Stage) checkReplica(ctx context.Context, p *flow.Plan, t *flow.Target, rmd *types.KeyMetadata) (string, error) {
	var listed []types.RotationsListEntry
	if p.Rotate {
		var err error
		if listed, err = kmsaccess.ListMaterials(ctx, kmsaccess.ForKeyIn(st.KMS, t.KeyARN, t.Region), t.KeyARN); err != nil {
			return "", err
		}
	}
	want, waiting := replicaValidTo(p, t.KeyARN, listed)
	if waiting != "" || want == nil || (rmd.ValidTo != nil && rmd.ValidTo.Equal(*want)) {
		return waiting, nil
	}
	return fmt.Sprintf("replica %s has ValidTo %s after the imports, want %s (the earliest of its materials)", t.KeyARN, fmtTime(rmd.ValidTo), want.Format(time.RFC3339)), nil
}

// replicaValidTo is the ValidTo replica arn should report after the
// imports of p: the earliest ValidTo of its materials, from listed (its
// materials as ListKeyRotations lists them) when given, else from this
// execution's imports into it; nil when nothing says (no expiry, or
// nothing imported). waiting is set when listed does not yet show an
// import of p with its ValidTo.
func replicaValidTo(p *flow.Plan, arn string, listed []types.RotationsListEntry) (want *time.Time, waiting string) {
	earliest := func(v *time.Time) {
		if v != nil && (want == nil || v.Before(*want)) {
			want = v
		}
	}
	byID := map[string]types.RotationsListEntry{}
	for _, e := range listed {
		byID[aws.ToString(e.KeyMaterialId)] = e
		if e.ImportState == types.ImportStateImported && !pending(e.KeyMaterialState) {
			earliest(e.ValidTo)
		}
	}
	for _, it := range p.Items {
		if it.KeyARN != arn || it.ImportedAt == nil {
			continue
		}
		if listed == nil {
			earliest(it.ValidTo)
			continue
		}
		if e, ok := byID[it.KeyMaterialID]; it.ValidTo != nil && (!ok || e.ValidTo == nil || !e.ValidTo.Equal(*it.ValidTo)) {
			return nil, fmt.Sprintf("key material %s of replica %s does not yet list ValidTo %s after its import", flow.ShortID(it.KeyMaterialID), arn, it.ValidTo.Format(time.RFC3339))
		}
	}
	return want, ""
}

func pending(s types.KeyMaterialState) bool {
	return s == types.KeyMaterialStatePendingRotation || s == types.KeyMaterialStatePendingMultiRegionImportAndRotation
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// checkMaterials checks the expiry of what was imported into the primary:
// per material where KMS lists them, else on the key itself.
func checkMaterials(md *types.KeyMetadata, r *flow.Request, p *flow.Plan, rots []types.RotationsListEntry) string {
	if len(rots) == 0 {
		return checkExpiry(md, r)
	}
	byID := map[string]types.RotationsListEntry{}
	for _, e := range rots {
		byID[aws.ToString(e.KeyMaterialId)] = e
		if e.ImportState != types.ImportStateImported {
			return fmt.Sprintf("key material %s of %s is %s after the imports", flow.ShortID(aws.ToString(e.KeyMaterialId)), *md.Arn, e.ImportState)
		}
	}
	for _, it := range p.Items {
		if it.Replica || it.ImportedAt == nil {
			continue
		}
		e, ok := byID[it.KeyMaterialID]
		if !ok {
			return fmt.Sprintf("key material %s imported into %s is not among its materials", flow.ShortID(it.KeyMaterialID), *md.Arn)
		}
		if string(e.ExpirationModel) != "" && string(e.ExpirationModel) != string(r.ExpirationModel) {
			return fmt.Sprintf("key material %s of %s has expiration model %s after the import, want %s", flow.ShortID(it.KeyMaterialID), *md.Arn, e.ExpirationModel, r.ExpirationModel)
		}
		if it.ValidTo != nil && (e.ValidTo == nil || !e.ValidTo.Equal(*it.ValidTo)) {
			got := "none"
			if e.ValidTo != nil {
				got = e.ValidTo.UTC().Format(time.RFC3339)
			}
			return fmt.Sprintf("key material %s of %s has ValidTo %s after the import, want %s", flow.ShortID(it.KeyMaterialID), *md.Arn, got, it.ValidTo.Format(time.RFC3339))
		}
	}
	if p.Rotate {
		if e := byID[p.NewMaterialID]; e.KeyMaterialState != types.KeyMaterialStateCurrent {
			return fmt.Sprintf("after RotateKeyOnDemand the new key material %s of %s is %s, not CURRENT", flow.ShortID(p.NewMaterialID), *md.Arn, e.KeyMaterialState)
		}
	}
	// DescribeKey's ValidTo is "the earliest time at which any imported
	// key material permanently associated with this KMS key expires"
	// (docs/aws-behaviour.md row 43), and it is what is recorded (the
	// registry's currentValidTo, the import record), so it must agree with
	// the list just checked. Each read is eventually consistent on its own
	// (row 12): a fresh list beside a stale DescribeKey is checked again,
	// never recorded.
	if want := earliestValidTo(rots); !sameTime(md.ValidTo, want) {
		return fmt.Sprintf("DescribeKey of %s says ValidTo %s, its materials' earliest is %s: reads not yet consistent", *md.Arn, timeOrNone(md.ValidTo), timeOrNone(want))
	}
	return ""
}

// earliestValidTo is the earliest ValidTo of the imported materials listed
// (nil: none expires).
func earliestValidTo(rots []types.RotationsListEntry) *time.Time {
	var first *time.Time
	for _, e := range rots {
		if e.ImportState == types.ImportStateImported && e.ValidTo != nil && (first == nil || e.ValidTo.Before(*first)) {
			first = e.ValidTo
		}
	}
	return first
}

// sameTime: both absent, or the same instant.
func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func timeOrNone(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// mapMaterials brings the material map in line with what KMS lists: every
// material with its secret version and state.
func (st *Stage) mapMaterials(ctx context.Context, s flow.State, rots []types.RotationsListEntry, rotatedAt *time.Time, now time.Time) error {
	if len(rots) == 0 {
		return nil
	}
	r, k, p := s.Request, s.Key, s.Plan
	mm, err := st.Materials.List(ctx, k.ARN)
	if err != nil {
		return flow.FromAWS(err, flow.Internal, "material map of %s", k.ARN)
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
		if rec.SecretVersionID == "" && len(rots) == 1 && len(p.Items) > 0 {
			// The key's one material, imported from the request's secret
			// before KMS named it.
			rec.SecretVersionID = p.Items[0].SecretVersionID
		}
		if rec.SecretVersionID == "" {
			continue // not known: the next fetch stage names it
		}
		switch e.KeyMaterialState {
		case types.KeyMaterialStateCurrent:
			rec.State = records.MaterialCurrent
		case types.KeyMaterialStatePendingRotation, types.KeyMaterialStatePendingMultiRegionImportAndRotation:
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
			return flow.FromAWS(err, flow.Internal, "material map of %s", k.ARN)
		}
	}
	return nil
}

func checkExpiry(md *types.KeyMetadata, r *flow.Request) string {
	switch r.ExpirationModel {
	case flow.DoesNotExpire:
		if md.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire {
			return fmt.Sprintf("key %s has expiration model %q after the import, want %s", *md.Arn, md.ExpirationModel, flow.DoesNotExpire)
		}
	default:
		if md.ValidTo == nil || !md.ValidTo.Equal(*r.ValidTo) {
			got := "none"
			if md.ValidTo != nil {
				got = md.ValidTo.UTC().Format(time.RFC3339)
			}
			return fmt.Sprintf("key %s has ValidTo %s after the import, want %s", *md.Arn, got, r.ValidTo.Format(time.RFC3339))
		}
	}
	return ""
}

// roundTrip encrypts a random probe under the key and decrypts it again.
func (st *Stage) roundTrip(ctx context.Context, arn, execID string) (string, error) {
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return "", flow.Wrap(flow.Internal, err, "random probe")
	}
	ec := map[string]string{"purpose": "kms-reimport verification", "execution": execID}
	enc, err := st.home(arn).Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: probe, EncryptionContext: ec})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "Encrypt with %s", arn)
	}
	dec, err := st.home(arn).Decrypt(ctx, &kms.DecryptInput{KeyId: &arn, CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "Decrypt with %s", arn)
	}
	if !bytes.Equal(dec.Plaintext, probe) {
		return "", flow.Errorf(flow.VerificationFailed, "Encrypt/Decrypt round trip with %s returned different bytes", arn)
	}
	return fmt.Sprintf("Encrypt/Decrypt round trip of a %d-byte random probe: equal", len(probe)), nil
}

// bookkeep settles leftover tokens, notes the renewal in the registry
// (registering the key, when asked) in one conditional write, gives the
// lease back and counts the renewal.
func (st *Stage) bookkeep(ctx context.Context, s flow.State, renewal registry.Renewal) error {
	k := s.Key
	if st.Tokens != nil {
		// Tokens a crashed and retried stage left behind are never used.
		for _, arn := range keysOf(s) {
			if _, err := st.Tokens.AbandonExecution(ctx, arn, s.Execution.ID, "superseded: the execution imported with another token"); err != nil {
				return flow.FromAWS(err, flow.Internal, "settling the token records of %s", arn)
			}
		}
	}
	if st.Registry != nil {
		renewal.Register, renewal.SecretID, renewal.PlannedVersion = s.Request.Kept(), s.Request.SecretID, s.Request.RegistryVersion
		written, err := st.Registry.RecordRenewal(ctx, renewal)
		if err != nil {
			return flow.FromAWS(err, flow.Internal, "noting the renewal of %s", k.ARN)
		}
		telemetry.Logger(ctx).Info("registry", "registered", renewal.Register != nil && renewal.PlannedVersion == nil, "fleetRun", renewal.PlannedVersion != nil, "written", written)
	}
	if st.Leases != nil {
		if err := st.Leases.Release(ctx, k.ARN, s.Execution.ID); err != nil {
			return flow.FromAWS(err, flow.Internal, "releasing the lease of %s", k.ARN)
		}
	}
	ms := []telemetry.Metric{{Name: "KeysRenewed", Value: 1, Unit: telemetry.Count}}
	if v := renewal.ValidTo; v != nil {
		ms = append(ms, telemetry.Metric{Name: "DaysUntilExpiry", Value: math.Round(time.Until(*v).Hours()/24*100) / 100, Unit: telemetry.None})
	}
	telemetry.Emit(telemetry.Service, ms...)
	return nil
}

// keysOf lists the key ARNs an execution fetched tokens for: the key and,
// with a plan, each replica.
func keysOf(s flow.State) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if s.Key != nil {
		add(s.Key.ARN)
	}
	if s.Plan != nil {
		for _, it := range s.Plan.Items {
			add(it.KeyARN)
		}
	}
	return out
}

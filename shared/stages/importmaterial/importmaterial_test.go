package importmaterial

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

const (
	keyARN     = "arn:aws:kms:eu-west-2:111122223333:key/mrk-1"
	replicaARN = "arn:aws:kms:us-east-1:111122223333:key/mrk-1"
	tokenSK    = "TOKEN#2026-12-02T12:00:00Z#t1"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// memTokens is an in-memory token store with the status rules of
// records.Tokens for what this stage calls.
type memTokens map[string]*records.Token

func (m memTokens) GetWithToken(_ context.Context, _, sk string) (*records.Token, error) {
	r, ok := m[sk]
	if !ok {
		return nil, fmt.Errorf("%w: no token record %s", records.ErrConflict, sk)
	}
	c := *r
	c.ImportToken = append([]byte(nil), r.ImportToken...)
	return &c, nil
}

func (m memTokens) move(sk, to, reason string, from ...string) error {
	r, ok := m[sk]
	for _, f := range from {
		if ok && r.Status == f {
			r.Status, r.StatusReason, r.ImportToken, r.EncryptedKeyMaterial = to, reason, nil, nil
			return nil
		}
	}
	return fmt.Errorf("%w: token record %s", records.ErrConflict, sk)
}

func (m memTokens) MarkUsedWith(_ context.Context, _, sk, id string) error {
	if err := m.move(sk, records.TokenUsed, "imported", records.TokenWrapped, records.TokenUsed); err != nil {
		return err
	}
	m[sk].KeyMaterialID = id
	return nil
}

func (m memTokens) MarkExpired(_ context.Context, _, sk, reason string) error {
	return m.move(sk, records.TokenExpired, reason, records.TokenIssued, records.TokenWrapped, records.TokenExpired)
}

func (m memTokens) MarkFailed(_ context.Context, _, sk, reason string) error {
	return m.move(sk, records.TokenFailed, reason, records.TokenIssued, records.TokenWrapped, records.TokenFailed)
}

// memMaterials records the material map's writes.
type memMaterials struct{ put, merged []records.Material }

func (m *memMaterials) Put(_ context.Context, r records.Material) error {
	m.put = append(m.put, r)
	return nil
}

func (m *memMaterials) List(_ context.Context, _ string) (map[string]records.Material, error) {
	out := map[string]records.Material{}
	for _, r := range append(append([]records.Material(nil), m.put...), m.merged...) {
		out[r.KeyMaterialID] = r
	}
	return out, nil
}

func (m *memMaterials) Merge(_ context.Context, r records.Material) error {
	m.merged = append(m.merged, r)
	return nil
}

// lease: held by "exec" unless lost.
type lease struct{ lost bool }

func (l lease) Fence(_ context.Context, arn, owner string, _ time.Time) error {
	if l.lost || owner != "exec" {
		return &records.LeaseLost{KeyARN: arn}
	}
	return nil
}

// fakeKMS answers ImportKeyMaterial; any other call panics (nil API).
type fakeKMS struct {
	kmsaccess.API
	err   error
	id    string
	calls []*kms.ImportKeyMaterialInput
}

func (f *fakeKMS) ImportKeyMaterial(_ context.Context, in *kms.ImportKeyMaterialInput, _ ...func(*kms.Options)) (*kms.ImportKeyMaterialOutput, error) {
	f.calls = append(f.calls, in)
	if f.err != nil {
		return nil, f.err
	}
	id := f.id
	if in.KeyMaterialId != nil { // EXISTING_KEY_MATERIAL: KMS names the material imported
		id = *in.KeyMaterialId
	}
	return &kms.ImportKeyMaterialOutput{KeyMaterialId: aws.String(id)}, nil
}

func (f *fakeKMS) In(string) kmsaccess.API { return f }

func TestImport(t *testing.T) {
	validTo := now.Add(720 * time.Hour)
	newItem := flow.PlanItem{Region: "eu-west-2", KeyARN: keyARN, SecretVersionID: "v1", New: true}
	existing := flow.PlanItem{Region: "eu-west-2", KeyARN: keyARN, SecretVersionID: "v0", KeyMaterialID: "m0", ImportType: flow.ExistingKeyMaterial}
	replicaNew := flow.PlanItem{Region: "us-east-1", KeyARN: replicaARN, Replica: true, SecretVersionID: "v1", New: true, ImportType: flow.ExistingKeyMaterial, KeyMaterialID: "m1"}
	cases := []struct {
		name       string
		items      []flow.PlanItem
		status     string
		left       time.Duration // token validity left
		recordID   string        // KeyMaterialId on a used record
		lost       bool
		kmsErr     error
		wantErr    string
		wantCalls  int
		wantStatus string
		wantID     string // item's KeyMaterialId after
		wantPut    int
		wantMerged int
	}{
		{name: "first import", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: time.Hour,
			wantCalls: 1, wantStatus: records.TokenUsed, wantID: "m1", wantPut: 1},
		{name: "existing material", items: []flow.PlanItem{existing}, status: records.TokenWrapped, left: time.Hour,
			wantCalls: 1, wantStatus: records.TokenUsed, wantID: "m0", wantMerged: 1},
		{name: "token too close to expiry", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: 5 * time.Minute,
			wantErr: flow.ImportTokenExpiring, wantStatus: records.TokenExpired},
		{name: "token not wrapped", items: []flow.PlanItem{newItem}, status: records.TokenIssued, left: time.Hour,
			wantErr: flow.TokenStateConflict, wantStatus: records.TokenIssued},
		{name: "retry after a lost success", items: []flow.PlanItem{newItem}, status: records.TokenUsed, left: time.Hour, recordID: "m9",
			wantStatus: records.TokenUsed, wantID: "m9", wantPut: 1},
		{name: "lease lost", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: time.Hour, lost: true,
			wantErr: flow.LeaseLost, wantStatus: records.TokenWrapped},
		{name: "other material", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: time.Hour, kmsErr: &types.IncorrectKeyMaterialException{Message: aws.String("no")},
			wantErr: flow.IncorrectKeyMaterial, wantCalls: 1, wantStatus: records.TokenFailed},
		{name: "KMS says the token expired", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: time.Hour, kmsErr: &types.ExpiredImportTokenException{Message: aws.String("late")},
			wantErr: flow.ImportTokenExpiring, wantCalls: 1, wantStatus: records.TokenExpired},
		{name: "replica not synced yet", items: []flow.PlanItem{replicaNew}, status: records.TokenWrapped, left: time.Hour, kmsErr: &types.IncorrectKeyMaterialException{Message: aws.String("unknown")},
			wantErr: flow.ReplicaNotSynced, wantCalls: 1, wantStatus: records.TokenWrapped},
		{name: "throttled: token kept for the retry", items: []flow.PlanItem{newItem}, status: records.TokenWrapped, left: time.Hour, kmsErr: &types.KMSInternalException{Message: aws.String("busy")},
			wantErr: flow.AWSTransient, wantCalls: 1, wantStatus: records.TokenWrapped},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tokens := memTokens{tokenSK: {SK: tokenSK, KeyARN: keyARN, TargetKeyARN: c.items[0].KeyARN, Status: c.status, ParametersValidTo: now.Add(c.left),
				ImportToken: []byte("token"), EncryptedKeyMaterial: []byte("wrapped"), KeyMaterialID: c.recordID, UpdatedAt: now.Add(-time.Minute)}}
			mats, api := &memMaterials{}, &fakeKMS{err: c.kmsErr, id: "m1"}
			st := &Stage{KMS: api, Tokens: tokens, Materials: mats, Leases: lease{lost: c.lost}, MinTokenValidity: 10 * time.Minute, Now: func() time.Time { return now }}
			s := flow.State{Execution: flow.Execution{ID: "exec"}, Request: &flow.Request{SecretID: "s", ValidTo: &validTo, Policy: flow.Policy{ExpirationModel: flow.Expires}},
				Key: &flow.Key{ARN: keyARN}, Plan: &flow.Plan{Items: slices.Clone(c.items)}, Progress: &flow.Progress{Pending: true, Token: &flow.TokenRef{ID: tokenSK, Fetches: 2, Wrapped: true}}}
			out, err := st.Run(context.Background(), s)
			if (err == nil) != (c.wantErr == "") || (err != nil && flow.NameOf(err) != c.wantErr) {
				t.Fatalf("error %v, want %q", err, c.wantErr)
			}
			if len(api.calls) != c.wantCalls || tokens[tokenSK].Status != c.wantStatus {
				t.Fatalf("%d ImportKeyMaterial calls (want %d), token %s (want %s)", len(api.calls), c.wantCalls, tokens[tokenSK].Status, c.wantStatus)
			}
			if len(mats.put) != c.wantPut || len(mats.merged) != c.wantMerged {
				t.Fatalf("material map: put %+v merged %+v", mats.put, mats.merged)
			}
			if err != nil {
				return
			}
			it := out.Plan.Items[0]
			if it.KeyMaterialID != c.wantID || it.TokenID != tokenSK || it.Fetches != 2 || it.ValidTo == nil || !it.ValidTo.Equal(validTo) {
				t.Fatalf("item after the import: %+v", it)
			}
			if p := out.Progress; p.Item != 1 || p.Pending || p.Token != nil {
				t.Fatalf("progress after the last import: %+v", p)
			}
			if c.wantCalls == 1 {
				in := api.calls[0]
				if aws.ToString(in.KeyId) != c.items[0].KeyARN || string(in.ImportType) != c.items[0].ImportType || aws.ToString(in.KeyMaterialId) != c.items[0].KeyMaterialID {
					t.Fatalf("ImportKeyMaterial input %+v", in)
				}
			}
		})
	}
}

// TestNewMaterialIDReachesTheReplicas: the primary's import names the new
// material; the replicas' items import that id.
func TestNewMaterialIDReachesTheReplicas(t *testing.T) {
	tokens := memTokens{tokenSK: {SK: tokenSK, KeyARN: keyARN, TargetKeyARN: keyARN, Status: records.TokenWrapped, ParametersValidTo: now.Add(time.Hour)}}
	mats := &memMaterials{}
	st := &Stage{KMS: &fakeKMS{id: "new-id"}, Tokens: tokens, Materials: mats, Leases: lease{}, MinTokenValidity: 10 * time.Minute, Now: func() time.Time { return now }}
	s := flow.State{Execution: flow.Execution{ID: "exec"}, Request: &flow.Request{SecretID: "s", Policy: flow.Policy{ExpirationModel: flow.DoesNotExpire}}, Key: &flow.Key{ARN: keyARN},
		Plan: &flow.Plan{Rotate: true, Items: []flow.PlanItem{
			{Region: "eu-west-2", KeyARN: keyARN, SecretVersionID: "v2", New: true, ImportType: flow.NewKeyMaterial},
			{Region: "us-east-1", KeyARN: replicaARN, Replica: true, SecretVersionID: "v2", New: true, ImportType: flow.ExistingKeyMaterial}}},
		Progress: &flow.Progress{Pending: true, Token: &flow.TokenRef{ID: tokenSK, Fetches: 1}}}
	out, err := st.Run(context.Background(), s)
	if err != nil || out.Plan.NewMaterialID != "new-id" || out.Plan.Items[1].KeyMaterialID != "new-id" || !out.Progress.Pending || out.Progress.Item != 1 {
		t.Fatalf("%v: plan %+v progress %+v", err, out.Plan, out.Progress)
	}
	if len(mats.put) != 1 || mats.put[0].State != records.MaterialPendingRotation || mats.put[0].SecretVersionID != "v2" {
		t.Fatalf("material map: %+v", mats.put)
	}
}

// listingKMS answers ImportKeyMaterial with IncorrectKeyMaterial (the
// material was imported as new already) and ListKeyRotations with listed.
// The first stale reads list only the first entry (KMS's eventual
// consistency: the import is not listed yet).
type listingKMS struct {
	fakeKMS
	listed []types.RotationsListEntry
	stale  int
	reads  int
}

func (f *listingKMS) ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error) {
	if f.reads++; f.reads <= f.stale {
		return &kms.ListKeyRotationsOutput{Rotations: f.listed[:1]}, nil
	}
	return &kms.ListKeyRotationsOutput{Rotations: f.listed}, nil
}

func (f *listingKMS) In(string) kmsaccess.API { return f }

// TestCrashAfterNewImportRecovered: an attempt that imported new material
// and crashed before recording it leaves an unmapped material pending
// rotation; the retry, refused as IncorrectKeyMaterial, recognises it by
// this execution's expiration model and ValidTo, records it in the
// material map and the token, and goes on. Anything else (a ValidTo of
// another execution, two candidates, a mapped material) is not adopted.
func TestCrashAfterNewImportRecovered(t *testing.T) {
	validTo := now.Add(720 * time.Hour)
	other := validTo.Add(time.Hour)
	entry := func(id string, v *time.Time, st types.KeyMaterialState) types.RotationsListEntry {
		return types.RotationsListEntry{KeyMaterialId: aws.String(id), ImportState: types.ImportStateImported, KeyMaterialState: st,
			ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: v}
	}
	old := entry("m0", &validTo, types.KeyMaterialStateCurrent)
	cases := []struct {
		name   string
		listed []types.RotationsListEntry
		wantID string // "" : the refusal stands
		stale  int    // reads that do not list the import yet
	}{
		{"this execution's material", []types.RotationsListEntry{old, entry("m1", &validTo, types.KeyMaterialStatePendingRotation)}, "m1", 0},
		{"listed on the third read", []types.RotationsListEntry{old, entry("m1", &validTo, types.KeyMaterialStatePendingRotation)}, "m1", 2},
		{"listed too late", []types.RotationsListEntry{old, entry("m1", &validTo, types.KeyMaterialStatePendingRotation)}, "", listReads},
		{"another ValidTo", []types.RotationsListEntry{old, entry("m1", &other, types.KeyMaterialStatePendingRotation)}, "", 0},
		{"two candidates", []types.RotationsListEntry{old, entry("m1", &validTo, types.KeyMaterialStatePendingRotation), entry("m2", &validTo, types.KeyMaterialStatePendingRotation)}, "", 0},
		{"nothing pending", []types.RotationsListEntry{old}, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tokens := memTokens{tokenSK: {SK: tokenSK, KeyARN: keyARN, TargetKeyARN: keyARN, Status: records.TokenWrapped, ParametersValidTo: now.Add(time.Hour)}}
			mats := &memMaterials{put: []records.Material{{KeyARN: keyARN, KeyMaterialID: "m0", SecretVersionID: "v0"}}}
			api := &listingKMS{fakeKMS: fakeKMS{err: &types.IncorrectKeyMaterialException{Message: aws.String("already imported")}}, listed: c.listed, stale: c.stale}
			st := &Stage{KMS: api, Tokens: tokens, Materials: mats, Leases: lease{}, MinTokenValidity: 10 * time.Minute, Now: func() time.Time { return now }, ListSettle: 30 * time.Millisecond}
			s := flow.State{Execution: flow.Execution{ID: "exec"}, Request: &flow.Request{SecretID: "s", ValidTo: &validTo, Policy: flow.Policy{ExpirationModel: flow.Expires}},
				Key: &flow.Key{ARN: keyARN}, Plan: &flow.Plan{Rotate: true, Items: []flow.PlanItem{{Region: "eu-west-2", KeyARN: keyARN, SecretVersionID: "v1", New: true, ImportType: flow.NewKeyMaterial}}},
				Progress: &flow.Progress{Pending: true, Token: &flow.TokenRef{ID: tokenSK, Fetches: 1}}}
			out, err := st.Run(context.Background(), s)
			if c.wantID == "" {
				if flow.NameOf(err) != flow.IncorrectKeyMaterial || tokens[tokenSK].Status != records.TokenFailed {
					t.Fatalf("%v, token %s: want IncorrectKeyMaterial, token failed", err, tokens[tokenSK].Status)
				}
				return
			}
			if err != nil || out.Plan.NewMaterialID != c.wantID || tokens[tokenSK].Status != records.TokenUsed || tokens[tokenSK].KeyMaterialID != c.wantID {
				t.Fatalf("%v: plan %+v token %+v", err, out.Plan, tokens[tokenSK])
			}
			if last := mats.put[len(mats.put)-1]; last.KeyMaterialID != c.wantID || last.SecretVersionID != "v1" || last.State != records.MaterialPendingRotation {
				t.Fatalf("material map: %+v", mats.put)
			}
		})
	}
}

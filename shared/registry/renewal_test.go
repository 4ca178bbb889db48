package registry

import (
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

func TestRenewed(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	arn := "arn:aws:kms:eu-west-2:111122223333:key/mrk-00000000000000000000000000000001"
	rep1, rep2 := Replica{Region: "eu-west-1", KeyARN: "r1", ValidTo: at(time.Hour)}, Replica{Region: "eu-west-3", KeyARN: "r2", ValidTo: at(2 * time.Hour)}
	blocked := &Entry{KeyARN: arn, SecretID: "s", ValidFor: "90d", RenewBefore: "14d", Status: Blocked, StatusReason: "KeyNotEligible: Disabled",
		RegisteredAt: now.Add(-time.Hour), Replicas: []Replica{{Region: "eu-west-1", KeyARN: "r1"}}, Materials: 2}
	policy := &Entry{SecretID: "s2", ValidFor: "30d", RenewBefore: "7d", RotateEvery: "90d", GenerateMaterial: true, NewMaterialStage: "KMSREIMPORT_NEW"}
	cases := []struct {
		name    string
		old     *Entry
		r       Renewal
		ok      bool
		wantErr bool
		check   func(t *testing.T, e Entry)
	}{
		{name: "not registered, not registering: nothing written", r: Renewal{KeyARN: arn, At: now, ValidTo: at(90 * 24 * time.Hour)}},
		{name: "registered by the renewal", r: Renewal{KeyARN: arn, At: now, Execution: "x", ValidTo: at(30 * 24 * time.Hour), Register: policy}, ok: true,
			check: func(t *testing.T, e Entry) {
				if e.Status != Active || !e.RegisteredAt.Equal(now) || e.SecretID != "s2" || e.RotateEvery != "90d" || !e.GenerateMaterial || e.NextDue == nil || !e.NextDue.Equal(now.Add(23*24*time.Hour)) {
					t.Errorf("entry %+v", e)
				}
			}},
		{name: "a blocked key renewed: active, replicas merged, rotation and materials noted", old: blocked,
			r: Renewal{KeyARN: arn, At: now, Execution: "x", ValidTo: at(90 * 24 * time.Hour), Replicas: []Replica{rep1, rep2}, RotatedAt: at(-time.Minute), Materials: 3}, ok: true,
			check: func(t *testing.T, e Entry) {
				if e.Status != Active || e.StatusReason != "" || len(e.Replicas) != 2 || e.Replicas[0] != rep1 || e.Replicas[1] != rep2 || e.Materials != 3 ||
					e.LastRotation == nil || e.LastSuccess == nil || e.LastExecution != "x" || !e.RegisteredAt.Equal(blocked.RegisteredAt) || e.SecretID != "s" {
					t.Errorf("entry %+v", e)
				}
			}},
		{name: "materials not known keep what was known", old: blocked, r: Renewal{KeyARN: arn, At: now, ValidTo: at(time.Hour)}, ok: true,
			check: func(t *testing.T, e Entry) {
				if e.Materials != 2 || len(e.Replicas) != 1 || e.LastRotation != nil {
					t.Errorf("entry %+v", e)
				}
			}},
		{name: "a policy that does not validate", r: Renewal{KeyARN: arn, At: now, Register: &Entry{SecretID: "s", ValidFor: "7d", RenewBefore: "14d"}}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok, err := Renewed(c.old, c.r)
			if (err != nil) != c.wantErr || ok != c.ok {
				t.Fatalf("Renewed: ok %v err %v; want ok %v, error %v", ok, err, c.ok, c.wantErr)
			}
			if c.check != nil {
				c.check(t, e)
			}
		})
	}
}

func TestPolicyOf(t *testing.T) {
	in := flow.RequestInput{KeyID: "alias/k", SecretID: "s", ValidFor: "90d", RenewBefore: "14d", RotateEvery: "180d", GenerateMaterial: true, WrappingKeySpec: "RSA_3072"}
	r, err := flow.ValidateRequest(in, time.Now(), flow.RequestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := PolicyOf(r)
	if e == nil || e.ValidFor != "90d" || e.RenewBefore != "14d" || e.RotateEvery != "180d" || !e.GenerateMaterial || e.NewMaterialStage != flow.DefaultGeneratedStage ||
		e.WrappingKeySpec != "RSA_3072" || e.SecretVersionStage != "AWSCURRENT" || e.NoExpiry {
		t.Fatalf("policy %+v", e)
	}
	e.KeyARN = "arn"
	if err := e.Validate(); err != nil {
		t.Fatalf("the policy of a valid request does not validate: %v", err)
	}
	r.WrappingAlgorithm, r.WrappingKeySpec = "", ""
	if e := PolicyOf(r); e.WrappingAlgorithm != "" || e.WrappingKeySpec != "" {
		t.Errorf("a request that names no wrapping gives the registry one: %+v", e)
	}
	no := false
	in.Register, in.RotateEvery, in.GenerateMaterial = &no, "", false
	if r, err = flow.ValidateRequest(in, time.Now(), flow.RequestOptions{}); err != nil || PolicyOf(r) != nil {
		t.Fatalf("register false: %v, %+v", err, PolicyOf(r))
	}
	in.Register, in.ValidFor, in.ExpirationModel = nil, "", flow.DoesNotExpire
	if r, err = flow.ValidateRequest(in, time.Now(), flow.RequestOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := PolicyOf(r); e == nil || !e.NoExpiry || e.ValidFor != "" {
		t.Fatalf("no expiry: %+v", e)
	}
}

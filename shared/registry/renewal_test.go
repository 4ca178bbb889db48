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
	blocked := &Entry{KeyARN: arn, SecretID: "s", Status: Blocked, StatusReason: "KeyNotEligible: Disabled",
		RegisteredAt: now.Add(-time.Hour), Replicas: []Replica{{Region: "eu-west-1", KeyARN: "r1"}}, Materials: 2, Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}
	policy := &flow.Policy{ValidFor: "30d", RenewBefore: "7d", RotateEvery: "90d", GenerateMaterial: true, NewMaterialStage: "KMSREIMPORT_NEW"}
	cases := []struct {
		name    string
		old     *Entry
		r       Renewal
		ok      bool
		wantErr bool
		check   func(t *testing.T, e Entry)
	}{
		{name: "not registered, not registering: nothing written", r: Renewal{KeyARN: arn, At: now, ValidTo: at(90 * 24 * time.Hour)}},
		{name: "registered by the renewal", r: Renewal{KeyARN: arn, At: now, Execution: "x", ValidTo: at(30 * 24 * time.Hour), Register: policy, SecretID: "s2"}, ok: true,
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
		{name: "a policy that does not validate", r: Renewal{KeyARN: arn, At: now, Register: &flow.Policy{ValidFor: "7d", RenewBefore: "14d"}, SecretID: "s"}, wantErr: true},
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

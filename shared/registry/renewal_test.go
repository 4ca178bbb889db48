package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

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

// hooked runs before right before every PutItem: a change of the registry
// between the read and the write of RecordRenewal. It counts the writes.
type hooked struct {
	DB
	before func()
	puts   int
}

func (h *hooked) PutItem(ctx context.Context, in *dynamodb.PutItemInput, o ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if h.before != nil {
		h.before()
		h.before = nil
	}
	h.puts++
	return h.DB.PutItem(ctx, in, o...)
}

// TestRecordRenewalConditions: a renewal is noted in one conditional
// write, on DynamoDB Local; a key deregistered (or deregistered and
// registered again) while the execution ran is left as the operator left
// it, and is not brought back.
func TestRecordRenewalConditions(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	validTo := now.Add(90 * 24 * time.Hour)
	policy := &Entry{SecretID: "s", ValidFor: "90d", RenewBefore: "14d"}
	cases := []struct {
		name       string
		registered bool
		register   *Entry
		meanwhile  func(t *testing.T, s *Store, arn string)
		written    bool
		after      func(t *testing.T, e *Entry, err error)
	}{
		{name: "registered: noted", registered: true, written: true, after: func(t *testing.T, e *Entry, err error) {
			if err != nil || e.LastSuccess == nil || e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(validTo) || e.LastExecution != "exec-1" {
				t.Errorf("entry %+v, %v", e, err)
			}
		}},
		{name: "deregistered meanwhile: not brought back", registered: true, register: policy,
			meanwhile: func(t *testing.T, s *Store, arn string) {
				if err := s.Delete(ctx, arn); err != nil {
					t.Fatal(err)
				}
			},
			after: func(t *testing.T, e *Entry, err error) {
				if err == nil {
					t.Errorf("the deregistered key is registered again: %+v", e)
				}
			}},
		{name: "deregistered and registered again meanwhile: the new registration stays", registered: true,
			meanwhile: func(t *testing.T, s *Store, arn string) {
				if err := s.Delete(ctx, arn); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // another registeredAt
				register(t, s, arn, nil)
			},
			after: func(t *testing.T, e *Entry, err error) {
				if err != nil || e.LastSuccess != nil {
					t.Errorf("the new registration was overwritten: %+v, %v", e, err)
				}
			}},
		{name: "not registered, registering: registered", register: policy, written: true, after: func(t *testing.T, e *Entry, err error) {
			if err != nil || e.Status != Active || e.LastSuccess == nil {
				t.Errorf("entry %+v, %v", e, err)
			}
		}},
		{name: "not registered, registered meanwhile by someone else: theirs stays", register: &Entry{SecretID: "mine", ValidFor: "90d", RenewBefore: "14d"},
			meanwhile: func(t *testing.T, s *Store, arn string) { register(t, s, arn, nil) },
			after: func(t *testing.T, e *Entry, err error) {
				if err != nil || e.SecretID == "mine" || e.LastSuccess != nil {
					t.Errorf("entry %+v, %v", e, err)
				}
			}},
		{name: "not registered, not registering: nothing", after: func(t *testing.T, e *Entry, err error) {
			if err == nil {
				t.Errorf("registered: %+v", e)
			}
		}},
	}
	base := store(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			arn := testARN[:len(testARN)-4] + string(rune('a'+i)) + "000"
			if c.registered {
				register(t, base, arn, nil)
			}
			h := &hooked{DB: base.DB}
			if c.meanwhile != nil {
				h.before = func() { c.meanwhile(t, base, arn) }
			}
			s := &Store{DB: h, Table: base.Table}
			written, err := s.RecordRenewal(ctx, Renewal{KeyARN: arn, Execution: "exec-1", At: now, ValidTo: &validTo, Register: c.register})
			if err != nil || written != c.written {
				t.Fatalf("RecordRenewal: written %v, %v; want written %v", written, err, c.written)
			}
			if h.puts > 1 {
				t.Errorf("%d writes, want at most one", h.puts)
			}
			e, err := base.Get(ctx, arn)
			c.after(t, e, err)
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

// TestFleetRenewalKeepsOperatorsChanges: a fleet run's renewal
// (PlannedVersion) writes no policy, so a policy an operator changed
// after planning stays, also when the change lands between the
// renewal's read and its write (the versioned write fails and is done
// again over the new entry); a key deregistered after planning stays
// deregistered; every write adds one to the version.
func TestFleetRenewalKeepsOperatorsChanges(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	validTo := now.Add(90 * 24 * time.Hour)
	base := store(t)
	arn := testARN[:len(testARN)-4] + "f001"
	register(t, base, arn, nil)
	planned, err := base.Get(ctx, arn)
	if err != nil || planned.Version != 1 {
		t.Fatalf("registered: %+v, %v: want version 1", planned, err)
	}
	h := &hooked{DB: base.DB, before: func() {
		e := Entry{KeyARN: arn, SecretID: "operator", ValidFor: "180d", RenewBefore: "30d"}
		if err := base.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}}
	s := &Store{DB: h, Table: base.Table}
	v := planned.Version
	stale := &Entry{SecretID: planned.SecretID, ValidFor: "90d", RenewBefore: "14d"}
	written, err := s.RecordRenewal(ctx, Renewal{KeyARN: arn, Execution: "fleet-1", At: now, ValidTo: &validTo, Register: stale, PlannedVersion: &v})
	if err != nil || !written {
		t.Fatalf("RecordRenewal: %v, %v", written, err)
	}
	e, err := base.Get(ctx, arn)
	if err != nil || e.SecretID != "operator" || e.ValidFor != "180d" || e.RenewBefore != "30d" || e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(validTo) || e.Version != 3 {
		t.Fatalf("entry %+v, %v: want the operator's policy with the renewal noted, version 3", e, err)
	}

	if err := base.Delete(ctx, arn); err != nil {
		t.Fatal(err)
	}
	written, err = base.RecordRenewal(ctx, Renewal{KeyARN: arn, Execution: "fleet-2", At: now, ValidTo: &validTo, Register: stale, PlannedVersion: &v})
	if err != nil || written {
		t.Fatalf("RecordRenewal of a deregistered key: %v, %v; want nothing written", written, err)
	}
	if e, err := base.Get(ctx, arn); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregistered key brought back: %+v, %v", e, err)
	}
}

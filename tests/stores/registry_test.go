package stores_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

// The registry's own writes on DynamoDB Local: what a failure does to an
// entry (RecordFailure's read and conditional write), and a renewal's one
// conditional write (RecordRenewal). Which failures block is FailureEffect's,
// tested without a database in shared/registry/blocked_test.go.

const testARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// asRecorded is a stage's error as record-failure gives it to the
// registry: its name, and the message and facts decoded from the cause
// lambdarun wrote (flow.EncodeCause, flow.ParseCause).
func asRecorded(err error) (string, string, *flow.Facts) {
	msg, facts := flow.ParseCause(flow.EncodeCause(flow.Sanitize(err.Error()), flow.FactsOf(err)))
	return flow.NameOf(err), flow.Sanitize(msg), facts
}

func store(t *testing.T) *registry.Store {
	db, table := ddblocal.Table(t)
	return &registry.Store{DB: db, Table: table}
}

func register(t *testing.T, s *registry.Store, arn string, validTo *time.Time) {
	t.Helper()
	e := registry.Entry{KeyARN: arn, SecretID: "kms-reimport/" + arn[len(arn)-4:], Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}, CurrentValidTo: validTo}
	if err := s.Put(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// TestRecordFailureBlocksNeverRemoves follows a key through failures and
// successes on DynamoDB Local: a blocking failure keeps the key in the
// registry, due on every run, with why; only a success, a new
// registration or a failure past KMS's checks unblocks it; an
// inconclusive failure does not.
func TestRecordFailureBlocksNeverRemoves(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	md := func(state types.KeyState) *types.KeyMetadata {
		return &types.KeyMetadata{Arn: aws.String(testARN), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSymmetricDefault, KeyState: state}
	}
	disabled := kmsaccess.CheckImportable(md(types.KeyStateDisabled))
	creating := kmsaccess.CheckImportable(md(types.KeyStateCreating)) // KeyNotReady
	fail := func(err error) func(*registry.Store, string) error {
		return func(s *registry.Store, arn string) error {
			name, cause, facts := asRecorded(err)
			return s.RecordFailure(ctx, arn, registry.Failure{Execution: "exec-" + name, At: now, Error: name, Cause: cause, Stage: "FetchParameters", Facts: facts})
		}
	}
	named := func(name string) func(*registry.Store, string) error {
		return func(s *registry.Store, arn string) error {
			return s.RecordFailure(ctx, arn, registry.Failure{Execution: "exec", At: now, Error: name, Cause: "something", Stage: "ImportMaterial"})
		}
	}
	succeed := func(s *registry.Store, arn string) error {
		v := now.Add(90 * 24 * time.Hour)
		_, err := s.RecordRenewal(ctx, registry.Renewal{KeyARN: arn, Execution: "exec-ok", At: now, ValidTo: &v})
		return err
	}
	reregister := func(s *registry.Store, arn string) error { register(t, s, arn, nil); return nil }
	type step = func(*registry.Store, string) error
	cases := []struct {
		name      string
		steps     []step
		blockedBy string // "" = not blocked
		lastError string
	}{
		{"disabled blocks", []step{fail(disabled)}, flow.KeyNotEligible, flow.KeyNotEligible},
		{"gone blocks", []step{fail(flow.Errorf(flow.KeyNotFound, "KMS key %q not found", testARN))}, flow.KeyNotFound, flow.KeyNotFound},
		{"creating does not block", []step{fail(creating)}, "", flow.KeyNotReady},
		{"throttled after a block: still blocked", []step{fail(disabled), named(flow.AWSTransient)}, flow.KeyNotEligible, flow.AWSTransient},
		{"timed out after a block: still blocked", []step{fail(disabled), named("States.Timeout")}, flow.KeyNotEligible, "States.Timeout"},
		{"past KMS's checks after a block: unblocked", []step{fail(disabled), named(flow.SecretNotFound)}, "", flow.SecretNotFound},
		{"passing state after a block: unblocked", []step{fail(disabled), fail(creating)}, "", flow.KeyNotReady},
		{"renewed after a block: unblocked", []step{fail(disabled), succeed}, "", flow.KeyNotEligible},
		{"registered again after a block: unblocked", []step{fail(disabled), reregister}, "", flow.KeyNotEligible},
	}
	s := store(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			arn := testARN[:len(testARN)-4] + strings.Repeat(string(rune('a'+i)), 4)
			validTo := now.Add(5 * 24 * time.Hour)
			register(t, s, arn, &validTo)
			for _, st := range c.steps {
				if err := st(s, arn); err != nil {
					t.Fatal(err)
				}
			}
			e, err := s.Get(ctx, arn)
			if err != nil {
				t.Fatalf("the key left the registry: %v", err)
			}
			if e.LastError != c.lastError {
				t.Errorf("lastError %q, want %q", e.LastError, c.lastError)
			}
			b := e.Block()
			if c.blockedBy == "" {
				if b != nil || e.Status != registry.Active {
					t.Fatalf("status %s, block %+v; want active", e.Status, b)
				}
				return
			}
			if b == nil || e.Status != registry.Blocked || b.Error != c.blockedBy || b.Cause == "" || b.LastFailure == nil {
				t.Fatalf("status %s, block %+v; want blocked by %s with its cause", e.Status, b, c.blockedBy)
			}
			if due, why := e.IsDue(now); !due || why != "blocked: "+c.blockedBy {
				t.Fatalf("blocked key not planned: %v %q", due, why)
			}
		})
	}
}

func TestRecordFailure(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	now := time.Now().UTC().Truncate(time.Second)

	t.Run("cause sanitized", func(t *testing.T) {
		register(t, s, testARN, nil)
		secret := strings.Repeat("QUJDRA", 12)
		err := s.RecordFailure(ctx, testARN, registry.Failure{Execution: "e", At: now, Error: flow.KeyNotEligible, Cause: "key " + testARN + " is in state Disabled; token " + secret,
			Facts: &flow.Facts{Check: flow.CheckKeyState, KeyARN: testARN, KeyState: "Disabled"}})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := s.Get(ctx, testARN)
		b := e.Block()
		if b == nil || strings.Contains(b.Cause, secret) || !strings.Contains(b.Cause, testARN) || !strings.Contains(b.Cause, "[redacted]") {
			t.Fatalf("block %+v: want the ARN kept and the opaque run redacted", b)
		}
	})
	t.Run("not registered: nothing written", func(t *testing.T) {
		other := testARN[:len(testARN)-4] + "ffff"
		if err := s.RecordFailure(ctx, other, registry.Failure{Execution: "e", At: now, Error: flow.KeyNotFound, Cause: "gone"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, other); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	})
	t.Run("deregister is the way out", func(t *testing.T) {
		if err := s.Delete(ctx, testARN); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, testARN); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		// A failure recorded after deregistering does not bring it back.
		if err := s.RecordFailure(ctx, testARN, registry.Failure{Execution: "e", At: now, Error: flow.KeyNotFound, Cause: "gone"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, testARN); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("Get after a late failure: %v", err)
		}
	})
	t.Run("written ineligible by an earlier version", func(t *testing.T) {
		arn := testARN[:len(testARN)-4] + "eeee"
		v := now.Add(-48 * time.Hour)
		item, err := attributevalue.MarshalMap(registry.Entry{PK: registry.PK, SK: "KEY#" + arn, Type: "registry", KeyARN: arn, SecretID: "s", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"},
			Status: registry.Ineligible, StatusReason: "KeyNotEligible: key " + arn + " is in state PendingDeletion", LastError: flow.KeyNotEligible, CurrentValidTo: &v, LastSuccess: &v})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.Table, Item: item}); err != nil {
			t.Fatal(err)
		}
		e, err := s.Get(ctx, arn)
		if err != nil {
			t.Fatal(err)
		}
		b := e.Block()
		if b == nil || b.Error != flow.KeyNotEligible || !strings.HasPrefix(b.Cause, "key "+arn+" is in state PendingDeletion") {
			t.Fatalf("block %+v", b)
		}
		if due, _ := e.IsDue(now); !due {
			t.Fatal("an ineligible key of an earlier version is not planned")
		}
	})
}

// hooked runs before right before every PutItem: a change of the registry
// between the read and the write of RecordRenewal. It counts the writes.
type hooked struct {
	registry.DB
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
	policy := &registry.Entry{SecretID: "s", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}
	cases := []struct {
		name       string
		registered bool
		register   *registry.Entry
		meanwhile  func(t *testing.T, s *registry.Store, arn string)
		written    bool
		after      func(t *testing.T, e *registry.Entry, err error)
	}{
		{name: "registered: noted", registered: true, written: true, after: func(t *testing.T, e *registry.Entry, err error) {
			if err != nil || e.LastSuccess == nil || e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(validTo) || e.LastExecution != "exec-1" {
				t.Errorf("entry %+v, %v", e, err)
			}
		}},
		{name: "deregistered meanwhile: not brought back", registered: true, register: policy,
			meanwhile: func(t *testing.T, s *registry.Store, arn string) {
				if err := s.Delete(ctx, arn); err != nil {
					t.Fatal(err)
				}
			},
			after: func(t *testing.T, e *registry.Entry, err error) {
				if err == nil {
					t.Errorf("the deregistered key is registered again: %+v", e)
				}
			}},
		{name: "deregistered and registered again meanwhile: the new registration stays", registered: true,
			meanwhile: func(t *testing.T, s *registry.Store, arn string) {
				if err := s.Delete(ctx, arn); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond) // another registeredAt
				register(t, s, arn, nil)
			},
			after: func(t *testing.T, e *registry.Entry, err error) {
				if err != nil || e.LastSuccess != nil {
					t.Errorf("the new registration was overwritten: %+v, %v", e, err)
				}
			}},
		{name: "not registered, registering: registered", register: policy, written: true, after: func(t *testing.T, e *registry.Entry, err error) {
			if err != nil || e.Status != registry.Active || e.LastSuccess == nil {
				t.Errorf("entry %+v, %v", e, err)
			}
		}},
		{name: "not registered, registered meanwhile by someone else: theirs stays", register: &registry.Entry{SecretID: "mine", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}},
			meanwhile: func(t *testing.T, s *registry.Store, arn string) { register(t, s, arn, nil) },
			after: func(t *testing.T, e *registry.Entry, err error) {
				if err != nil || e.SecretID == "mine" || e.LastSuccess != nil {
					t.Errorf("entry %+v, %v", e, err)
				}
			}},
		{name: "not registered, not registering: nothing", after: func(t *testing.T, e *registry.Entry, err error) {
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
			s := &registry.Store{DB: h, Table: base.Table}
			written, err := s.RecordRenewal(ctx, registry.Renewal{KeyARN: arn, Execution: "exec-1", At: now, ValidTo: &validTo, Register: policyOf(c.register), SecretID: secretOf(c.register)})
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

// policyOf and secretOf split a test's registration into a registry.Renewal's
// fields.
func policyOf(e *registry.Entry) *flow.Policy {
	if e == nil {
		return nil
	}
	return &e.Policy
}

func secretOf(e *registry.Entry) string {
	if e == nil {
		return ""
	}
	return e.SecretID
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
		e := registry.Entry{KeyARN: arn, SecretID: "operator", Policy: flow.Policy{ValidFor: "180d", RenewBefore: "30d"}}
		if err := base.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}}
	s := &registry.Store{DB: h, Table: base.Table}
	v := planned.Version
	stale := &flow.Policy{ValidFor: "90d", RenewBefore: "14d"}
	written, err := s.RecordRenewal(ctx, registry.Renewal{KeyARN: arn, Execution: "fleet-1", At: now, ValidTo: &validTo, Register: stale, SecretID: planned.SecretID, PlannedVersion: &v})
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
	written, err = base.RecordRenewal(ctx, registry.Renewal{KeyARN: arn, Execution: "fleet-2", At: now, ValidTo: &validTo, Register: stale, SecretID: planned.SecretID, PlannedVersion: &v})
	if err != nil || written {
		t.Fatalf("RecordRenewal of a deregistered key: %v, %v; want nothing written", written, err)
	}
	if e, err := base.Get(ctx, arn); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deregistered key brought back: %+v, %v", e, err)
	}
}

// TestCreateNeverReplaces: adoption's write (Create) registers a key nobody
// registered, and leaves alone one registered between its read and its
// write: the operator's policy stays, ErrRegistered says so.
func TestCreateNeverReplaces(t *testing.T) {
	ctx := context.Background()
	s := store(t)
	adopted := registry.Entry{KeyARN: testARN, SecretID: "kms-reimport/adopted", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}
	if err := s.Create(ctx, adopted); err != nil {
		t.Fatalf("Create of an unregistered key: %v", err)
	}
	if e, err := s.Get(ctx, testARN); err != nil || e.SecretID != "kms-reimport/adopted" || e.Status != registry.Active || e.RegisteredAt.IsZero() {
		t.Fatalf("after Create: %+v, %v", e, err)
	}
	other := "arn:aws:kms:eu-west-2:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab"
	operators := registry.Entry{KeyARN: other, SecretID: "kms-reimport/operators", Policy: flow.Policy{ValidFor: "30d", RenewBefore: "7d"}}
	if err := s.Put(ctx, operators); err != nil {
		t.Fatal(err)
	}
	adopted.KeyARN = other
	if err := s.Create(ctx, adopted); !errors.Is(err, registry.ErrRegistered) {
		t.Fatalf("Create over a registered key: %v, want ErrRegistered", err)
	}
	if e, err := s.Get(ctx, other); err != nil || e.SecretID != "kms-reimport/operators" || e.ValidFor != "30d" {
		t.Fatalf("the operator's registration was replaced: %+v, %v", e, err)
	}
}

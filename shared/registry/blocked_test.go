package registry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

const testARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// asRecorded is the cause as record-failure stores it: the named error's
// message, sanitized.
func asRecorded(err error) (string, string) {
	return flow.NameOf(err), flow.Sanitize(err.Error())
}

// TestBlockingFailureOnCheckImportable runs every KMS key state through
// the check the fetch stage makes: a state KMS leaves by itself is not a
// block, every other refusal is. Rewording CheckImportable's message, or
// a new key state, breaks this test rather than silently blocking (or
// unblocking) keys.
func TestBlockingFailureOnCheckImportable(t *testing.T) {
	var passingSeen []string
	for _, state := range types.KeyState("").Values() {
		md := &types.KeyMetadata{Arn: aws.String(testARN), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSymmetricDefault, KeyState: state}
		err := kmsaccess.CheckImportable(md)
		if err == nil {
			if !slices.Contains(kmsaccess.ImportableStates, state) {
				t.Errorf("state %s: CheckImportable accepts it but it is not importable", state)
			}
			continue
		}
		name, cause := asRecorded(err)
		passing := slices.Contains(PassingKeyStates, string(state))
		if passing {
			passingSeen = append(passingSeen, string(state))
		}
		if got := BlockingFailure(name, cause); got == passing {
			t.Errorf("state %s: BlockingFailure(%s, %q) = %v, want %v", state, name, cause, got, !passing)
		}
	}
	slices.Sort(passingSeen)
	want := slices.Sorted(slices.Values(PassingKeyStates))
	if !slices.Equal(passingSeen, want) {
		t.Errorf("passing states refused by CheckImportable: %v, want all of %v (a state KMS no longer has?)", passingSeen, want)
	}

	// The wrong origin or a custom key store block the key whatever its
	// state; so does an unsupported spec.
	for name, md := range map[string]*types.KeyMetadata{
		"origin AWS_KMS while Creating": {Arn: aws.String(testARN), Origin: types.OriginTypeAwsKms, KeySpec: types.KeySpecSymmetricDefault, KeyState: types.KeyStateCreating},
		"custom key store, Unavailable": {Arn: aws.String(testARN), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSymmetricDefault, KeyState: types.KeyStateUnavailable, CustomKeyStoreId: aws.String("cks-1234567890abcdef0")},
		// (The state is checked before the spec: while Updating, the
		// refusal names the state and passes; the next one names the spec.)
		"unsupported spec": {Arn: aws.String(testARN), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSm2, KeyState: types.KeyStateEnabled},
	} {
		err := kmsaccess.CheckImportable(md)
		if err == nil {
			t.Fatalf("%s: CheckImportable accepts it", name)
		}
		if n, cause := asRecorded(err); !BlockingFailure(n, cause) {
			t.Errorf("%s: not blocking: %s %q", name, n, cause)
		}
	}
}

// TestBlockingFailure covers what KMS itself answers at the import
// stages, as the stages name it and the SDK formats it.
func TestBlockingFailure(t *testing.T) {
	sdk := func(op string, err error) error {
		return &smithy.OperationError{ServiceID: "KMS", OperationName: op, Err: err}
	}
	invalid := func(msg string) error { return &types.KMSInvalidStateException{Message: aws.String(msg)} }
	gpi := func(err error) error {
		return flow.Wrap(flow.KeyNotEligible, sdk("GetParametersForImport", err), "GetParametersForImport for %s", testARN)
	}
	ikm := func(err error) error {
		return flow.Wrap(flow.KeyNotEligible, sdk("ImportKeyMaterial", err), "ImportKeyMaterial for %s", testARN)
	}
	cases := []struct {
		name    string
		err     error
		blocked bool
	}{
		{"gone", flow.Wrap(flow.KeyNotFound, sdk("DescribeKey", &types.NotFoundException{Message: aws.String("Key '" + testARN + "' does not exist")}), "KMS key %q not found", testARN), true},
		{"pending deletion (AWS's words)", gpi(invalid(testARN + " is pending deletion.")), true},
		{"disabled (AWS's words)", ikm(invalid(testARN + " is disabled.")), true},
		{"pending deletion (stand-in's words)", ikm(invalid(testARN + " is PendingDeletion and not available for this operation: ImportKeyMaterial needs a key in state PendingImport or Enabled.")), true},
		{"pending replica deletion", gpi(invalid(testARN + " is pending replica deletion.")), true},
		{"creating: passing", gpi(invalid(testARN + " is Creating and not available for this operation.")), false},
		{"a refusal naming no state: passing (eventual consistency)", gpi(invalid("The request was rejected because the key state is not valid for this request.")), false},
		{"not EXTERNAL", gpi(&types.UnsupportedOperationException{Message: aws.String(testARN + " origin is AWS_KMS which is not valid for this operation.")}), true},
		{"gone at import", ikm(&types.NotFoundException{Message: aws.String("Key '" + testARN + "' does not exist")}), true},
		{"registered a replica", flow.Errorf(flow.KeyNotEligible, "key %s is a multi-Region replica: run kms-reimport on its primary key %s, which imports into every replica", testARN, testARN), true},
		{"replica disabled", flow.Errorf(flow.KeyNotEligible, "replica %s of %s has origin EXTERNAL and state Disabled; an import needs origin EXTERNAL and state PendingImport or Enabled", testARN, testARN), true},
		{"replica updating: passing", flow.Errorf(flow.KeyNotEligible, "replica %s of %s has origin EXTERNAL and state Updating; an import needs origin EXTERNAL and state PendingImport or Enabled", testARN, testARN), false},
		{"replica not EXTERNAL while creating", flow.Errorf(flow.KeyNotEligible, "replica %s of %s has origin AWS_KMS and state Creating; an import needs origin EXTERNAL and state PendingImport or Enabled", testARN, testARN), true},
		{"throttled", flow.Wrap(flow.AWSTransient, errors.New("ThrottlingException: rate exceeded"), "GetParametersForImport for %s", testARN), false},
		{"wrong material", flow.Errorf(flow.IncorrectKeyMaterial, "ImportKeyMaterial for %s: the material is not the one already bound to the key", testARN), false},
		{"secret gone", flow.Errorf(flow.SecretNotFound, "secret %q not found", "kms-reimport/x"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name, cause := asRecorded(c.err)
			if got := BlockingFailure(name, cause); got != c.blocked {
				t.Fatalf("BlockingFailure(%s, %q) = %v, want %v", name, cause, got, c.blocked)
			}
		})
	}
}

func TestInconclusiveFailure(t *testing.T) {
	for name, want := range map[string]bool{
		flow.AWSTransient: true, flow.Internal: true, "States.Timeout": true, "States.Aborted": true, "Sandbox.Timedout": true,
		"Lambda.ServiceException": true, "Runtime.ExitError": true,
		flow.KeyNotEligible: false, flow.SecretNotFound: false, flow.IncorrectKeyMaterial: false, flow.VerificationFailed: false,
	} {
		if got := InconclusiveFailure(name); got != want {
			t.Errorf("InconclusiveFailure(%s) = %v, want %v", name, got, want)
		}
	}
}

func store(t *testing.T) *Store {
	db, table := ddblocal.Table(t)
	return &Store{DB: db, Table: table}
}

func register(t *testing.T, s *Store, arn string, validTo *time.Time) {
	t.Helper()
	e := Entry{KeyARN: arn, SecretID: "kms-reimport/" + arn[len(arn)-4:], ValidFor: "90d", RenewBefore: "14d", CurrentValidTo: validTo}
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
	disabled := flow.Errorf(flow.KeyNotEligible, "key %s is in state Disabled; an import is done only in states PendingImport, Enabled (enable a Disabled key, cancel a pending deletion first)", testARN)
	creating := flow.Errorf(flow.KeyNotEligible, "key %s is in state Creating; an import is done only in states PendingImport, Enabled (enable a Disabled key, cancel a pending deletion first)", testARN)
	fail := func(err error) func(*Store, string) error {
		return func(s *Store, arn string) error {
			name, cause := asRecorded(err)
			return s.RecordFailure(ctx, arn, Failure{Execution: "exec-" + name, At: now, Error: name, Cause: cause, Stage: "FetchParameters"})
		}
	}
	named := func(name string) func(*Store, string) error {
		return func(s *Store, arn string) error {
			return s.RecordFailure(ctx, arn, Failure{Execution: "exec", At: now, Error: name, Cause: "something", Stage: "ImportMaterial"})
		}
	}
	succeed := func(s *Store, arn string) error {
		v := now.Add(90 * 24 * time.Hour)
		_, err := s.RecordRenewal(ctx, Renewal{KeyARN: arn, Execution: "exec-ok", At: now, ValidTo: &v})
		return err
	}
	reregister := func(s *Store, arn string) error { register(t, s, arn, nil); return nil }
	type step = func(*Store, string) error
	cases := []struct {
		name      string
		steps     []step
		blockedBy string // "" = not blocked
		lastError string
	}{
		{"disabled blocks", []step{fail(disabled)}, flow.KeyNotEligible, flow.KeyNotEligible},
		{"gone blocks", []step{fail(flow.Errorf(flow.KeyNotFound, "KMS key %q not found", testARN))}, flow.KeyNotFound, flow.KeyNotFound},
		{"creating does not block", []step{fail(creating)}, "", flow.KeyNotEligible},
		{"throttled after a block: still blocked", []step{fail(disabled), named(flow.AWSTransient)}, flow.KeyNotEligible, flow.AWSTransient},
		{"timed out after a block: still blocked", []step{fail(disabled), named("States.Timeout")}, flow.KeyNotEligible, "States.Timeout"},
		{"past KMS's checks after a block: unblocked", []step{fail(disabled), named(flow.SecretNotFound)}, "", flow.SecretNotFound},
		{"passing state after a block: unblocked", []step{fail(disabled), fail(creating)}, "", flow.KeyNotEligible},
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
				if b != nil || e.Status != Active {
					t.Fatalf("status %s, block %+v; want active", e.Status, b)
				}
				return
			}
			if b == nil || e.Status != Blocked || b.Error != c.blockedBy || b.Cause == "" || b.LastFailure == nil {
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
		err := s.RecordFailure(ctx, testARN, Failure{Execution: "e", At: now, Error: flow.KeyNotEligible, Cause: "key " + testARN + " is in state Disabled; token " + secret})
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
		if err := s.RecordFailure(ctx, other, Failure{Execution: "e", At: now, Error: flow.KeyNotFound, Cause: "gone"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, other); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	})
	t.Run("deregister is the way out", func(t *testing.T) {
		if err := s.Delete(ctx, testARN); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, testARN); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		// A failure recorded after deregistering does not bring it back.
		if err := s.RecordFailure(ctx, testARN, Failure{Execution: "e", At: now, Error: flow.KeyNotFound, Cause: "gone"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, testARN); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after a late failure: %v", err)
		}
	})
	t.Run("written ineligible by an earlier version", func(t *testing.T) {
		arn := testARN[:len(testARN)-4] + "eeee"
		v := now.Add(-48 * time.Hour)
		item, err := attributevalue.MarshalMap(Entry{PK: PK, SK: sk(arn), Type: "registry", KeyARN: arn, SecretID: "s", ValidFor: "90d", RenewBefore: "14d",
			Status: Ineligible, StatusReason: "KeyNotEligible: key " + arn + " is in state PendingDeletion", LastError: flow.KeyNotEligible, CurrentValidTo: &v, LastSuccess: &v})
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

func TestExpiries(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	at := func(d float64) *time.Time { v := now.Add(time.Duration(d * 24 * float64(time.Hour))); return &v }
	replica := "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	cases := []struct {
		name  string
		e     Entry
		first string
		days  float64
		n     int
	}{
		{"never imported", Entry{KeyARN: testARN}, "", 0, 0},
		{"primary", Entry{KeyARN: testARN, CurrentValidTo: at(10)}, testARN, 10, 1},
		{"replica first", Entry{KeyARN: testARN, CurrentValidTo: at(10), Replicas: []Replica{{KeyARN: replica, ValidTo: at(3.5)}}}, replica, 3.5, 2},
		{"replica never imported", Entry{KeyARN: testARN, CurrentValidTo: at(10), Replicas: []Replica{{KeyARN: replica}}}, testARN, 10, 1},
		{"expired", Entry{KeyARN: testARN, CurrentValidTo: at(-1.005)}, testARN, -1.01, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if n := len(c.e.Expiries()); n != c.n {
				t.Errorf("%d expiries, want %d", n, c.n)
			}
			f := c.e.Earliest()
			if c.first == "" {
				if f != nil {
					t.Fatalf("earliest %+v, want none", f)
				}
				return
			}
			if f == nil || f.KeyARN != c.first {
				t.Fatalf("earliest %+v, want %s", f, c.first)
			}
			if d := DaysLeft(f.ValidTo, now); d != c.days {
				t.Fatalf("DaysLeft %v, want %v (rounded down)", d, c.days)
			}
		})
	}
}

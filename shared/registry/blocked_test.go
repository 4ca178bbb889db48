package registry

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
)

const testARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// asRecorded is a stage's error as record-failure gives it to the
// registry: its name, and the message and facts decoded from the cause
// lambdarun wrote (flow.EncodeCause, flow.ParseCause).
func asRecorded(err error) (string, string, *flow.Facts) {
	msg, facts := flow.ParseCause(flow.EncodeCause(flow.Sanitize(err.Error()), flow.FactsOf(err)))
	return flow.NameOf(err), flow.Sanitize(msg), facts
}

// TestFailureEffect is the blocking decision's table: error name and
// facts in, effect out. No case has a message: none is read.
func TestFailureEffect(t *testing.T) {
	facts := func(check flow.Check, state string) *flow.Facts {
		return &flow.Facts{Check: check, KeyARN: testARN, Region: "eu-west-2", KeyState: state}
	}
	refused := func(kmsErr, state string) *flow.Facts {
		f := facts(flow.CheckKMSRefused, state)
		f.Operation, f.KMSError = "ImportKeyMaterial", kmsErr
		return f
	}
	const invalid, unsupported = "KMSInvalidStateException", "UnsupportedOperationException"
	cases := []struct {
		name  string
		err   string
		facts *flow.Facts
		want  Effect
	}{
		// Only a change to the key fixes these.
		{"KeyNotFound", flow.KeyNotFound, facts(flow.CheckNotFound, ""), Blocks},
		{"KeyNotFound without facts", flow.KeyNotFound, nil, Blocks},
		{"not found at import", flow.KeyNotEligible, facts(flow.CheckNotFound, ""), Blocks},
		{"wrong origin", flow.KeyNotEligible, &flow.Facts{Check: flow.CheckOrigin, Origin: "AWS_KMS", KeyState: "Enabled"}, Blocks},
		{"wrong origin while Creating", flow.KeyNotEligible, &flow.Facts{Check: flow.CheckOrigin, Origin: "AWS_KMS", KeyState: "Creating"}, Blocks},
		{"custom key store", flow.KeyNotEligible, &flow.Facts{Check: flow.CheckCustomKeyStore, CustomKeyStoreID: "cks-1234567890abcdef0", KeyState: "Unavailable"}, Blocks},
		{"unsupported spec", flow.KeyNotEligible, &flow.Facts{Check: flow.CheckKeySpec, KeySpec: "SM2", KeyState: "Enabled"}, Blocks},
		{"replica not primary", flow.KeyNotEligible, &flow.Facts{Check: flow.CheckReplicaNotPrimary, PrimaryKeyARN: testARN, KeyState: "Enabled"}, Blocks},
		{"Disabled", flow.KeyNotEligible, facts(flow.CheckKeyState, "Disabled"), Blocks},
		{"PendingDeletion", flow.KeyNotEligible, facts(flow.CheckKeyState, "PendingDeletion"), Blocks},
		{"PendingReplicaDeletion", flow.KeyNotEligible, facts(flow.CheckKeyState, "PendingReplicaDeletion"), Blocks},
		{"a state this version does not know", flow.KeyNotEligible, facts(flow.CheckKeyState, "Frozen"), Blocks},
		{"a check this version does not know", flow.KeyNotEligible, facts("quantum", "Enabled"), Blocks},
		{"KMSInvalidStateException, PendingDeletion", flow.KeyNotEligible, refused(invalid, "PendingDeletion"), Blocks},
		{"KMSInvalidStateException, Disabled", flow.KeyNotEligible, refused(invalid, "Disabled"), Blocks},
		{"UnsupportedOperationException", flow.KeyNotEligible, refused(unsupported, ""), Blocks},
		{"UnsupportedOperationException, Enabled", flow.KeyNotEligible, refused(unsupported, "Enabled"), Blocks},

		// States KMS leaves by itself, and refusals the state does not explain.
		{"Creating (KeyNotReady)", flow.KeyNotReady, facts(flow.CheckKeyState, "Creating"), Clears},
		{"Updating (KeyNotReady)", flow.KeyNotReady, facts(flow.CheckKeyState, "Updating"), Clears},
		{"Unavailable (KeyNotReady)", flow.KeyNotReady, facts(flow.CheckKeyState, "Unavailable"), Clears},
		{"Updating named KeyNotEligible", flow.KeyNotEligible, facts(flow.CheckKeyState, "Updating"), Clears},
		{"KMSInvalidStateException, Creating", flow.KeyNotEligible, refused(invalid, "Creating"), Clears},
		{"KMSInvalidStateException, Enabled (eventual consistency)", flow.KeyNotEligible, refused(invalid, "Enabled"), Clears},
		{"KMSInvalidStateException, PendingImport", flow.KeyNotEligible, refused(invalid, "PendingImport"), Clears},
		{"KMSInvalidStateException, state not known", flow.KeyNotEligible, refused(invalid, ""), Keeps},

		// Past KMS's checks: the key is not blocked.
		{"IncorrectKeyMaterial", flow.IncorrectKeyMaterial, nil, Clears},
		{"SecretNotFound", flow.SecretNotFound, nil, Clears},
		{"VerificationFailed", flow.VerificationFailed, nil, Clears},
		{"InvalidSecret", flow.InvalidSecret, nil, Clears},

		// Inconclusive: a blocked key stays blocked, whatever facts say.
		{"AWSTransient", flow.AWSTransient, nil, Keeps},
		{"AccessDenied: the deployment, not the key", flow.AccessDenied, nil, Keeps},
		{"Internal", flow.Internal, facts(flow.CheckKeyState, "Disabled"), Keeps},
		{"no name", "", nil, Keeps},
		{"States.Timeout", "States.Timeout", nil, Keeps},
		{"States.Aborted", "States.Aborted", nil, Keeps},
		{"States.TaskFailed", "States.TaskFailed", nil, Keeps},
		{"Lambda.ServiceException", "Lambda.ServiceException", nil, Keeps},
		{"Lambda.ClientExecutionTimeoutException", "Lambda.ClientExecutionTimeoutException", nil, Keeps},
		{"Sandbox.Timedout", "Sandbox.Timedout", nil, Keeps},
		{"Runtime.ExitError", "Runtime.ExitError", nil, Keeps},

		// No facts (a function of a version before facts): the
		// documented default.
		{"KeyNotEligible without facts", flow.KeyNotEligible, nil, Blocks},
		{"KeyNotReady without facts", flow.KeyNotReady, nil, Clears},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := FailureEffect(c.err, c.facts); got != c.want {
				t.Fatalf("FailureEffect(%q, %+v) = %s, want %s", c.err, c.facts, got, c.want)
			}
		})
	}
}

// TestEveryKeyStateThroughTheContract runs every KMS key state through
// what the fetch stage checks (kmsaccess.CheckImportable), the cause
// lambdarun writes and record-failure decodes, to FailureEffect: a state
// an import is done in passes the check; a passing state never blocks;
// every other state does. A new KMS state breaks this test rather than
// silently blocking (or unblocking) keys.
func TestEveryKeyStateThroughTheContract(t *testing.T) {
	var passing []types.KeyState
	for _, state := range types.KeyState("").Values() {
		md := &types.KeyMetadata{Arn: aws.String(testARN), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecSymmetricDefault, KeyState: state}
		err := kmsaccess.CheckImportable(md)
		if err == nil {
			if !slices.Contains(kmsaccess.ImportableStates, state) {
				t.Errorf("state %s: CheckImportable accepts it but it is not importable", state)
			}
			continue
		}
		name, _, facts := asRecorded(err)
		if facts == nil || facts.Check != flow.CheckKeyState || facts.KeyState != string(state) || facts.KeyARN != testARN || facts.Region != "eu-west-2" {
			t.Errorf("state %s: facts %+v", state, facts)
		}
		want := Blocks
		if slices.Contains(kmsaccess.PassingStates, state) {
			want = Clears
			passing = append(passing, state)
		}
		if got := FailureEffect(name, facts); got != want {
			t.Errorf("state %s: FailureEffect(%s, %+v) = %s, want %s", state, name, facts, got, want)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(passing)), slices.Sorted(slices.Values(kmsaccess.PassingStates))) {
		t.Errorf("passing states refused by CheckImportable: %v, want %v (a state KMS no longer has?)", passing, kmsaccess.PassingStates)
	}
}

// TestRefusalsThroughTheContract: what the stages name from KMS's
// exceptions (kmsaccess.Refused, by the exception's type), the replica and
// primary checks, through the cause, to FailureEffect. A refusal by state
// is decided once record-failure adds the state DescribeKey shows.
func TestRefusalsThroughTheContract(t *testing.T) {
	sdk := func(op string, err error) error {
		return &smithy.OperationError{ServiceID: "KMS", OperationName: op, Err: err}
	}
	replica := "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	rmd := func(origin types.OriginType, state types.KeyState) *types.KeyMetadata {
		return &types.KeyMetadata{Arn: aws.String(replica), Origin: origin, KeySpec: types.KeySpecSymmetricDefault, KeyState: state}
	}
	cases := []struct {
		name      string
		err       error
		stateNow  string // what record-failure's DescribeKey adds to a kmsRefused
		wantName  string
		wantCheck flow.Check
		want      Effect
	}{
		{"gone", func() error { _, err := kmsaccess.Describe(context.Background(), notFound{}, testARN); return err }(), "", flow.KeyNotFound, flow.CheckNotFound, Blocks},
		{"GetParametersForImport, pending deletion", kmsaccess.Refused("GetParametersForImport", testARN, sdk("GetParametersForImport", &types.KMSInvalidStateException{})), "PendingDeletion", flow.KeyNotEligible, flow.CheckKMSRefused, Blocks},
		{"ImportKeyMaterial, disabled", kmsaccess.Refused("ImportKeyMaterial", testARN, sdk("ImportKeyMaterial", &types.KMSInvalidStateException{})), "Disabled", flow.KeyNotEligible, flow.CheckKMSRefused, Blocks},
		{"ImportKeyMaterial, creating replica", kmsaccess.Refused("ImportKeyMaterial", replica, sdk("ImportKeyMaterial", &types.KMSInvalidStateException{})), "Creating", flow.KeyNotEligible, flow.CheckKMSRefused, Clears},
		{"GetParametersForImport, state not known", kmsaccess.Refused("GetParametersForImport", testARN, sdk("GetParametersForImport", &types.KMSInvalidStateException{})), "", flow.KeyNotEligible, flow.CheckKMSRefused, Keeps},
		{"not EXTERNAL", kmsaccess.Refused("GetParametersForImport", testARN, sdk("GetParametersForImport", &types.UnsupportedOperationException{})), "", flow.KeyNotEligible, flow.CheckKMSRefused, Blocks},
		{"gone at import", kmsaccess.Refused("ImportKeyMaterial", testARN, sdk("ImportKeyMaterial", &types.NotFoundException{})), "", flow.KeyNotEligible, flow.CheckNotFound, Blocks},
		{"registered a replica", kmsaccess.NotPrimary(rmd(types.OriginTypeExternal, types.KeyStateEnabled), testARN), "", flow.KeyNotEligible, flow.CheckReplicaNotPrimary, Blocks},
		{"replica disabled", kmsaccess.CheckReplica(rmd(types.OriginTypeExternal, types.KeyStateDisabled), testARN), "", flow.KeyNotEligible, flow.CheckKeyState, Blocks},
		{"replica updating", kmsaccess.CheckReplica(rmd(types.OriginTypeExternal, types.KeyStateUpdating), testARN), "", flow.KeyNotReady, flow.CheckKeyState, Clears},
		{"replica not EXTERNAL", kmsaccess.CheckReplica(rmd(types.OriginTypeAwsKms, types.KeyStateCreating), testARN), "", flow.KeyNotEligible, flow.CheckOrigin, Blocks},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name, _, facts := asRecorded(c.err)
			if name != c.wantName || facts == nil || facts.Check != c.wantCheck {
				t.Fatalf("%s %+v, want %s with check %s", name, facts, c.wantName, c.wantCheck)
			}
			if c.stateNow != "" {
				facts.KeyState = c.stateNow
			}
			if got := FailureEffect(name, facts); got != c.want {
				t.Fatalf("FailureEffect(%s, %+v) = %s, want %s", name, facts, got, c.want)
			}
		})
	}
	if err := kmsaccess.Refused("ImportKeyMaterial", testARN, sdk("ImportKeyMaterial", &types.IncorrectKeyMaterialException{})); err != nil {
		t.Errorf("Refused named an error it does not know: %v", err)
	}
	if err := kmsaccess.CheckReplica(rmd(types.OriginTypeExternal, types.KeyStatePendingImport), testARN); err != nil {
		t.Errorf("an importable replica refused: %v", err)
	}
}

// notFound is a DescribeKey that finds no key.
type notFound struct{}

func (notFound) DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	return nil, &smithy.OperationError{ServiceID: "KMS", OperationName: "DescribeKey", Err: &types.NotFoundException{Message: aws.String("not found")}}
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

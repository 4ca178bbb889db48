package registry

import (
	"math"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
)

// Effect is what a failed rotation does to the key's status.
type Effect int

const (
	// Keeps: the failure tells nothing about the key (AWS throttled or
	// failed, a bug, a Lambda or an execution that timed out or was
	// stopped, a refusal whose key state is not known); the status stays
	// as it was, a blocked key stays blocked.
	Keeps Effect = iota
	// Clears: the key is not blocked: the failure got past KMS's checks,
	// or the key is in a state KMS leaves by itself; the key is active.
	Clears
	// Blocks: only a change to the key (or to its registration) fixes
	// it; the key is reported blocked until it is renewed.
	Blocks
)

func (e Effect) String() string {
	return [...]string{"keeps", "clears", "blocks"}[e]
}

// FailureEffect decides, from the failure's error name and its facts
// (flow.Facts, decoded from the cause), what a failed rotation does to the
// key's status. It reads no message.
//
//   - Inconclusive names (AWSTransient, Internal, AccessDenied, none, States.*,
//     Lambda.*, Sandbox.*, Runtime.*): Keeps.
//   - KeyNotFound: Blocks (the fetch stage retried it first, for KMS's
//     eventual consistency after CreateKey).
//   - KeyNotEligible with facts: Blocks for the checks notFound, origin,
//     customKeyStore, keySpec, replicaNotPrimary and any check this
//     version does not know; for keyState, Blocks unless the state is
//     importable or passing (kmsaccess.ImportableStates, PassingStates:
//     Clears); for kmsRefused, by the exception: KMSInvalidStateException
//     decides by the state DescribeKey showed afterwards as keyState does,
//     and Keeps when that state is not known; any other exception
//     (UnsupportedOperationException) Blocks.
//   - KeyNotEligible without facts (a function of a version before facts,
//     in flight during a deployment): Blocks. KeyNotEligible always meant
//     "only a change to the key fixes it", and a wrongly blocked key
//     loses nothing: it is planned on every run like any blocked key and
//     made active by its next success.
//   - Any other name (KeyNotReady, IncorrectKeyMaterial, ...): Clears.
func FailureEffect(errName string, f *flow.Facts) Effect {
	switch {
	case inconclusive(errName):
		return Keeps
	case errName == flow.KeyNotFound:
		return Blocks
	case errName != flow.KeyNotEligible:
		return Clears
	case f == nil:
		return Blocks
	}
	switch f.Check {
	case flow.CheckKeyState:
		return stateEffect(f.KeyState)
	case flow.CheckKMSRefused:
		switch {
		case f.KMSError != invalidState:
			return Blocks
		case f.KeyState == "":
			return Keeps
		}
		return stateEffect(f.KeyState)
	}
	return Blocks
}

// invalidState is the code of KMS's KMSInvalidStateException.
var invalidState = (&types.KMSInvalidStateException{}).ErrorCode()

// stateEffect is what a refusal for a key in state does: a state an
// import is done in, or one KMS leaves by itself, is no block; any other
// (Disabled, PendingDeletion, PendingReplicaDeletion, a state this
// version does not know) is.
func stateEffect(state string) Effect {
	st := types.KeyState(state)
	if slices.Contains(kmsaccess.ImportableStates, st) || slices.Contains(kmsaccess.PassingStates, st) {
		return Clears
	}
	return Blocks
}

// inconclusive says whether a failure named errName tells nothing about
// the key itself: AWS throttled or failed, a bug, a Lambda or execution
// that timed out or was stopped.
func inconclusive(errName string) bool {
	if errName == flow.AWSTransient || errName == flow.Internal || errName == flow.AccessDenied || errName == flow.MemberRoleUnavailable || errName == "" {
		return true
	}
	for _, p := range []string{"States.", "Lambda.", "Sandbox.", "Runtime."} {
		if strings.HasPrefix(errName, p) {
			return true
		}
	}
	return false
}

// Block is why a key is blocked.
type Block struct {
	// Error is the error name of the failure that blocked the key, Cause
	// its sanitized message.
	Error string `json:"error"`
	Cause string `json:"cause,omitempty"`
	// LastFailure is when a rotation of the key last failed.
	LastFailure *time.Time `json:"lastFailure,omitempty"`
}

// Block returns why e is blocked, or nil when it is not. Entries written
// by earlier versions (status ineligible) are blocked too.
func (e Entry) Block() *Block {
	if e.Status != Blocked && e.Status != Ineligible {
		return nil
	}
	b := &Block{Error: e.LastError, Cause: e.StatusReason, LastFailure: e.LastFailure}
	// StatusReason is "ErrorName: cause"; an error name has no spaces.
	if name, cause, ok := strings.Cut(e.StatusReason, ": "); ok && name != "" && !strings.ContainsAny(name, " \t") {
		b.Error, b.Cause = name, cause
	}
	if b.Error == "" {
		b.Error = "unknown"
	}
	return b
}

// Expiry is when one KMS key of an entry (the primary or a replica) loses
// its key material.
type Expiry struct {
	KeyARN  string    `json:"keyArn"`
	ValidTo time.Time `json:"validTo"`
	// Primary is the registered key of a replica's expiry.
	Primary string `json:"primaryKeyArn,omitempty"`
}

// Expiries lists the known ValidTo of e's primary and replicas (none for
// a key never imported or imported without expiry).
func (e Entry) Expiries() []Expiry {
	var out []Expiry
	if e.CurrentValidTo != nil {
		out = append(out, Expiry{KeyARN: e.KeyARN, ValidTo: e.CurrentValidTo.UTC()})
	}
	for _, r := range e.Replicas {
		if r.ValidTo != nil {
			out = append(out, Expiry{KeyARN: r.KeyARN, ValidTo: r.ValidTo.UTC(), Primary: e.KeyARN})
		}
	}
	return out
}

// Earliest is the first of e's expiries, or nil.
func (e Entry) Earliest() *Expiry {
	var first *Expiry
	for _, x := range e.Expiries() {
		if first == nil || x.ValidTo.Before(first.ValidTo) {
			first = &x
		}
	}
	return first
}

// DaysLeft is the time from now to validTo in days, rounded down to a
// hundredth (never rounded up: a key is never shown further from expiry
// than it is); negative once expired.
func DaysLeft(validTo, now time.Time) float64 {
	return math.Floor(validTo.Sub(now).Hours()/24*100) / 100
}

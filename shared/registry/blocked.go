package registry

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
)

// PassingKeyStates are the KMS key states a key leaves by itself: a key
// being created, a multi-Region key being updated, a key whose custom key
// store is disconnected. A rotation refused for one of them is retried by
// the next run, and the key is not blocked.
var PassingKeyStates = func() []string {
	out := make([]string, len(kmsaccess.PassingStates))
	for i, st := range kmsaccess.PassingStates {
		out[i] = string(st)
	}
	return out
}()

var (
	// What kmsaccess.CheckImportable and the fetch stage's replica check
	// say about the key: "key … has origin AWS_KMS; …", "key … is in
	// state Disabled; …", "replica … has origin EXTERNAL and state
	// Creating; …".
	originRe = regexp.MustCompile(`\bhas origin ([A-Za-z_]+)`)
	stateRe  = regexp.MustCompile(`\b(?:is in|and) state ([A-Za-z]+)`)
	// KMS's own words for a state no retry fixes, in a
	// KMSInvalidStateException ("… is pending deletion.", "… is
	// disabled."; the stand-in says "… is PendingDeletion and …").
	blockingStateRe = regexp.MustCompile(`(?i)pending\s*(?:replica\s*)?deletion|disabled`)
)

const invalidState = "KMSInvalidStateException"

// BlockingFailure says whether a rotation failure with this error name and
// cause blocks the key: only a change to the key (or to its registration)
// fixes it, so the key is reported as blocked until it is renewed.
//
//   - KeyNotFound: the key is gone (the rotation retried it first, for
//     KMS's eventual consistency after CreateKey).
//   - KeyNotEligible: the key has the wrong origin, is in a custom key
//     store, has an unsupported spec, is a replica rather than a primary,
//     or is in a state an import can't be done in (Disabled,
//     PendingDeletion, PendingReplicaDeletion) — unless the state is a
//     passing one (PassingKeyStates), or KMS refused with a
//     KMSInvalidStateException that names no blocking state: the stage
//     had just found the key importable, so that refusal is passing (KMS
//     is eventually consistent).
//
// Every other failure leaves the key unblocked.
func BlockingFailure(errName, cause string) bool {
	switch errName {
	case flow.KeyNotFound:
		return true
	case flow.KeyNotEligible:
	default:
		return false
	}
	if i := strings.LastIndex(cause, invalidState); i >= 0 {
		return blockingStateRe.MatchString(cause[i+len(invalidState):])
	}
	if m := originRe.FindStringSubmatch(cause); m != nil && m[1] != "EXTERNAL" {
		return true
	}
	if m := stateRe.FindStringSubmatch(cause); m != nil && slices.Contains(PassingKeyStates, m[1]) {
		return false
	}
	return true
}

// InconclusiveFailure says whether a failure tells nothing about the key
// itself: AWS throttled or failed, a bug, a Lambda or execution that timed
// out or was stopped. It leaves a blocked key blocked.
func InconclusiveFailure(errName string) bool {
	if errName == flow.AWSTransient || errName == flow.Internal || errName == "" {
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

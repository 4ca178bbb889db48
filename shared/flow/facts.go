package flow

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Check names the check a key failed. The registry decides from it (and
// the other facts), never from a message, whether the failure blocks the
// key (registry.FailureEffect).
type Check string

// The checks. Their values are part of the error contract
// (infra/statemachine/README.md, "Facts"): records and state payloads
// carry them.
const (
	// CheckNotFound: KMS has no such key (DescribeKey, or NotFoundException
	// from an import call).
	CheckNotFound Check = "notFound"
	// CheckOrigin: the key's origin is not EXTERNAL (Facts.Origin).
	CheckOrigin Check = "origin"
	// CheckCustomKeyStore: the key is in a custom key store
	// (Facts.CustomKeyStoreID).
	CheckCustomKeyStore Check = "customKeyStore"
	// CheckKeyState: the key is in a state an import is not done in
	// (Facts.KeyState), a passing one included (then KeyNotReady).
	CheckKeyState Check = "keyState"
	// CheckKeySpec: the key's spec is not one the product imports
	// (Facts.KeySpec).
	CheckKeySpec Check = "keySpec"
	// CheckReplicaNotPrimary: the key named is a multi-Region replica; the
	// product renews a primary and its replicas (Facts.PrimaryKeyARN).
	CheckReplicaNotPrimary Check = "replicaNotPrimary"
	// CheckKMSRefused: KMS refused an import call (Facts.Operation) with
	// the exception Facts.KMSError, named from its type. Facts.KeyState is
	// what DescribeKey showed afterwards (record-failure asks; empty when
	// it could not tell).
	CheckKMSRefused Check = "kmsRefused"
)

// Facts are what a failed check established about a key, as typed values
// read from KMS (DescribeKey's metadata, the type of KMS's exception).
// They travel with the error to record-failure inside the cause
// (EncodeCause) and decide whether the key is blocked.
type Facts struct {
	Check Check `json:"check"`
	// KeyARN is the key the check was about (a replica's own ARN for a
	// replica), or the id or alias as given when KMS found no key.
	KeyARN string `json:"keyArn,omitempty"`
	// Region is the key's Region.
	Region string `json:"region,omitempty"`
	// KeyState, Origin, KeySpec, CustomKeyStoreID: DescribeKey's values.
	KeyState         string `json:"keyState,omitempty"`
	Origin           string `json:"origin,omitempty"`
	KeySpec          string `json:"keySpec,omitempty"`
	CustomKeyStoreID string `json:"customKeyStoreId,omitempty"`
	// PrimaryKeyARN is the primary of a replica.
	PrimaryKeyARN string `json:"primaryKeyArn,omitempty"`
	// Operation is the KMS call refused, KMSError the error code of the
	// exception's type (KMSInvalidStateException,
	// UnsupportedOperationException).
	Operation string `json:"operation,omitempty"`
	KMSError  string `json:"kmsError,omitempty"`
}

// Errorf returns a named error that carries f.
func (f Facts) Errorf(name, format string, args ...any) error {
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...), Facts: &f}
}

// Wrap names err and attaches f. A nil err gives nil.
func (f Facts) Wrap(name string, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...), Err: err, Facts: &f}
}

// FactsOf returns the facts of the outermost named error in err's chain
// that carries some, or nil.
func FactsOf(err error) *Facts {
	for err != nil {
		var fe *Error
		if !errors.As(err, &fe) {
			return nil
		}
		if fe.Facts != nil {
			return fe.Facts
		}
		err = fe.Err
	}
	return nil
}

// factsMarker starts the last line of a cause that carries facts:
// "<message>\nfacts: {…}". The message never holds it (EncodeCause).
const factsMarker = "\nfacts: "

// maxFactsJSON bounds the facts object a cause may end with.
const maxFactsJSON = 4096

// EncodeCause is the cause of a failure: the human message, then, when
// there are facts, a line "facts: " and the facts as one JSON object.
// lambdarun writes it as the Lambda errorMessage; record-failure writes
// it back as the execution's Cause.
func EncodeCause(msg string, f *Facts) string {
	msg = strings.ReplaceAll(msg, factsMarker, "\nfacts : ")
	if f == nil {
		return msg
	}
	b, err := json.Marshal(f)
	if err != nil {
		return msg // a struct of strings always marshals
	}
	return msg + factsMarker + string(b)
}

// ParseCause splits a cause EncodeCause wrote into its message and facts.
// A cause without a facts line (an older function's, a platform error's)
// gives the whole cause and nil. The facts are decoded as JSON; the
// message is never read.
func ParseCause(cause string) (string, *Facts) {
	i := strings.LastIndex(cause, factsMarker)
	if i < 0 {
		return cause, nil
	}
	raw := strings.TrimSpace(cause[i+len(factsMarker):])
	if len(raw) > maxFactsJSON {
		return cause, nil
	}
	// One JSON object and nothing after it (Unmarshal refuses trailing
	// data), naming a check.
	var f Facts
	if err := json.Unmarshal([]byte(raw), &f); err != nil || f.Check == "" {
		return cause, nil
	}
	return cause[:i], &f
}

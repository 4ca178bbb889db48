// Package flow holds what passes between the stages of the rotation state
// machine: the state payload and the named errors its Retry and Catch
// clauses match on.
package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Error names the state machine branches on. They are part of the public
// interface: infra/statemachine/README.md documents each, and renaming one
// breaks Retry/Catch clauses and users' alarms.
const (
	// InvalidInput: the execution input or event is malformed. Not retried.
	InvalidInput = "InvalidInput"
	// KeyNotFound: KMS has no such key (or alias). Facts: notFound. Not
	// retried.
	KeyNotFound = "KeyNotFound"
	// KeyNotEligible: the key cannot take an import (origin, state, spec,
	// custom key store, a replica), or KMS refused an import call. Always
	// with facts (facts.go) naming the check. Not retried.
	KeyNotEligible = "KeyNotEligible"
	// KeyNotReady: the key (or a replica) is in a passing state
	// (Creating, Updating, Unavailable). Retried with backoff; a fleet run
	// tries it again next time, and the key is never blocked for it.
	KeyNotReady = "KeyNotReady"
	// SecretNotFound: the secret or the pinned version does not exist.
	SecretNotFound = "SecretNotFound"
	// InvalidSecret: the secret's material has the wrong shape for the key.
	InvalidSecret = "InvalidSecret"
	// UnsupportedWrapping: the wrapping algorithm/spec cannot be used for
	// this key or material.
	UnsupportedWrapping = "UnsupportedWrapping"
	// ImportTokenExpiring: the import token has less remaining validity than
	// required (or KMS says it expired). The state machine fetches fresh
	// import parameters and wraps again.
	ImportTokenExpiring = "ImportTokenExpiring"
	// TokenRefreshLimitExceeded: fresh parameters were fetched too often in
	// one execution.
	TokenRefreshLimitExceeded = "TokenRefreshLimitExceeded"
	// InvalidImportToken: KMS rejected the token as not belonging to the key.
	InvalidImportToken = "InvalidImportToken"
	// IncorrectKeyMaterial: the material is not the one already bound to
	// the key. Never retried: only the right material fixes it.
	IncorrectKeyMaterial = "IncorrectKeyMaterial"
	// InvalidCiphertext: KMS could not unwrap the encrypted material.
	InvalidCiphertext = "InvalidCiphertext"
	// TokenStateConflict: the token record is not in the state this stage
	// needs (used already, expired, missing).
	TokenStateConflict = "TokenStateConflict"
	// RotationInProgress: another execution holds the key's lease. The
	// state machine ends this execution cleanly (not a failure).
	RotationInProgress = "RotationInProgress"
	// LeaseLost: the execution's lease on the key lapsed and another
	// execution took it over; checked (a conditional write) right before
	// ImportKeyMaterial and RotateKeyOnDemand. Not retried: the other
	// execution owns the key now.
	LeaseLost = "LeaseLost"
	// VerificationFailed: after the import the key is not as asked.
	VerificationFailed = "VerificationFailed"
	// MaterialSecretMissing: a key material of the key has no secret
	// version in the material map, or that version is gone. Names the
	// KeyMaterialId. Not retried: only an operator fixes it.
	MaterialSecretMissing = "MaterialSecretMissing"
	// RotationNotSupported: rotation was asked for a key that cannot
	// rotate imported material (HMAC, asymmetric: one material for life).
	RotationNotSupported = "RotationNotSupported"
	// NewMaterialInvalid: the version at newMaterialStage is missing or
	// already holds one of the key's materials.
	NewMaterialInvalid = "NewMaterialInvalid"
	// RotationConflict: KMS says a rotation of the key is already in
	// progress (ConflictException). Retried with backoff.
	RotationConflict = "RotationConflict"
	// RotationLimitExceeded: the key has had the 25 on-demand rotations
	// KMS allows over its life (LimitExceededException). Not retried.
	RotationLimitExceeded = "RotationLimitExceeded"
	// ReplicaNotSynced: a replica does not know the primary's new key
	// material yet (multi-Region properties are synchronised
	// asynchronously). Retried with backoff.
	ReplicaNotSynced = "ReplicaNotSynced"
	// AWSTransient: throttling, timeouts and internal errors of KMS,
	// Secrets Manager or DynamoDB. Retried with backoff.
	AWSTransient = "AWSTransient"
	// AccessDenied: IAM (or an SCP, a key policy, a VPC endpoint policy)
	// refused a call the stage makes: a role without the permission, a
	// key without the managed-key tag, a secret outside the prefix. Fixed
	// in the deployment, never by retrying; the key's status is left as
	// it was.
	AccessDenied = "AccessDenied"
	// MemberRoleUnavailable: the hub could not assume the member role of
	// the key's account (the role is missing, its trust or an SCP denies
	// the hub, the ExternalId differs). Names the account and the role
	// ARN. Only that account's keys fail; not retried (an operator deploys
	// or fixes the member template), and the key's status is left as it
	// was, as for AccessDenied.
	MemberRoleUnavailable = "MemberRoleUnavailable"
	// Internal: anything else; a bug or an unexpected AWS answer.
	Internal = "Internal"
)

// MemberRole names a failure to get credentials of a member account's role
// (sts:AssumeRole): throttling and network failures stay AWSTransient,
// anything else (AccessDenied for a missing role, a trust or an SCP that
// refuses, a wrong ExternalId) is MemberRoleUnavailable naming the account
// and the role. Nil stays nil.
func MemberRole(err error, account, roleARN string) error {
	if err == nil {
		return nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	if code := AWSCode(err); transientCodes[code] || (code == "" && isNetwork(err)) {
		return Wrap(AWSTransient, err, "assuming the member role %s of account %s", roleARN, account)
	}
	return Wrap(MemberRoleUnavailable, err, "the member role %s of account %s can't be assumed (deploy infra/member/template.yaml in that account with this hub's ExternalId)", roleARN, account)
}

// Error is an error with a stable name. Its message is safe to log and to
// put in a state payload: callers never build one from key material or an
// import token. Facts, when set, are what a check established about the
// key (facts.go): decisions read them, never the message.
type Error struct {
	Name  string
	Msg   string
	Err   error
	Facts *Facts
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns a named error with a formatted message.
func Errorf(name, format string, args ...any) error {
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...)}
}

// Wrap names err. A nil err gives nil.
func Wrap(name string, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Name: name, Msg: fmt.Sprintf(format, args...), Err: err}
}

// NameOf returns the stable name of err, or Internal.
func NameOf(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Name
	}
	return Internal
}

// transientCodes are AWS error codes that retrying later can fix.
var transientCodes = map[string]bool{
	"ThrottlingException":                    true,
	"Throttling":                             true,
	"TooManyRequestsException":               true,
	"RequestLimitExceeded":                   true,
	"DependencyTimeoutException":             true,
	"KMSInternalException":                   true,
	"InternalServiceError":                   true,
	"InternalFailure":                        true,
	"InternalServerError":                    true,
	"ServiceUnavailable":                     true,
	"ProvisionedThroughputExceededException": true,
	"ThrottledException":                     true,
	"TransactionConflictException":           true,
}

// AWSCode returns the API error code of err, or "".
func AWSCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// deniedCodes are the codes AWS answers an access denial with: KMS,
// Secrets Manager and DynamoDB say AccessDeniedException, SNS
// AuthorizationError, STS and the query APIs AccessDenied.
var deniedCodes = map[string]bool{
	"AccessDeniedException": true,
	"AccessDenied":          true,
	"AuthorizationError":    true,
}

// FromAWS names an AWS SDK error: transient codes (and network failures)
// become AWSTransient, access denials AccessDenied, everything else the
// fallback name.
func FromAWS(err error, fallback, format string, args ...any) error {
	if err == nil {
		return nil
	}
	// A member account's credentials could not be had (MemberRole): the
	// call never reached the service; keep that name, whatever the STS
	// code inside.
	var fe *Error
	if errors.As(err, &fe) && (fe.Name == MemberRoleUnavailable || fe.Name == AWSTransient) {
		return Wrap(fe.Name, err, format, args...)
	}
	code := AWSCode(err)
	switch {
	case transientCodes[code] || (code == "" && isNetwork(err)):
		return Wrap(AWSTransient, err, format, args...)
	case deniedCodes[code]:
		return Wrap(AccessDenied, err, format, args...)
	}
	return Wrap(fallback, err, format, args...)
}

// isNetwork recognises, by type, failures of the network or of the SDK's
// retrying that trying again later can fix: the request never got an
// answer, the connection broke, a deadline passed, or the SDK gave up
// after its attempts or its retry quota.
func isNetwork(err error) bool {
	var (
		op       *net.OpError
		dns      *net.DNSError
		send     *smithyhttp.RequestSendError
		attempts *retry.MaxAttemptsError
		quota    ratelimit.QuotaExceededError
	)
	return errors.As(err, &op) || errors.As(err, &dns) || errors.As(err, &send) ||
		errors.As(err, &attempts) || errors.As(err, &quota) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// longOpaque matches runs that look like encoded binary (base64 or hex):
// an error cause never needs them, and they are what a leaked token or key
// would look like.
var longOpaque = regexp.MustCompile(`[A-Za-z0-9+/=_-]{40,}`)

// arnRe finds ARNs: long but not secret, and what an operator needs.
var arnRe = regexp.MustCompile(`arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:[A-Za-z0-9/_+=.@:#-]+`)

// uuidRe finds UUIDs and mrk- ids (key ids, version ids, execution names).
var uuidRe = regexp.MustCompile(`^(?:.*[/:#])?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$`)

// Sanitize makes an error message fit for a record or a notification:
// opaque runs are redacted (ARNs and UUIDs are kept) and the length is
// bounded.
func Sanitize(msg string) string {
	var arns []string
	msg = arnRe.ReplaceAllStringFunc(msg, func(a string) string {
		arns = append(arns, a)
		return fmt.Sprintf("\x00%d\x00", len(arns)-1)
	})
	msg = longOpaque.ReplaceAllStringFunc(msg, func(s string) string {
		if uuidRe.MatchString(s) {
			return s
		}
		return "[redacted]"
	})
	for i, a := range arns {
		msg = strings.Replace(msg, fmt.Sprintf("\x00%d\x00", i), a, 1)
	}
	const max = 1000
	if len(msg) > max {
		msg = msg[:max] + "…"
	}
	return msg
}

package flow

import (
	"encoding/json"
	"time"
)

// State is the payload every stage receives and returns. It carries
// references and decisions, never key material or an import token.
type State struct {
	// Input is the raw execution input; only the first stage reads it.
	Input     json.RawMessage `json:"input,omitempty"`
	Execution Execution       `json:"execution"`
	Request   *Request        `json:"request,omitempty"`
	Key       *Key            `json:"key,omitempty"`
	Token     *TokenRef       `json:"token,omitempty"`
	Import    *ImportResult   `json:"import,omitempty"`
	Verified  *Verification   `json:"verification,omitempty"`
	// LastError is where the state machine puts an error it recovered from
	// (ImportTokenExpiring before a fresh fetch).
	LastError *StateError `json:"lastError,omitempty"`
	// Error and FailedStage are set by the Catch clauses before the
	// failure is recorded.
	Error       *StateError `json:"error,omitempty"`
	FailedStage string      `json:"failedStage,omitempty"`
}

// Execution identifies the Step Functions execution (from the context
// object).
type Execution struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	StartTime string `json:"startTime,omitempty"`
}

// Expiration models, as KMS names them.
const (
	Expires       = "KEY_MATERIAL_EXPIRES"
	DoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE"
)

// Request is the validated, normalized execution input.
type Request struct {
	KeyID           string `json:"keyId"`
	SecretID        string `json:"secretId"`
	SecretVersionID string `json:"secretVersionId,omitempty"`
	// SecretVersionStage is the staging label read when no version is
	// pinned; the first stage resolves it to SecretVersionID.
	SecretVersionStage string     `json:"secretVersionStage,omitempty"`
	ExpirationModel    string     `json:"expirationModel"`
	ValidTo            *time.Time `json:"validTo,omitempty"`
	WrappingAlgorithm  string     `json:"wrappingAlgorithm,omitempty"`
	WrappingKeySpec    string     `json:"wrappingKeySpec,omitempty"`
	// WrappingDefaulted says the product chose the algorithm and spec.
	WrappingDefaulted   bool `json:"wrappingDefaulted,omitempty"`
	AllowLegacyWrapping bool `json:"allowLegacyWrapping,omitempty"`
	// Register keeps the key in the registry with ValidFor and
	// RenewBefore as its renewal policy.
	Register    bool   `json:"register"`
	ValidFor    string `json:"validFor,omitempty"`
	RenewBefore string `json:"renewBefore,omitempty"`
}

// Key is what DescribeKey said before the import.
type Key struct {
	ARN           string     `json:"arn"`
	KeySpec       string     `json:"keySpec"`
	KeyUsage      string     `json:"keyUsage"`
	StateBefore   string     `json:"stateBefore"`
	ValidToBefore *time.Time `json:"validToBefore,omitempty"`
}

// TokenRef points at a token record in DynamoDB.
type TokenRef struct {
	ID                string    `json:"id"`
	ParametersValidTo time.Time `json:"parametersValidTo"`
	// Fetches counts GetParametersForImport calls in this execution.
	Fetches int  `json:"fetches"`
	Wrapped bool `json:"wrapped,omitempty"`
}

// ImportResult records a successful ImportKeyMaterial.
type ImportResult struct {
	ImportedAt      time.Time  `json:"importedAt"`
	ExpirationModel string     `json:"expirationModel"`
	ValidTo         *time.Time `json:"validTo,omitempty"`
}

// Verification is what the last stage proved.
type Verification struct {
	KeyState  string     `json:"keyState"`
	ValidTo   *time.Time `json:"validTo,omitempty"`
	RoundTrip string     `json:"roundTrip"`
	AuditID   string     `json:"auditId"`
}

// StateError is the {"Error","Cause"} object Step Functions puts at a
// Catch's ResultPath.
type StateError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

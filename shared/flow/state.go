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
	Import    *ImportResult   `json:"import,omitempty"`
	Verified  *Verification   `json:"verification,omitempty"`
	// Plan is the renewal as a list of imports (see docs/rotation.md): one
	// item for a key with one material in one Region, more for keys with
	// several materials, rotations and multi-Region keys.
	Plan *Plan `json:"plan,omitempty"`
	// Progress is where the execution is in the plan: the item being
	// worked on and the one import token it holds for it.
	Progress *Progress `json:"progress,omitempty"`
	// LastError is where the state machine puts an error it recovered from
	// (ImportTokenExpiring before a fresh fetch).
	LastError *StateError `json:"lastError,omitempty"`
	// Summary is the execution's output (the Renewed state's OutputPath):
	// a fleet run's Map gets it back through .sync:2, where the 256 KiB
	// payload limit applies, so it leaves out the plan's items.
	Summary *Summary `json:"summary,omitempty"`
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

// Request is the validated, normalized execution input. Nothing writes to
// it after ParseRequest: what the product resolves (secret versions, the
// wrapping chosen) is on the Plan.
type Request struct {
	KeyID           string     `json:"keyId"`
	SecretID        string     `json:"secretId"`
	SecretVersionID string     `json:"secretVersionId,omitempty"`
	ValidTo         *time.Time `json:"validTo,omitempty"`
	// Register keeps the key in the registry with the policy's validity
	// and renewal window (Kept).
	Register bool `json:"register"`
	// RegistryVersion, set by a fleet run, is the registry entry's
	// version when the run planned the key: the renewal then writes no
	// policy and never registers the key again (registry.RecordRenewal).
	RegistryVersion *int64 `json:"registryVersion,omitempty"`
	// Rotate imports new key material (NEW_KEY_MATERIAL) and makes it
	// current with RotateKeyOnDemand. The new material is read from the
	// version at NewMaterialStage, or generated (GenerateMaterial) and
	// stored first as a new secret version with that label.
	Rotate bool `json:"rotate,omitempty"`
	// Choices of this execution alone (allowLegacyWrapping, regions).
	Choices
	// Policy as asked, normalized: SecretVersionStage is the staging label
	// read when no version is pinned (the plan holds the version it
	// resolved to); ExpirationModel is always set; WrappingAlgorithm and
	// WrappingKeySpec empty mean the product chooses (Plan.Wrapping is what
	// is used).
	Policy
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
	ParametersValidTo time.Time `json:"parametersValidTo,omitempty"`
	// Fetches counts the GetParametersForImport calls for the item in this
	// execution, this token's included.
	Fetches int  `json:"fetches"`
	Wrapped bool `json:"wrapped,omitempty"`
}

// Progress is where an execution is in its plan. The current import token
// is referenced here only, while its item is worked on; once the item is
// imported, the item keeps which token imported it (PlanItem.TokenID).
type Progress struct {
	// Item is the index of the plan's item being worked on.
	Item int `json:"item"`
	// Pending says Items[Item] exists: the state machine's Choice states
	// loop back to the fetch stage while it is true ($.progress.pending).
	Pending bool `json:"pending"`
	// Token is the current item's token record, with the item's fetch
	// count; nil before the first fetch of the item.
	Token *TokenRef `json:"token,omitempty"`
}

// Wrapping is the algorithm and wrapping key spec every import of the plan
// uses: the request's, or the product's choice for the key spec.
type Wrapping struct {
	Algorithm string `json:"algorithm"`
	KeySpec   string `json:"keySpec"`
	// Defaulted says the product chose both (the request named neither).
	Defaulted bool `json:"defaulted,omitempty"`
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

// Import types, as ImportKeyMaterial names them.
const (
	NewKeyMaterial      = "NEW_KEY_MATERIAL"
	ExistingKeyMaterial = "EXISTING_KEY_MATERIAL"
)

// Plan is the per-key plan of imports, for every key: decided once by
// renewal.Decide from what the fetch stage gathered (DescribeKey of the key
// and its replicas, ListKeyRotations, the material map, the secret versions
// read), then worked through one item at a time (fetch, wrap, import; see
// Progress), followed by RotateKeyOnDemand when Rotate is set. It holds
// references only: ARNs, KeyMaterialIds, secret version ids.
type Plan struct {
	Items []PlanItem `json:"items"`
	// Wrapping is what every GetParametersForImport of the plan asks for.
	Wrapping Wrapping `json:"wrapping"`
	// SecretVersionID is the secret version of the material the key
	// encrypts with once the renewal is done (the new material of a
	// rotation): what the proofs and the import record name.
	SecretVersionID string `json:"secretVersionId,omitempty"`
	// Rotate: RotateKeyOnDemand on the primary after the imports.
	Rotate bool `json:"rotate,omitempty"`
	// Listed: the plan was made from KMS's list of the key's materials
	// (ListKeyRotations); the verify stage checks each one there.
	Listed bool `json:"listed,omitempty"`
	// Resumed: new material imported by an earlier execution (in state
	// PENDING_ROTATION and in the material map) is only rotated to.
	Resumed bool `json:"resumed,omitempty"`
	// NewMaterialID is the KeyMaterialId to rotate to (known after the
	// NEW_KEY_MATERIAL import, or from the earlier execution).
	NewMaterialID string `json:"newMaterialId,omitempty"`
	// NewSecretVersionID is the secret version holding the new material.
	NewSecretVersionID string `json:"newSecretVersionId,omitempty"`
	// Generated: the product generated the new material and stored it as
	// NewSecretVersionID before importing it.
	Generated bool `json:"generated,omitempty"`
	// Rotated is set by the verify stage once the key's current material
	// is NewMaterialID (RotateKeyOnDemand only starts a rotation; KMS
	// completes it in the background).
	Rotated bool `json:"rotated"`
	// RotationStartedAt is when this execution (or, resumed, an earlier
	// one) called RotateKeyOnDemand.
	RotationStartedAt *time.Time `json:"rotationStartedAt,omitempty"`
	// Recheck asks the state machine to wait and run the verify stage
	// again: a rotation still running, or KMS reads not yet showing the
	// imports (eventual consistency). Checks counts the verify passes;
	// Waiting says what was not yet as expected.
	Recheck bool   `json:"recheck"`
	Checks  int    `json:"checks,omitempty"`
	Waiting string `json:"waiting,omitempty"`
	// Targets are the primary and every replica, with what DescribeKey
	// said before the imports.
	Targets []Target `json:"targets"`
}

// PlanItem is one ImportKeyMaterial to do.
type PlanItem struct {
	Region string `json:"region"`
	KeyARN string `json:"keyArn"`
	// Replica: KeyARN is a replica of the primary (s.Key.ARN).
	Replica bool `json:"replica,omitempty"`
	// KeyMaterialID names the material (EXISTING_KEY_MATERIAL); empty for
	// NEW_KEY_MATERIAL on the primary until the import returns it.
	KeyMaterialID   string `json:"keyMaterialId,omitempty"`
	SecretVersionID string `json:"secretVersionId"`
	ImportType      string `json:"importType"`
	// New: this item carries the new material (on the primary: NEW_KEY_
	// MATERIAL; on a replica: the same material as EXISTING_KEY_MATERIAL).
	New bool `json:"new,omitempty"`
	// Filled in by the import stage once imported: the token record that
	// imported it and how many fetches it took.
	TokenID    string     `json:"tokenId,omitempty"`
	Fetches    int        `json:"fetches,omitempty"`
	ImportedAt *time.Time `json:"importedAt,omitempty"`
	ValidTo    *time.Time `json:"validTo,omitempty"`
}

// Target is the primary key or one replica.
type Target struct {
	Region        string     `json:"region"`
	KeyARN        string     `json:"keyArn"`
	Replica       bool       `json:"replica,omitempty"`
	StateBefore   string     `json:"stateBefore"`
	ValidToBefore *time.Time `json:"validToBefore,omitempty"`
	// Skipped: not renewed in this execution (the request's "regions").
	Skipped bool `json:"skipped,omitempty"`
	// After the verify stage.
	StateAfter string     `json:"stateAfter,omitempty"`
	ValidTo    *time.Time `json:"validTo,omitempty"`
}

// Start is the progress of a plan not yet worked on.
func (p *Plan) Start() *Progress {
	return &Progress{Pending: len(p.Items) > 0}
}

// Current is the item being worked on, or nil.
func (s State) Current() *PlanItem {
	if s.Plan == nil || s.Progress == nil || s.Progress.Item < 0 || s.Progress.Item >= len(s.Plan.Items) {
		return nil
	}
	return &s.Plan.Items[s.Progress.Item]
}

// Advance records the current item imported with the progress's token and
// moves to the next item, with no token yet.
func (s *State) Advance() {
	if it, t := s.Current(), s.Progress.Token; it != nil && t != nil {
		it.TokenID, it.Fetches = t.ID, t.Fetches
	}
	s.Progress.Item++
	s.Progress.Token = nil
	s.Progress.Pending = s.Progress.Item < len(s.Plan.Items)
}

// Resolved is the secret version and wrapping the renewal uses: the
// plan's once the fetch stage made it, else what the request asked for.
func (s State) Resolved() (string, Wrapping) {
	if p := s.Plan; p != nil {
		return p.SecretVersionID, p.Wrapping
	}
	if r := s.Request; r != nil {
		return r.SecretVersionID, Wrapping{Algorithm: r.WrappingAlgorithm, KeySpec: r.WrappingKeySpec}
	}
	return "", Wrapping{}
}

// LastToken is the token being worked with, or else the one that imported
// the last item imported; nil when no token was fetched.
func (s State) LastToken() *TokenRef {
	if s.Progress != nil && s.Progress.Token != nil {
		return s.Progress.Token
	}
	if s.Plan == nil {
		return nil
	}
	for i := len(s.Plan.Items) - 1; i >= 0; i-- {
		if it := s.Plan.Items[i]; it.TokenID != "" {
			return &TokenRef{ID: it.TokenID, Fetches: it.Fetches}
		}
	}
	return nil
}

// ShortID is a loggable prefix of a KeyMaterialId (the full id is 64 hex
// digits, which the sanitizer would take for opaque bytes).
func ShortID(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return id
}

// CheckFetched refuses a state that did not come from the fetch stage:
// every later stage works on the plan's current import and its token.
func (s State) CheckFetched() error {
	switch {
	case s.Execution.ID == "":
		return Errorf(InvalidInput, "field \"execution.id\" is empty; the state machine passes $$.Execution.Id")
	case s.Request == nil:
		return Errorf(InvalidInput, "field \"request\" is missing; this stage runs after the fetch stage")
	case s.Key == nil || s.Key.ARN == "":
		return Errorf(InvalidInput, "field \"key.arn\" is missing; this stage runs after the fetch stage")
	case s.Plan == nil:
		return Errorf(InvalidInput, "field \"plan\" is missing; this stage runs after the fetch stage")
	case s.Progress == nil:
		return Errorf(InvalidInput, "field \"progress\" is missing; this stage runs after the fetch stage")
	}
	return nil
}

// CheckToken also needs the current import and its token record.
func (s State) CheckToken() error {
	if err := s.CheckFetched(); err != nil {
		return err
	}
	switch {
	case s.Current() == nil:
		return Errorf(InvalidInput, "field \"progress.item\" is %d, past the plan's %d imports", s.Progress.Item, len(s.Plan.Items))
	case s.Progress.Token == nil || s.Progress.Token.ID == "":
		return Errorf(InvalidInput, "field \"progress.token.id\" is missing; this stage runs after the fetch stage")
	case s.Current().SecretVersionID == "":
		return Errorf(InvalidInput, "field \"plan.items[%d].secretVersionId\" is empty; the fetch stage pins it", s.Progress.Item)
	}
	return nil
}

// HasReplicaItems says whether the plan imports into a replica.
func (p *Plan) HasReplicaItems() bool {
	for _, it := range p.Items {
		if it.Replica {
			return true
		}
	}
	return false
}

// LogFields names the execution and the key in every log line of a stage.
func (s State) LogFields() []any {
	f := []any{"executionId", s.Execution.ID}
	switch {
	case s.Key != nil:
		f = append(f, "keyArn", s.Key.ARN)
	case s.Request != nil:
		f = append(f, "keyId", s.Request.KeyID)
	}
	return f
}

// Summary is what a renewal leaves as the execution's output: bounded in
// size whatever the plan. Its fields have the JSON names State's have,
// except Token (the last import's token, State.LastToken) and Wrapping
// and SecretVersionID (the plan's).
type Summary struct {
	Outcome         string        `json:"outcome"`
	Execution       Execution     `json:"execution"`
	Request         *Request      `json:"request,omitempty"`
	Key             *Key          `json:"key,omitempty"`
	Wrapping        *Wrapping     `json:"wrapping,omitempty"`
	SecretVersionID string        `json:"secretVersionId,omitempty"`
	Token           *TokenRef     `json:"token,omitempty"`
	LastError       *StateError   `json:"lastError,omitempty"`
	Verified        *Verification `json:"verification,omitempty"`
	Imports         int           `json:"imports"`
	Rotated         bool          `json:"rotated"`
	Checks          int           `json:"checks"`
}

// Summarize fills s.Summary once the renewal is verified.
func (s *State) Summarize() {
	sum := &Summary{Outcome: "RENEWED", Execution: s.Execution, Request: s.Request, Key: s.Key, Token: s.LastToken(), LastError: s.LastError, Verified: s.Verified}
	if p := s.Plan; p != nil {
		w := p.Wrapping
		sum.Wrapping, sum.SecretVersionID = &w, p.SecretVersionID
		sum.Imports, sum.Rotated, sum.Checks = len(p.Items), p.Rotated, p.Checks
	}
	s.Summary = sum
}

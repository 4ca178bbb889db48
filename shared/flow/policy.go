package flow

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Policy is how a key is kept and renewed: the one type of the registry
// policy. It is embedded in the execution input (RequestInput), the
// validated request (Request), the registry entry (registry.Entry) and the
// planner's items (planner.Item), so each keeps the JSON field names and
// DynamoDB attribute names it always had. The choices of one execution
// alone (allowLegacyWrapping, regions) are the execution's own fields
// (Choices), not the policy. It is checked in one place:
// Validate (what a request's policy may hold, called by ValidateRequest),
// and Kept and ValidateKept (what the registry keeps).
type Policy struct {
	// SecretVersionStage is the staging label read when no version is
	// pinned.
	SecretVersionStage string `json:"secretVersionStage,omitempty" dynamodbav:"secretVersionStage,omitempty"`
	// Validity: each import lasts ValidFor ("2160h", "90d"), or never
	// expires (ExpirationModel DoesNotExpire, stored as noExpiry).
	ValidFor        string     `json:"validFor,omitempty" dynamodbav:"validFor,omitempty"`
	ExpirationModel Expiration `json:"expirationModel,omitempty" dynamodbav:"noExpiry,omitempty"`
	// RenewBefore is how long before ValidTo the planner renews.
	RenewBefore string `json:"renewBefore,omitempty" dynamodbav:"renewBefore"`
	// Wrapping as asked (empty: the product chooses the best for the key
	// spec).
	WrappingAlgorithm string `json:"wrappingAlgorithm,omitempty" dynamodbav:"wrappingAlgorithm,omitempty"`
	WrappingKeySpec   string `json:"wrappingKeySpec,omitempty" dynamodbav:"wrappingKeySpec,omitempty"`
	// Rotation policy (docs/rotation.md): rotate to new material every
	// RotateEvery, from the version at NewMaterialStage or generated.
	RotateEvery      string `json:"rotateEvery,omitempty" dynamodbav:"rotateEvery,omitempty"`
	NewMaterialStage string `json:"newMaterialStage,omitempty" dynamodbav:"newMaterialStage,omitempty"`
	GenerateMaterial bool   `json:"generateMaterial,omitempty" dynamodbav:"generateMaterial,omitempty"`
}

// Expiration is an expiration model as KMS names it (Expires,
// DoesNotExpire). In JSON it is the model's name; in DynamoDB it is the
// registry's noExpiry attribute, true for DoesNotExpire.
type Expiration string

// MarshalDynamoDBAttributeValue stores the model as noExpiry.
func (x Expiration) MarshalDynamoDBAttributeValue() (types.AttributeValue, error) {
	return &types.AttributeValueMemberBOOL{Value: x == DoesNotExpire}, nil
}

// UnmarshalDynamoDBAttributeValue reads noExpiry.
func (x *Expiration) UnmarshalDynamoDBAttributeValue(av types.AttributeValue) error {
	*x = ""
	if b, ok := av.(*types.AttributeValueMemberBOOL); ok && b.Value {
		*x = DoesNotExpire
	}
	return nil
}

// NoExpiry says whether the policy imports material that never expires.
func (p Policy) NoExpiry() bool { return p.ExpirationModel == DoesNotExpire }

// Validate checks what a request's policy may hold, field by field: the
// wrapping, the staging labels and the rotation interval.
// How fields combine with the rest of the request (validity against now,
// register, rotate) is ValidateRequest's.
func (p Policy) Validate() error {
	if p.WrappingAlgorithm != "" && !contains(algorithms, p.WrappingAlgorithm) {
		return invalid("field \"wrappingAlgorithm\" is %q; allowed: %s", clip(p.WrappingAlgorithm), strings.Join(algorithms[:5], ", "))
	}
	if p.WrappingKeySpec != "" && !contains(specs, p.WrappingKeySpec) {
		return invalid("field \"wrappingKeySpec\" is %q; allowed: RSA_2048, RSA_3072, RSA_4096", clip(p.WrappingKeySpec))
	}
	if p.NewMaterialStage != "" && !stageRe.MatchString(p.NewMaterialStage) {
		return invalid("field \"newMaterialStage\" is %q: a staging label is 1-256 of A-Z a-z 0-9 _.@-", clip(p.NewMaterialStage))
	}
	if p.NewMaterialStage == "AWSCURRENT" || p.NewMaterialStage == "AWSPREVIOUS" {
		return invalid("field \"newMaterialStage\" is %s: that label holds material already in use; put the new material in a version with its own label (for example AWSPENDING)", p.NewMaterialStage)
	}
	if p.RotateEvery != "" {
		d, err := ParseDuration(p.RotateEvery)
		if err != nil || d < MinRotateEvery || d > 10*MaxValidity {
			return invalid("field \"rotateEvery\" is %q: want a duration from %s to %s such as \"90d\" (KMS allows %d on-demand rotations over a key's life; at the shortest interval they last %.1f years)",
				clip(p.RotateEvery), fmtDays(MinRotateEvery), fmtDays(10*MaxValidity), MaxOnDemandRotations, float64(MaxOnDemandRotations)*MinRotateEvery.Hours()/24/365)
		}
	}
	return nil
}

// Kept is the part of p the registry keeps: no validity for material that doesn't
// expire, no new-material source without a rotation policy, and the
// expiration model only when the material doesn't expire.
func (p Policy) Kept() Policy {
	k := p
	if k.NoExpiry() {
		k.ValidFor = ""
	} else {
		k.ExpirationModel = ""
	}
	if k.RotateEvery == "" {
		k.NewMaterialStage, k.GenerateMaterial = "", false
	}
	return k
}

// ValidateKept checks a policy the registry is to keep: a renewal window
// shorter than the validity (or material that doesn't expire).
func (p Policy) ValidateKept() error {
	rb, err := ParseDuration(p.RenewBefore)
	if err != nil || rb <= 0 {
		return invalid("field \"renewBefore\" is %q: want a positive duration such as 336h or 14d", p.RenewBefore)
	}
	if p.NoExpiry() {
		if p.ValidFor != "" {
			return invalid("field \"validFor\" is %q: it conflicts with no expiry", p.ValidFor)
		}
		return nil
	}
	vf, err := ParseDuration(p.ValidFor)
	if err != nil || vf <= 0 || vf > MaxValidity {
		return invalid("field \"validFor\" is %q: want a positive duration of at most 365 days, such as 2160h or 90d", p.ValidFor)
	}
	if rb >= vf {
		return invalid("field \"renewBefore\" is %s: it must be shorter than validFor %s, or every run would renew", p.RenewBefore, p.ValidFor)
	}
	return nil
}

// Kept is the policy r asks the registry to keep the key with, or nil
// when r asks not to be registered: the one conversion from a request to
// a registry entry. A wrapping the request leaves out stays out, so the
// product keeps choosing the best for the key spec.
func (r *Request) Kept() *Policy {
	if !r.Register {
		return nil
	}
	k := r.Policy.Kept()
	return &k
}

// Choices are one execution's own choices, never kept by the registry:
// AllowLegacyWrapping lets this execution wrap with RSAES_PKCS1_V1_5 (KMS
// stopped accepting it for imports on 2023-10-10; kept for KMS in China
// Regions and for tests that show the refusal); Regions limits a
// multi-Region key's renewal to these Regions (the planner sets it to the
// Regions due; default: the primary's and every replica's).
type Choices struct {
	AllowLegacyWrapping bool     `json:"allowLegacyWrapping,omitempty"`
	Regions             []string `json:"regions,omitempty"`
}

// Validate checks each choice.
func (c Choices) Validate() error {
	for _, g := range c.Regions {
		if !regionRe.MatchString(g) {
			return invalid("field \"regions\" has %q: not an AWS Region name such as eu-west-1", clip(g))
		}
	}
	if c.Regions != nil && len(c.Regions) == 0 {
		return invalid("field \"regions\" is empty: omit it to renew every Region of the key")
	}
	return nil
}

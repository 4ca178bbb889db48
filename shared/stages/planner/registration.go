package planner

// What may be registered: register, adopt and the fleet run's discovery
// (discover.go) check a key and its secret with one decision,
// CheckRegistration, over facts gathered first (ReadTags, WithMaterial).
// It lives with the planner because the fleet run is where keys are
// adopted without an operator; the command line calls the same code.

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/renewal"
)

// Deployment is what the deployment allows the functions to use, as a
// registration is checked against it (the template's parameters).
type Deployment struct {
	// TagKey and TagValue: the tag the key must carry (ManagedKeyTagKey,
	// ManagedKeyTagValue); TagKey empty: none required.
	TagKey, TagValue string
	// SecretPrefix: the functions read only secrets named with it
	// (SecretNamePrefix; empty: any).
	SecretPrefix string
}

// RegisterFacts is what is learnt about the key and the secret before a
// registration is decided.
type RegisterFacts struct {
	Key  *types.KeyMetadata
	Tags map[string]string
	// MaterialLen is the length of the material the secret holds, in the
	// form imported for the key spec; MaterialErr says why it holds none
	// usable (flow.SecretNotFound, flow.InvalidSecret). The material itself
	// is never kept.
	MaterialLen int
	MaterialErr error
}

// CheckRegistration decides whether r may be registered for the key and
// secret of f, in deployment d: the key takes imports and is no replica
// (and can rotate, for a rotation policy), carries the managed tag, the
// secret is within the prefix and holds material of the key's shape, and
// the wrapping works for it; the policy is one the registry keeps. Each
// refusal names the field, the value and what is allowed.
func CheckRegistration(r *flow.Request, f RegisterFacts, d Deployment) error {
	if err := r.ValidateKept(); err != nil {
		return err
	}
	if err := kmsaccess.CheckImportable(f.Key); err != nil {
		return err
	}
	// The fetch stage's first check: a replica (renewed with its primary),
	// a rotation policy on a key that can't rotate.
	if err := renewal.Refuse(r, f.Key); err != nil {
		return err
	}
	if d.TagKey != "" {
		v, ok := f.Tags[d.TagKey]
		if !ok || v != d.TagValue {
			return flow.Errorf(flow.InvalidInput, "key %s: tag %q is %s; the deployment uses only keys tagged %s=%s (--managed-tag; ManagedKeyTagKey/ManagedKeyTagValue)",
				*f.Key.Arn, d.TagKey, tagValue(v, ok), d.TagKey, d.TagValue)
		}
	}
	if name := SecretName(r.SecretID); !strings.HasPrefix(name, d.SecretPrefix) {
		return flow.Errorf(flow.InvalidInput, "field \"secretId\" is %q: the deployment reads only secrets named %s... (--secret-prefix; SecretNamePrefix)", name, d.SecretPrefix)
	}
	if f.MaterialErr != nil {
		return f.MaterialErr
	}
	if _, err := renewal.ChooseWrapping(r, f.Key.KeySpec, f.MaterialLen); err != nil {
		return err
	}
	return nil
}

func tagValue(v string, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprintf("%q", v)
}

// SecretName is the name part of a secret ARN (what SecretNamePrefix is
// matched against, with the ARN's random suffix), or the name given.
func SecretName(id string) string {
	if _, name, ok := strings.Cut(id, ":secret:"); ok && strings.HasPrefix(id, "arn:") {
		return name
	}
	return id
}

// TagReader reads a key's tags (*kms.Client; fakes in tests).
type TagReader interface {
	ListResourceTags(context.Context, *kms.ListResourceTagsInput, ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error)
}

// ReadTags reads every page of a key's tags.
func ReadTags(ctx context.Context, k TagReader, arn string) (map[string]string, error) {
	tags := map[string]string{}
	in := &kms.ListResourceTagsInput{KeyId: &arn}
	for {
		out, err := k.ListResourceTags(ctx, in)
		if err != nil {
			return tags, flow.FromAWS(err, flow.Internal, "ListResourceTags %s", arn)
		}
		for _, t := range out.Tags {
			if t.TagKey != nil && t.TagValue != nil {
				tags[*t.TagKey] = *t.TagValue
			}
		}
		if !out.Truncated || out.NextMarker == nil {
			return tags, nil
		}
		in.Marker = out.NextMarker
	}
}

// WithMaterial completes f, whose key and tags are read, with what the
// secret of r holds for the key's spec (register, adopt and the fleet
// run's discovery: one path). The material read is zeroed at once: only
// its length is kept. What the secret holds is a fact; failing to reach
// AWS is an error.
func WithMaterial(ctx context.Context, s keymaterial.SecretReader, r *flow.Request, f RegisterFacts) (RegisterFacts, error) {
	m, _, err := keymaterial.ReadSecret(ctx, s, r.SecretID, r.SecretVersionID, r.SecretVersionStage, f.Key.KeySpec)
	f.MaterialLen, f.MaterialErr = len(m), err
	keymaterial.Zero(m)
	if n := flow.NameOf(err); err != nil && n != flow.SecretNotFound && n != flow.InvalidSecret {
		return f, err
	}
	return f, nil
}

// EntryOf is the registry entry of a key that passed CheckRegistration.
func EntryOf(r *flow.Request, f RegisterFacts) registry.Entry {
	e := registry.Entry{KeyARN: *f.Key.Arn, SecretID: r.SecretID, Policy: *r.Kept()}
	if f.Key.KeyState == types.KeyStateEnabled && f.Key.ValidTo != nil {
		e.CurrentValidTo = f.Key.ValidTo // renewal due from what KMS says today
	}
	return e
}

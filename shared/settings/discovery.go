package settings

import (
	"fmt"
	"os"
	"strings"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// The environment of the fleet run's discovery step (template.yaml sets
// them on the planner from AdoptTag, AdoptSecretTag,
// AdoptSecretNamePattern, ManagedKeyTagKey, ManagedKeyTagValue and
// SecretNamePrefix).
const (
	AdoptTagVar           = "ADOPT_TAG"
	AdoptSecretTagVar     = "ADOPT_SECRET_TAG"
	AdoptSecretPatternVar = "ADOPT_SECRET_NAME_PATTERN"
	ManagedTagKeyVar      = "MANAGED_KEY_TAG_KEY"
	ManagedTagValueVar    = "MANAGED_KEY_TAG_VALUE"
	SecretPrefixVar       = "SECRET_NAME_PREFIX"
	// AdoptWrappingKeySpecVar: the wrapping key spec adopted keys are
	// registered with (not set by template.yaml; empty: the product's
	// default).
	AdoptWrappingKeySpecVar = "ADOPT_WRAPPING_KEY_SPEC"
)

// Discovery is the discovery step's configuration.
type Discovery struct {
	// On: ADOPT_TAG is set; Selector is its KEY=VALUE.
	On       bool
	Selector map[string]string
	// SecretTag and Pattern map a key to its secret; Deployment is what a
	// key and secret must be (the managed tag, the secret prefix).
	SecretTag, Pattern string
	Deployment         planner.Deployment
	// Policy is what every adopted key is registered with beyond the
	// deployment's defaults (ADOPT_WRAPPING_KEY_SPEC).
	Policy flow.Policy
}

// DiscoveryFromEnv reads the discovery step's variables: ADOPT_TAG empty
// or unset turns discovery off (no other variable is then read).
func DiscoveryFromEnv() (Discovery, error) {
	v := strings.TrimSpace(os.Getenv(AdoptTagVar))
	if v == "" {
		return Discovery{}, nil
	}
	sel, err := planner.ParseSelector("environment variable "+AdoptTagVar, v)
	if err != nil {
		return Discovery{}, err
	}
	d := Discovery{On: true, Selector: sel, SecretTag: os.Getenv(AdoptSecretTagVar), Pattern: os.Getenv(AdoptSecretPatternVar)}
	if d.SecretTag == "" {
		d.SecretTag = planner.DefaultSecretTag
	}
	if err := planner.CheckPattern("environment variable "+AdoptSecretPatternVar, d.Pattern); err != nil {
		return d, err
	}
	d.Policy.WrappingKeySpec = os.Getenv(AdoptWrappingKeySpecVar)
	switch d.Policy.WrappingKeySpec {
	case "", "RSA_2048", "RSA_3072", "RSA_4096":
	default:
		return d, fmt.Errorf("environment variable %s is %q; want RSA_2048, RSA_3072, RSA_4096 or empty (the default)", AdoptWrappingKeySpecVar, d.Policy.WrappingKeySpec)
	}
	d.Deployment = planner.Deployment{SecretPrefix: os.Getenv(SecretPrefixVar)}
	if tv := os.Getenv(ManagedTagValueVar); tv != "" {
		d.Deployment.TagKey, d.Deployment.TagValue = os.Getenv(ManagedTagKeyVar), tv
		if d.Deployment.TagKey == "" {
			return d, fmt.Errorf("environment variable %s is %q but %s is empty: want the managed tag's key", ManagedTagValueVar, tv, ManagedTagKeyVar)
		}
	}
	return d, nil
}

package planner

// Adoption (issue 19, "Adopt in bulk"): EXTERNAL keys tagged for it are
// mapped to their secret (SecretFor), checked as register checks a key
// (CheckRegistration) and registered. `kms-reimport adopt` and the fleet
// run's discovery step (discover.go) decide with these pure functions, over
// facts gathered by Discover and WithMaterial.

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// What adoption did with a key (AdoptResult.Result).
const (
	Adopted           = "adopted"
	WouldAdopt        = "would-adopt"
	AlreadyRegistered = "already-registered"
	Skipped           = "skipped"
	Failed            = "error"
	// NeedsSecret: the checks before the secret passed; DecideAdopt wants
	// AdoptFacts.Checked (what the secret holds). Never a final result.
	NeedsSecret = "needs-secret"
)

// DefaultSecretTag is the tag on a key whose value names its secret.
const DefaultSecretTag = "kms-reimport:secret"

// AdoptResult is what adoption did with one key (the lines of adopt's
// report; the fleet run's log and notifications).
type AdoptResult struct {
	KeyARN   string `json:"keyArn"`
	Region   string `json:"region"`
	Alias    string `json:"alias,omitempty"`
	SecretID string `json:"secretId,omitempty"`
	Result   string `json:"result"`
	Reason   string `json:"reason,omitempty"`
}

// Candidate is a discovered EXTERNAL key, with its tags and aliases.
type Candidate struct {
	Key     *types.KeyMetadata
	Tags    map[string]string
	Aliases []string // alias names (alias/...), sorted
	// Tagged: the key carries every tag of the selector (it is to be
	// adopted).
	Tagged bool
	// Unseen: listed, tagged, but DescribeKey does not find it (yet).
	Unseen bool
}

// AdoptRules are what adoption decides with: the secret mapping, the
// policy every adopted key is registered with, what the deployment allows.
type AdoptRules struct {
	// SecretTag: the tag naming a key's secret; Pattern: the naming rule
	// for a key without it ({alias}, {keyId}; "" = none).
	SecretTag, Pattern string
	Policy             flow.Policy
	Options            flow.RequestOptions
	Deployment         Deployment
	DryRun             bool
}

// AdoptFacts are what is known of one candidate when adoption decides.
type AdoptFacts struct {
	Candidate
	// RegisteredSecret: the key is in the registry already, with this
	// secret (Registered).
	Registered       bool
	RegisteredSecret string
	// Checked is the key with what its secret holds (WithMaterial; nil:
	// not read yet); ReadErr: reading the secret failed (not a fact of
	// the secret: AWS could not be reached).
	Checked *RegisterFacts
	ReadErr error
}

// DecideAdopt is the decision for one candidate: already registered (left
// alone), not seen by DescribeKey yet, no secret, a policy or a key the
// registration check refuses (skipped, with the reason), or adopted
// (WouldAdopt in a dry run). Before the secret is read it says NeedsSecret
// when every earlier check passed. The request is what would be
// registered (EntryOf) when the result is Adopted or WouldAdopt.
func DecideAdopt(f AdoptFacts, rules AdoptRules, now time.Time) (AdoptResult, *flow.Request) {
	res := AdoptResult{KeyARN: aws.ToString(f.Key.Arn), Region: registry.RegionOf(aws.ToString(f.Key.Arn)), Alias: strings.Join(f.Aliases, ",")}
	if f.Registered {
		res.SecretID, res.Result, res.Reason = f.RegisteredSecret, AlreadyRegistered, "in the registry: left alone"
		return res, nil
	}
	if f.Unseen {
		res.Result, res.Reason = Skipped, "ListKeys lists the key and DescribeKey does not find it: just created (KMS is eventually consistent) or just deleted; run adopt again"
		return res, nil
	}
	secret, err := SecretFor(f.Candidate, rules.SecretTag, rules.Pattern)
	if err != nil {
		res.Result, res.Reason = Skipped, err.Error()
		return res, nil
	}
	res.SecretID = secret
	r, err := flow.ValidateRequest(flow.RequestInput{KeyID: res.KeyARN, SecretID: secret, Policy: rules.Policy}, now, rules.Options)
	if err != nil {
		res.Result, res.Reason = Skipped, err.Error()
		return res, nil
	}
	switch {
	case f.ReadErr != nil:
		res.Result, res.Reason = Failed, f.ReadErr.Error()
		return res, nil
	case f.Checked == nil:
		res.Result = NeedsSecret
		return res, r
	}
	if err := CheckRegistration(r, *f.Checked, rules.Deployment); err != nil {
		res.Result, res.Reason = Skipped, err.Error()
		return res, nil
	}
	if rules.DryRun {
		res.Result, res.Reason = WouldAdopt, "checks passed; nothing registered (--dry-run)"
		return res, r
	}
	res.Result = Adopted
	return res, r
}

// placeholder is a {name} in a naming rule.
var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// CheckPattern refuses a naming rule that names no key or an unknown
// placeholder; name is how the rule was given (a flag, a variable).
func CheckPattern(name, p string) error {
	if p == "" {
		return nil
	}
	found := placeholder.FindAllString(p, -1)
	if len(found) == 0 {
		return fmt.Errorf("%s is %q: it names one secret for every key; want {alias} or {keyId} in it, such as kms-reimport/{alias}", name, p)
	}
	for _, f := range found {
		if f != "{alias}" && f != "{keyId}" {
			return fmt.Errorf("%s is %q: unknown placeholder %s; allowed: {alias}, {keyId}", name, p, f)
		}
	}
	return nil
}

// SecretFor maps a key to its secret: the value of its tag secretTag;
// else the naming rule pattern, {keyId} its key id and {alias} its alias
// name without "alias/" (a key with several aliases is ambiguous); else
// none. The error says why there is none.
func SecretFor(c Candidate, secretTag, pattern string) (string, error) {
	if v, ok := c.Tags[secretTag]; ok && secretTag != "" {
		if v == "" {
			return "", fmt.Errorf("tag %q is empty: want the secret's name or ARN", secretTag)
		}
		return v, nil
	}
	if pattern == "" {
		return "", fmt.Errorf("no secret: tag %q is missing and no --secret-name-pattern is given", secretTag)
	}
	name := strings.ReplaceAll(pattern, "{keyId}", aws.ToString(c.Key.KeyId))
	if strings.Contains(pattern, "{alias}") {
		switch len(c.Aliases) {
		case 0:
			return "", fmt.Errorf("no secret: tag %q is missing and the key has no alias for {alias} in --secret-name-pattern %q", secretTag, pattern)
		case 1:
			name = strings.ReplaceAll(name, "{alias}", strings.TrimPrefix(c.Aliases[0], "alias/"))
		default:
			return "", fmt.Errorf("no secret: tag %q is missing and {alias} is ambiguous: the key has aliases %s (tag the key with %s=<secret>)", secretTag, strings.Join(c.Aliases, ", "), secretTag)
		}
	}
	return name, nil
}

// HasTags reports whether tags carries every tag of selector.
func HasTags(tags, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ParseSelector reads a tag selector KEY=VALUE (AdoptTag); name is how it
// was given.
func ParseSelector(name, s string) (map[string]string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return nil, fmt.Errorf("%s is %q: want KEY=VALUE, such as kms-reimport:adopt=true", name, s)
	}
	return map[string]string{k: v}, nil
}

// Unmanaged is an EXTERNAL key nobody manages whose material expires
// within the alarm window.
type Unmanaged struct {
	KeyARN   string    `json:"keyArn"`
	Account  string    `json:"account"`
	Region   string    `json:"region"`
	ValidTo  time.Time `json:"validTo"`
	DaysLeft float64   `json:"daysLeft"`
}

// UnmanagedExpiring decides whether candidate c, which is not in the
// registry and was not adopted, is an unmanaged key expiring soon: its
// material (Enabled or Disabled: it has material) expires in fewer than
// alarmDays. A key pending deletion, pending import or whose material
// does not expire is not.
func UnmanagedExpiring(c Candidate, managed bool, now time.Time, alarmDays float64) (Unmanaged, bool) {
	k := c.Key
	if managed || c.Unseen || k == nil || k.ValidTo == nil || k.ExpirationModel == types.ExpirationModelTypeKeyMaterialDoesNotExpire {
		return Unmanaged{}, false
	}
	if k.KeyState != types.KeyStateEnabled && k.KeyState != types.KeyStateDisabled {
		return Unmanaged{}, false
	}
	days := registry.DaysLeft(*k.ValidTo, now)
	if !(days < alarmDays) {
		return Unmanaged{}, false
	}
	arn := aws.ToString(k.Arn)
	return Unmanaged{KeyARN: arn, Account: registry.AccountOf(arn), Region: registry.RegionOf(arn), ValidTo: k.ValidTo.UTC(), DaysLeft: days}, true
}

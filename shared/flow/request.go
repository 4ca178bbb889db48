// ParseRequest validates the execution input of a rotation: the public
// interface documented in the README. Everything is checked here, before
// any call to KMS, Secrets Manager or DynamoDB.

package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxValidity is how far ahead KMS accepts a ValidTo.
const MaxValidity = 365 * 24 * time.Hour

// MinValidity is the shortest validity accepted (validFor, validTo, or the
// deployment's default). ParseRequest runs when an execution starts; the
// ImportKeyMaterial call comes later, after fetching parameters, wrapping,
// retries with backoff and fresh import tokens, within the rotation state
// machine's 25-minute timeout (TimeoutSeconds 1500). A ValidTo that is not
// well past all of that is refused by KMS at import time, or leaves a key
// that expires before anyone could renew it. One hour is more than that
// timeout plus MIN_TOKEN_VALIDITY's default 10m, with margin, and still
// lets short test imports through.
const MinValidity = time.Hour

// MaxOnDemandRotations is KMS's lifetime quota of on-demand rotations per
// key (RotateKeyOnDemand API reference; LimitExceededException past it).
const MaxOnDemandRotations = 25

// MinRotateEvery is the shortest rotation policy accepted: at 90 days, the
// 25 on-demand rotations a key may ever have last more than six years.
const MinRotateEvery = 90 * 24 * time.Hour

func fmtDays(d time.Duration) string { return fmt.Sprintf("%dd", int(d.Hours()/24)) }

// fmtDuration writes whole hours as "1h", anything else as Go does.
func fmtDuration(d time.Duration) string {
	if d > 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return d.String()
}

// RequestInput is the execution input as users write it: the key, the
// secret, one execution's choices and the policy (Policy's fields, inline).
type RequestInput struct {
	KeyID           string `json:"keyId"`
	SecretID        string `json:"secretId"`
	SecretVersionID string `json:"secretVersionId"`
	ValidTo         string `json:"validTo"`
	// Register (default true) keeps the key in the registry so the
	// scheduled planner renews it, with the policy's RenewBefore as its
	// renewal window.
	Register *bool `json:"register"`
	// AllowShortValidity registers a key whose validity is shorter than
	// its renew-before window plus one schedule period (which would
	// otherwise not be registered, or be refused with "register": true).
	AllowShortValidity bool `json:"allowShortValidity"`
	// RegistryVersion is set by the fleet run (the registry entry's
	// version when it planned the key); a manual run leaves it out.
	RegistryVersion *int64 `json:"registryVersion"`
	// Rotate (docs/rotation.md) imports NEW_KEY_MATERIAL and calls
	// RotateKeyOnDemand; the new material is the secret version at
	// newMaterialStage, or generated (generateMaterial).
	Rotate bool `json:"rotate"`
	Choices
	Policy
}

// RequestFields lists the input's fields, for error messages.
const RequestFields = "keyId, secretId, secretVersionId, validTo, register, allowShortValidity, registryVersion, rotate, allowLegacyWrapping, regions, secretVersionStage, validFor, expirationModel, renewBefore, wrappingAlgorithm, wrappingKeySpec, rotateEvery, newMaterialStage, generateMaterial"

// RequestOptions are the deployment's defaults.
type RequestOptions struct {
	// DefaultValidFor applies when the input names neither validFor,
	// validTo nor an expiration model.
	DefaultValidFor time.Duration
	// DefaultRenewBefore is the registry's renewal window when the input
	// names none.
	DefaultRenewBefore time.Duration
	// SchedulePeriod is the interval of the fleet runs (0: not known, no
	// check): a registered key's renewBefore is at least two of them, and
	// its validity at least renewBefore plus one.
	SchedulePeriod time.Duration
	// Accounts are the accounts the deployment serves: its own and its
	// member accounts (MEMBER_ACCOUNTS). A key or secret ARN of another
	// account is InvalidInput. Empty: no check (the own account unknown).
	Accounts []string
	// ServedRegion is the Region whose keys this deployment renews (empty:
	// not checked): a key or alias ARN of another is refused.
	ServedRegion string
}

var (
	keyUUID     = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`
	mrkID       = `mrk-[0-9a-f]{32}`
	keyIDRe     = regexp.MustCompile(`^(` + keyUUID + `|` + mrkID + `)$`)
	keyARNRe    = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/(` + keyUUID + `|` + mrkID + `)$`)
	aliasRe     = regexp.MustCompile(`^alias/[a-zA-Z0-9/_-]{1,250}$`)
	aliasARNRe  = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias/[a-zA-Z0-9/_-]{1,250}$`)
	secretName  = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]{1,512}$`)
	secretARNRe = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$`)
	versionID   = regexp.MustCompile(`^[A-Za-z0-9-]{32,64}$`)
	stageRe     = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,256}$`)
	durationRe  = regexp.MustCompile(`^(\d+)d$`)
)

var algorithms = []string{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSAES_PKCS1_V1_5", "SM2PKE"}
var specs = []string{"RSA_2048", "RSA_3072", "RSA_4096", "SM2"}

func invalid(format string, args ...any) error {
	return Errorf(InvalidInput, format, args...)
}

// ParseRequest decodes and validates raw execution input. now anchors validFor and
// the range checks on validTo.
func ParseRequest(raw []byte, now time.Time, opt RequestOptions) (*Request, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, invalid("execution input is empty; expected a JSON object with keyId and secretId (fields: %s)", RequestFields)
	}
	if err := checkKeys(raw); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var in RequestInput
	if err := dec.Decode(&in); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("execution input has data after the JSON object")
	}
	return ValidateRequest(in, now, opt)
}

// requestFieldNames are the JSON names of RequestInput's fields, the
// embedded Policy's included.
var requestFieldNames = jsonNames(reflect.TypeOf(RequestInput{}))

// jsonNames lists the JSON names of a struct's fields, those of embedded
// structs inline, as encoding/json sees them.
func jsonNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("json") == "" {
			names = append(names, jsonNames(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// checkKeys refuses what encoding/json would silently accept in the top
// object: a key that matches a field only case-insensitively (the decoder
// folds case, "KEYID" sets keyId), an unknown key, and a key given twice (the
// decoder keeps the last value). Keys are compared after JSON unescaping, as
// the decoder does. Anything else malformed (not an object, bad syntax) is
// left to the decoder, which reports it.
func checkKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil
		}
		if !contains(requestFieldNames, key) {
			for _, name := range requestFieldNames {
				if strings.EqualFold(key, name) {
					return invalid("field %+q in execution input is spelled %q: field names are case-sensitive", clip(key), name)
				}
			}
			return invalid("unknown field %+q in execution input; allowed: %s", clip(key), RequestFields)
		}
		if string(bytes.TrimSpace(val)) == "null" {
			return invalid("field %q is null in execution input: give a value or leave the field out", key)
		}
		if first, dup := seen[key]; dup {
			return invalid("field %q is given twice in execution input (%s, then %s): give each field once", key, clip(string(first)), clip(string(val)))
		}
		seen[key] = val
	}
	return nil
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return invalid("field %q must be a JSON %s, got %s", strings.TrimPrefix(te.Field, "Policy."), kindOf(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return invalid("execution input is not valid JSON (offset %d)", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("execution input is not valid JSON (it ends too early)")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return invalid("unknown field %s in execution input; allowed: %s", f, RequestFields)
	}
	return invalid("execution input is not a JSON object: %v", err)
}

func kindOf(k string) string {
	if k == "bool" {
		return "boolean"
	}
	return k
}

// ValidateRequest checks an already decoded input.
func ValidateRequest(in RequestInput, now time.Time, opt RequestOptions) (*Request, error) {
	r := &Request{
		KeyID:           strings.TrimSpace(in.KeyID),
		SecretID:        strings.TrimSpace(in.SecretID),
		SecretVersionID: in.SecretVersionID,
		Rotate:          in.Rotate,
		Choices:         Choices{AllowLegacyWrapping: in.AllowLegacyWrapping},
		Policy: Policy{
			SecretVersionStage: in.SecretVersionStage,
			WrappingAlgorithm:  in.WrappingAlgorithm,
			WrappingKeySpec:    in.WrappingKeySpec,
			GenerateMaterial:   in.GenerateMaterial,
			NewMaterialStage:   in.NewMaterialStage,
		},
	}
	if err := identity(r); err != nil {
		return nil, err
	}
	if err := served(r, opt); err != nil {
		return nil, err
	}
	if err := expiry(r, in, now, opt); err != nil {
		return nil, err
	}
	if err := in.Choices.Validate(); err != nil {
		return nil, err
	}
	if err := in.Policy.Validate(); err != nil {
		return nil, err
	}
	r.Register = in.Register == nil || *in.Register
	if err := renewal(r, in, opt); err != nil {
		return nil, err
	}
	if err := rotation(r, in); err != nil {
		return nil, err
	}
	if err := registryVersion(r, in); err != nil {
		return nil, err
	}
	return r, nil
}

// identity checks the form of the key, the secret and the version read.
func identity(r *Request) error {
	switch {
	case r.KeyID == "":
		return invalid("field \"keyId\" is required: a key ARN, key id or alias (alias/name)")
	case !keyIDRe.MatchString(r.KeyID) && !keyARNRe.MatchString(r.KeyID) && !aliasRe.MatchString(r.KeyID) && !aliasARNRe.MatchString(r.KeyID):
		return invalid("field \"keyId\" is %q: not a key ARN, key id (UUID or mrk-...), alias name (alias/...) or alias ARN", clip(r.KeyID))
	}
	switch {
	case r.SecretID == "":
		return invalid("field \"secretId\" is required: the ARN or name of the secret holding the key material")
	case !secretName.MatchString(r.SecretID) && !secretARNRe.MatchString(r.SecretID):
		return invalid("field \"secretId\" is %q: not a secret ARN or name (1-512 of A-Z a-z 0-9 /_+=.@-)", clip(r.SecretID))
	}
	if r.SecretVersionID != "" && !versionID.MatchString(r.SecretVersionID) {
		return invalid("field \"secretVersionId\" is %q: a version id is 32-64 letters, digits and hyphens", clip(r.SecretVersionID))
	}
	if r.SecretVersionStage != "" {
		if r.SecretVersionID != "" {
			return invalid("fields \"secretVersionId\" and \"secretVersionStage\" exclude each other; give one")
		}
		if !stageRe.MatchString(r.SecretVersionStage) {
			return invalid("field \"secretVersionStage\" is %q: a staging label is 1-256 of A-Z a-z 0-9 _.@-", clip(r.SecretVersionStage))
		}
	}
	if r.SecretVersionID == "" && r.SecretVersionStage == "" {
		r.SecretVersionStage = "AWSCURRENT"
	}
	return nil
}

// served checks that a key ARN (or alias ARN) and a secret ARN name an
// account the deployment serves, and a key ARN its Region (the fetch
// stage reads the key in its own Region; replicas may be elsewhere). A key
// id, an alias name or a secret name is in the deployment's own account.
func served(r *Request, opt RequestOptions) error {
	for _, f := range []struct{ field, v string }{{"keyId", r.KeyID}, {"secretId", r.SecretID}} {
		if !strings.HasPrefix(f.v, "arn:") {
			continue
		}
		parts := strings.SplitN(f.v, ":", 6)
		if a := parts[4]; len(opt.Accounts) > 0 && !contains(opt.Accounts, a) {
			return invalid("field %q is %q: account %s is not served by this deployment; it serves %s (its own account and MemberAccounts)", f.field, clip(f.v), a, strings.Join(opt.Accounts, ", "))
		}
		if g := parts[3]; f.field == "keyId" && opt.ServedRegion != "" && g != opt.ServedRegion {
			return invalid("field \"keyId\" is %q, in Region %s: this deployment serves keys in Region %s (their replicas may be elsewhere)", clip(f.v), g, opt.ServedRegion)
		}
	}
	return nil
}

// registryVersion takes the version a fleet run planned the key at.
func registryVersion(r *Request, in RequestInput) error {
	if v := in.RegistryVersion; v != nil && *v < 0 {
		return invalid("field \"registryVersion\" is %d: the fleet run sets it to a registry entry's version, 0 or more; leave it out in a manual run", *v)
	}
	r.RegistryVersion = in.RegistryVersion
	return nil
}

var regionRe = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$`)

// DefaultGeneratedStage labels a generated material's secret version when
// the input names no newMaterialStage.
const DefaultGeneratedStage = "KMSREIMPORT_NEW"

// rotation checks how the rotation fields combine, then the Regions
// (Policy.Validate checked each field).
func rotation(r *Request, in RequestInput) error {
	if err := newMaterial(in); err != nil {
		return err
	}
	if in.GenerateMaterial && r.NewMaterialStage == "" {
		r.NewMaterialStage = DefaultGeneratedStage
	}
	if err := rotateEvery(r, in); err != nil {
		return err
	}
	return regions(r, in)
}

// newMaterial checks where a rotation's new material comes from.
func newMaterial(in RequestInput) error {
	if in.Rotate && in.NewMaterialStage == "" && !in.GenerateMaterial {
		return invalid("field \"rotate\" is true, so give where the new material comes from: \"newMaterialStage\" (a staging label of a version you put in the secret) or \"generateMaterial\": true")
	}
	if !in.Rotate && in.RotateEvery == "" && (in.NewMaterialStage != "" || in.GenerateMaterial) {
		return invalid("fields \"newMaterialStage\"/\"generateMaterial\" apply to a rotation: add \"rotate\": true or a \"rotateEvery\" policy")
	}
	return nil
}

// rotateEvery checks the registry's rotation policy.
func rotateEvery(r *Request, in RequestInput) error {
	if in.RotateEvery == "" {
		return nil
	}
	if !r.Register {
		return invalid("field \"rotateEvery\" is a registry policy: it needs \"register\" (the default)")
	}
	if in.NewMaterialStage == "" && !in.GenerateMaterial {
		return invalid("field \"rotateEvery\" needs \"newMaterialStage\" or \"generateMaterial\": true, where scheduled rotations get new material")
	}
	r.RotateEvery = in.RotateEvery
	return nil
}

// regions keeps the Regions a multi-Region key's renewal is limited to,
// each once.
func regions(r *Request, in RequestInput) error {
	seen := map[string]bool{}
	for _, g := range in.Regions {
		if !seen[g] {
			seen[g] = true
			r.Regions = append(r.Regions, g)
		}
	}
	if len(r.Regions) > 0 && in.Rotate {
		return invalid("fields \"regions\" and \"rotate\" exclude each other: new material goes to the primary and every replica")
	}
	return nil
}

func expiry(r *Request, in RequestInput, now time.Time, opt RequestOptions) error {
	set := 0
	for _, s := range []string{in.ValidFor, in.ValidTo} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return invalid("fields \"validFor\" and \"validTo\" exclude each other; give one")
	}
	switch in.ExpirationModel {
	case DoesNotExpire:
		if set > 0 {
			return invalid("field \"expirationModel\" is %s, so \"validFor\"/\"validTo\" must not be given", DoesNotExpire)
		}
		r.ExpirationModel = DoesNotExpire
		return nil
	case "", Expires:
		r.ExpirationModel = Expires
	default:
		return invalid("field \"expirationModel\" is %q; allowed: %s, %s", clip(string(in.ExpirationModel)), Expires, DoesNotExpire)
	}
	var validTo time.Time
	switch {
	case in.ValidFor != "":
		d, err := ParseDuration(in.ValidFor)
		if err != nil || d <= 0 {
			return invalid("field \"validFor\" is %q: want a positive duration such as \"720h\" or \"30d\", at most 365 days", clip(in.ValidFor))
		}
		if d > MaxValidity {
			return invalid("field \"validFor\" is %q: more than the 365 days KMS allows", in.ValidFor)
		}
		if d < MinValidity {
			return invalid("field \"validFor\" is %q: shorter than the minimum validity %s (the import happens minutes after the execution starts; allowed: %s to 365 days)", in.ValidFor, fmtDuration(MinValidity), fmtDuration(MinValidity))
		}
		validTo = now.Add(d)
	case in.ValidTo != "":
		t, err := time.Parse(time.RFC3339, in.ValidTo)
		if err != nil {
			return invalid("field \"validTo\" is %q: want an RFC 3339 time such as \"2027-01-31T00:00:00Z\"", clip(in.ValidTo))
		}
		if left := t.Sub(now); left > 0 && left < MinValidity {
			earliest := now.Add(MinValidity)
			if earliest.Truncate(time.Second) != earliest {
				earliest = earliest.Truncate(time.Second).Add(time.Second)
			}
			return invalid("field \"validTo\" is %s: only %s ahead of now (%s), less than the minimum validity %s (allowed: from %s to 365 days ahead)",
				in.ValidTo, left.Truncate(time.Second), now.UTC().Format(time.RFC3339), fmtDuration(MinValidity), earliest.UTC().Format(time.RFC3339))
		}
		validTo = t
	default:
		if opt.DefaultValidFor <= 0 {
			return invalid("none of \"validFor\", \"validTo\" or \"expirationModel\" is given and this deployment has no default validity")
		}
		if opt.DefaultValidFor < MinValidity {
			return invalid("none of \"validFor\", \"validTo\" or \"expirationModel\" is given and this deployment's default validity (DEFAULT_VALID_FOR) is %s, shorter than the minimum validity %s: give \"validFor\" of at least %s", opt.DefaultValidFor, fmtDuration(MinValidity), fmtDuration(MinValidity))
		}
		validTo = now.Add(opt.DefaultValidFor)
	}
	// KMS takes whole seconds (local-kms rejects fractions outright).
	validTo = validTo.UTC().Truncate(time.Second)
	if !validTo.After(now) {
		return invalid("field \"validTo\" is %s: it is not in the future (now %s)", validTo.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if validTo.Sub(now) > MaxValidity {
		return invalid("field \"validTo\" is %s: more than 365 days ahead of now (%s), which KMS refuses", validTo.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	r.ValidTo = &validTo
	return nil
}

// renewal sets the registry policy: validFor and renewBefore.
func renewal(r *Request, in RequestInput, opt RequestOptions) error {
	// validTo names an instant, not a policy: later renewals use the
	// deployment's default validity.
	if in.ValidFor != "" {
		r.ValidFor = in.ValidFor
	} else if r.ExpirationModel == Expires && opt.DefaultValidFor > 0 {
		if r.Register && opt.DefaultValidFor < MinValidity {
			return invalid("field \"validTo\" gives no validity to renew with and this deployment's default validity (DEFAULT_VALID_FOR) is %s, shorter than the minimum validity %s: add \"validFor\" of at least %s, or set \"register\": false", opt.DefaultValidFor, fmtDuration(MinValidity), fmtDuration(MinValidity))
		}
		r.ValidFor = opt.DefaultValidFor.String()
	}
	if in.RenewBefore == "" {
		if opt.DefaultRenewBefore > 0 {
			r.RenewBefore = opt.DefaultRenewBefore.String()
		}
		if !r.Register {
			return nil
		}
	} else {
		d, err := ParseDuration(in.RenewBefore)
		if err != nil || d <= 0 || d > MaxValidity {
			return invalid("field \"renewBefore\" is %q: want a positive duration such as \"336h\" or \"14d\"", clip(in.RenewBefore))
		}
		r.RenewBefore = in.RenewBefore
	}
	if !r.Register || r.ExpirationModel == DoesNotExpire {
		return nil
	}
	if r.ValidFor == "" {
		return invalid("field \"validTo\" gives no validity to renew with and this deployment has no default: add \"validFor\", or set \"register\": false")
	}
	vf, _ := ParseDuration(r.ValidFor)
	rb, _ := ParseDuration(r.RenewBefore)
	if r.RenewBefore == "" {
		return invalid("field \"renewBefore\" is required to register the key (this deployment has no default)")
	}
	if rb >= vf && in.RenewBefore == "" {
		// The deployment's window doesn't fit this short validity: renew
		// when a third of it is left.
		r.RenewBefore = (vf / 3).Truncate(time.Minute).String()
		return schedule(r, in, opt, vf, (vf / 3).Truncate(time.Minute))
	}
	if rb >= vf {
		return invalid("field \"renewBefore\" is %s, not shorter than validFor %s: every scheduled run would renew", r.RenewBefore, r.ValidFor)
	}
	return schedule(r, in, opt, vf, rb)
}

// schedule checks a registered policy against the fleet's schedule: a
// renewBefore of at least two schedule periods (a failed run is retried
// before the material expires) and a validity of at least renewBefore
// plus one period (else the key could expire between two runs). A short
// validity is not registered when "register" was left out (a test
// import: docs/rotation.md), refused with "register": true, and
// registered with "allowShortValidity": true.
func schedule(r *Request, in RequestInput, opt RequestOptions, vf, rb time.Duration) error {
	p := opt.SchedulePeriod
	if p <= 0 || in.AllowShortValidity {
		return nil
	}
	if rb < 2*p {
		if in.RenewBefore != "" {
			return invalid("field \"renewBefore\" is %s: want at least two schedule periods (%s, SCHEDULE_PERIOD %s), so a failed fleet run is retried before the material expires", in.RenewBefore, fmtDuration(2*p), fmtDuration(p))
		}
		rb = 2 * p
		r.RenewBefore = rb.String()
	}
	if vf >= rb+p {
		return nil
	}
	if in.Register == nil {
		r.Register, r.RenewBefore = false, "" // a short test import: done, not kept renewed
		return nil
	}
	return invalid("field \"validFor\" is %s, shorter than renewBefore %s plus one schedule period %s: the key could expire between two fleet runs; give a longer \"validFor\", set \"register\": false, or \"allowShortValidity\": true", r.ValidFor, fmtDuration(rb), fmtDuration(p))
}

// ParseDuration reads Go durations ("720h", "90m") and whole days ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if m := durationRe.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100000 {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// clip bounds user-supplied values quoted back in errors.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

package recordfailure

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// Publisher is the part of SNS this package uses.
type Publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// advice tells the person paged what to do, by error name.
var advice = map[string]string{
	flow.InvalidInput:              "Fix the execution input (or the registry entry) named in the cause and start the rotation again.",
	flow.KeyNotFound:               "The key no longer exists or the alias is wrong. It stays registered and blocked, and every fleet run tries it again: deregister it (kms-reimport deregister) or correct the registry entry.",
	flow.KeyNotEligible:            "The key cannot take an import as it is (the facts say which check failed: disabled, pending deletion, not EXTERNAL, a custom key store, a replica, an unsupported spec). If the registry blocked it, it stays registered and every fleet run tries it again: enable it or cancel its deletion, and the next run renews it. Deregister it (kms-reimport deregister) if it should no longer be renewed.",
	flow.KeyNotReady:               "The key or a replica is in a state KMS leaves by itself (Creating, Updating). Nothing to do unless it persists: the next fleet run tries again.",
	flow.AccessDenied:              "AWS refused a call the rotation makes (the cause names the action and the role). Check the key has the managed-key tag and origin EXTERNAL, the secret is under SecretNamePrefix, and no SCP or key policy denies the role; then start the rotation again.",
	flow.MemberRoleUnavailable:     "The hub could not assume the member role of the key's account (the cause names the account and the role ARN). Deploy infra/member/template.yaml in that account (StackSets) with this hub's account, stack name and ExternalId, and check no SCP denies sts:AssumeRole or the role's KMS calls; only that account's keys are affected.",
	flow.SecretNotFound:            "The secret or its version is missing. Restore it in Secrets Manager: without the same material the key cannot be renewed.",
	flow.InvalidSecret:             "The secret does not hold usable material for this key. Put the original key material back in the secret.",
	flow.UnsupportedWrapping:       "Choose a wrapping algorithm and spec KMS accepts for this key type (see the README).",
	flow.IncorrectKeyMaterial:      "The secret holds different material from the one bound to the key. Restore the original material; retrying will not help.",
	flow.InvalidCiphertext:         "KMS could not unwrap the material. Check the wrapping algorithm; report it if it persists.",
	flow.InvalidImportToken:        "KMS rejected the import token. Start the rotation again.",
	flow.TokenRefreshLimitExceeded: "Import tokens kept expiring before use. Check for a stuck or very slow stage and start the rotation again.",
	flow.VerificationFailed:        "The import finished but the key is not as asked. Inspect the key in KMS now.",
	flow.AWSTransient:              "AWS kept throttling or failing after retries. The next scheduled run retries; start one by hand if expiry is close.",
}

// Advice is what to do about a failure named errName.
func Advice(errName string) string {
	if a, ok := advice[errName]; ok {
		return a
	}
	return "Read the cause and the function logs of this execution; start the rotation again once fixed."
}

// message is the notification's subject and body. It holds identifiers,
// the sanitized cause and the failure's facts only: never material or a
// token.
func message(r records.Import, facts *flow.Facts) (string, string) {
	subject := snsSubject(fmt.Sprintf("kms-reimport: rotation failed (%s) for %s", r.ErrorName, shortKey(r.KeyARN)))
	var b strings.Builder
	fmt.Fprintf(&b, "A rotation of imported key material failed.\n\n")
	fmt.Fprintf(&b, "Key:        %s\n", r.KeyARN)
	fmt.Fprintf(&b, "Account:    %s (Region %s)\n", registry.AccountOf(r.KeyARN), registry.RegionOf(r.KeyARN))
	fmt.Fprintf(&b, "Stage:      %s\n", r.Stage)
	fmt.Fprintf(&b, "Error:      %s\n", r.ErrorName)
	fmt.Fprintf(&b, "Cause:      %s\n", r.Cause)
	if facts != nil {
		if j, err := json.Marshal(facts); err == nil {
			fmt.Fprintf(&b, "Facts:      %s\n", j)
		}
	}
	if r.ValidToBefore != nil {
		fmt.Fprintf(&b, "Current ValidTo: %s (the key stops working then unless renewed)\n", r.ValidToBefore.UTC().Format("2006-01-02T15:04:05Z"))
	}
	fmt.Fprintf(&b, "Secret:     %s %s\n", r.SecretID, r.SecretVersionID)
	fmt.Fprintf(&b, "Execution:  %s\n\n", r.ExecutionID)
	fmt.Fprintf(&b, "What to do: %s\n", Advice(r.ErrorName))
	return subject, b.String()
}

func shortKey(arn string) string {
	if i := strings.LastIndex(arn, "/"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// maxSubjectChars is the longest Subject SNS Publish takes: "Subjects must
// be UTF-8 text with no line breaks or control characters, and less than 100
// characters long" (PublishInput.Subject, aws-sdk-go-v2 service/sns v1.48.0,
// from the SNS API reference). Older versions of the reference asked for
// ASCII; the subjects built here are ASCII unless an error name is not.
const maxSubjectChars = 99

// snsSubject makes s a Subject SNS accepts, whatever the error name or key
// id in it holds: invalid UTF-8 becomes U+FFFD; line breaks, tabs and other
// white space become one space; other control characters (C0, DEL, C1) and
// invisible format characters (Unicode Cf: bidirectional overrides,
// zero-width characters) are dropped; the ends are trimmed; and a longer
// subject is cut on a character boundary to at most maxSubjectChars, "…"
// included. Characters are counted in UTF-16 code units (a character outside
// the Basic Multilingual Plane counts twice), never less than SNS counts.
func snsSubject(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.IsSpace(r) || r == '\u2028' || r == '\u2029':
			space = true
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
		default:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		}
	}
	clean := b.String()
	if clean == "" {
		return "kms-reimport notification"
	}
	if subjectChars(clean) <= maxSubjectChars {
		return clean
	}
	const ellipsis = "…"
	n, cut := 0, 0
	for i, r := range clean {
		if n+utf16.RuneLen(r) > maxSubjectChars-subjectChars(ellipsis) {
			break
		}
		n += utf16.RuneLen(r)
		cut = i + utf8.RuneLen(r)
	}
	return strings.TrimRight(clean[:cut], " ") + ellipsis
}

// subjectChars is the length of s in UTF-16 code units.
func subjectChars(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

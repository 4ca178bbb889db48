package planner

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

const adoptARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// TestDecideAdopt: each way adoption ends for one key, from the facts
// alone: registered already, unseen, no secret, a policy the registry
// can't keep, the secret still to read, a failed read, a refusal of the
// registration check, dry run, adopted.
func TestDecideAdopt(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	key := func() *types.KeyMetadata {
		return &types.KeyMetadata{Arn: aws.String(adoptARN), KeyId: aws.String("1234abcd-12ab-34cd-56ef-1234567890ab"), Origin: types.OriginTypeExternal,
			KeyState: types.KeyStatePendingImport, KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt}
	}
	tags := map[string]string{"kms-reimport:managed": "true", "kms-reimport:secret": "kms-reimport/one"}
	checked := func(n int, err error) *RegisterFacts {
		return &RegisterFacts{Key: key(), Tags: tags, MaterialLen: n, MaterialErr: err}
	}
	rules := AdoptRules{SecretTag: DefaultSecretTag, Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}, Deployment: Deployment{TagKey: "kms-reimport:managed", TagValue: "true", SecretPrefix: "kms-reimport/"}}
	for _, c := range []struct {
		name   string
		f      func(*AdoptFacts)
		rules  func(*AdoptRules)
		result string
		reason string
		req    bool
	}{
		{name: "registered already", f: func(f *AdoptFacts) { f.Registered, f.RegisteredSecret = true, "kms-reimport/x" }, result: AlreadyRegistered, reason: "left alone"},
		{name: "not seen by DescribeKey", f: func(f *AdoptFacts) { f.Unseen = true }, result: Skipped, reason: "eventually consistent"},
		{name: "no secret", f: func(f *AdoptFacts) { f.Tags = map[string]string{"kms-reimport:managed": "true"} }, result: Skipped, reason: "no secret"},
		{name: "policy not kept", rules: func(r *AdoptRules) { r.Policy.ValidFor = "500d" }, result: Skipped, reason: "validFor"},
		{name: "secret to read", result: NeedsSecret, req: true},
		{name: "secret read failed", f: func(f *AdoptFacts) { f.ReadErr = errors.New("connection refused") }, result: Failed, reason: "connection refused"},
		{name: "secret not found", f: func(f *AdoptFacts) { f.Checked = checked(0, flow.Errorf(flow.SecretNotFound, "not found")) }, result: Skipped, reason: "not found"},
		{name: "material of the wrong shape", f: func(f *AdoptFacts) { f.Checked = checked(0, flow.Errorf(flow.InvalidSecret, "holds 16 bytes")) }, result: Skipped, reason: "16 bytes"},
		{name: "managed tag missing", f: func(f *AdoptFacts) {
			f.Checked = checked(32, nil)
			f.Checked.Tags = map[string]string{}
		}, result: Skipped, reason: `tag "kms-reimport:managed" is missing`},
		{name: "secret outside the prefix", rules: func(r *AdoptRules) { r.Deployment.SecretPrefix = "other/" }, f: func(f *AdoptFacts) { f.Checked = checked(32, nil) }, result: Skipped, reason: "SecretNamePrefix"},
		{name: "dry run", rules: func(r *AdoptRules) { r.DryRun = true }, f: func(f *AdoptFacts) { f.Checked = checked(32, nil) }, result: WouldAdopt, reason: "--dry-run", req: true},
		{name: "adopted", f: func(f *AdoptFacts) { f.Checked = checked(32, nil) }, result: Adopted, req: true},
	} {
		f := AdoptFacts{Candidate: Candidate{Key: key(), Tags: tags, Tagged: true}}
		r := rules
		if c.f != nil {
			c.f(&f)
		}
		if c.rules != nil {
			c.rules(&r)
		}
		res, req := DecideAdopt(f, r, now)
		if res.Result != c.result || !strings.Contains(res.Reason, c.reason) || (req != nil) != c.req {
			t.Errorf("%s: %+v, request %v; want %s naming %q, request %v", c.name, res, req != nil, c.result, c.reason, c.req)
		}
		if res.KeyARN != adoptARN || res.Region != "eu-west-2" {
			t.Errorf("%s: result names %s in %s", c.name, res.KeyARN, res.Region)
		}
	}
}

// TestUnmanagedExpiring: an EXTERNAL key with material (Enabled or
// Disabled) expiring within the window is reported unless it is managed;
// no material, no expiry, pending deletion or a later expiry is not.
func TestUnmanagedExpiring(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	in := func(d float64) *time.Time { v := now.Add(time.Duration(d * 24 * float64(time.Hour))); return &v }
	c := func(state types.KeyState, v *time.Time, model types.ExpirationModelType) Candidate {
		return Candidate{Key: &types.KeyMetadata{Arn: aws.String(adoptARN), KeyState: state, ValidTo: v, ExpirationModel: model}}
	}
	expires := types.ExpirationModelTypeKeyMaterialExpires
	for _, x := range []struct {
		name    string
		c       Candidate
		managed bool
		want    bool
	}{
		{"enabled, 3 days", c(types.KeyStateEnabled, in(3), expires), false, true},
		{"disabled, 3 days", c(types.KeyStateDisabled, in(3), expires), false, true},
		{"managed", c(types.KeyStateEnabled, in(3), expires), true, false},
		{"30 days", c(types.KeyStateEnabled, in(30), expires), false, false},
		{"just inside", c(types.KeyStateEnabled, in(6.99), expires), false, true},
		{"exactly the window", c(types.KeyStateEnabled, in(7), expires), false, false},
		{"no material", c(types.KeyStatePendingImport, nil, ""), false, false},
		{"pending deletion", c(types.KeyStatePendingDeletion, in(3), expires), false, false},
		{"does not expire", c(types.KeyStateEnabled, in(3), types.ExpirationModelTypeKeyMaterialDoesNotExpire), false, false},
		{"unseen", Candidate{Key: c(types.KeyStateEnabled, in(3), expires).Key, Unseen: true}, false, false},
	} {
		u, got := UnmanagedExpiring(x.c, x.managed, now, 7)
		if got != x.want {
			t.Errorf("%s: %v; want %v", x.name, got, x.want)
		}
		if got && (u.KeyARN != adoptARN || u.Account != "111122223333" || u.Region != "eu-west-2" || u.DaysLeft <= 0) {
			t.Errorf("%s: %+v", x.name, u)
		}
	}
}

// TestCheckPatternAndSelector: the naming rule and AdoptTag refused with
// the name given, the value and what is allowed.
func TestCheckPatternAndSelector(t *testing.T) {
	for p, want := range map[string]string{"": "", "kms-reimport/{alias}": "", "k/{keyId}-{alias}": "", "k/one": "names one secret for every key", "k/{name}": "unknown placeholder {name}"} {
		err := CheckPattern("ADOPT_SECRET_NAME_PATTERN", p)
		if (want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "ADOPT_SECRET_NAME_PATTERN"))) {
			t.Errorf("%q: %v; want %q", p, err, want)
		}
	}
	if sel, err := ParseSelector("ADOPT_TAG", "team=payments"); err != nil || sel["team"] != "payments" || len(sel) != 1 {
		t.Errorf("team=payments: %v, %v", sel, err)
	}
	for _, bad := range []string{"team", "=x"} {
		if _, err := ParseSelector("ADOPT_TAG", bad); err == nil || !strings.Contains(err.Error(), "want KEY=VALUE") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

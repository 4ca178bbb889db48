package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/kmswait"
)

// adoptReport is the part of `adopt --json` these tests read.
type adoptReport struct {
	Keys []struct {
		KeyARN   string `json:"keyArn"`
		Alias    string `json:"alias"`
		SecretID string `json:"secretId"`
		Result   string `json:"result"`
		Reason   string `json:"reason"`
	} `json:"keys"`
	Counts map[string]int `json:"counts"`
}

// TestAdoptOnLocalStack: on the local stack with the KMS stand-in (tags,
// ListKeys, HMAC and ECC keys), adopt finds the EXTERNAL keys tagged for
// it: those with a good secret (named by a tag on the key, or by the
// naming rule) are registered, a key whose secret is missing or of the
// wrong shape is skipped with its reason, untagged keys are ignored;
// a key DescribeKey does not see yet is skipped and adopted once it does;
// --dry-run writes nothing; a second run leaves the registered keys alone;
// --account of another account (a member) without an ExternalId is refused.
func TestAdoptOnLocalStack(t *testing.T) {
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// A stale-read window long enough for adopt to meet a key just created.
	st, err := stack.Up(ctx, stack.Options{Root: root, Dir: filepath.Join(t.TempDir(), "stack"), KMS: stack.KMSStandIn,
		StandInEnv: []string{"KMS_STANDIN_STALE_READ_WINDOW=4s"}, Log: t.Logf})
	if err != nil {
		t.Fatalf("starting the local stack (make tools first; never skipped): %v", err)
	}
	t.Cleanup(func() { _ = st.Down() })
	// moto answers STS (GetCallerIdentity, in the stack's account) too.
	c := opsCLI{bin: cliBin, env: append(st.ClientEnv(), "AWS_ENDPOINT_URL_STS="+st.Secrets)}
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kc, sm := kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	key := func(spec kmstypes.KeySpec, usage kmstypes.KeyUsageType, alias string, tags ...string) string {
		t.Helper()
		in := &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, KeySpec: spec, KeyUsage: usage}
		for i := 0; i+1 < len(tags); i += 2 {
			in.Tags = append(in.Tags, kmstypes.Tag{TagKey: aws.String(tags[i]), TagValue: aws.String(tags[i+1])})
		}
		k, err := kc.CreateKey(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if alias != "" {
			if _, err := kc.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: k.KeyMetadata.KeyId}); err != nil {
				t.Fatal(err)
			}
		}
		return *k.KeyMetadata.Arn
	}
	secret := func(name string, material []byte) {
		t.Helper()
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretBinary: material}); err != nil {
			t.Fatal(err)
		}
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	random := func(n int) []byte { b := make([]byte, n); rand.Read(b); return b }

	adopt := []string{"kms-reimport:managed", "true", "byok", "adopt"}
	with := func(extra ...string) []string { return append(append([]string{}, adopt...), extra...) }
	symmetric := key(kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "alias/adopt-sym", with("kms-reimport:secret", "kms-reimport/adopt-sym-material")...)
	hmacKey := key(kmstypes.KeySpecHmac256, kmstypes.KeyUsageTypeGenerateVerifyMac, "alias/adopt-hmac", adopt...)
	ecc := key(kmstypes.KeySpecEccNistP256, kmstypes.KeyUsageTypeSignVerify, "", with("kms-reimport:secret", "kms-reimport/adopt-ecc")...)
	missing := key(kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "alias/adopt-missing", adopt...)
	short := key(kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "", with("kms-reimport:secret", "kms-reimport/adopt-short")...)
	untagged := key(kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "alias/adopt-untagged", "kms-reimport:managed", "true", "kms-reimport:secret", "kms-reimport/adopt-sym-material")
	secret("kms-reimport/adopt-sym-material", random(32))
	secret("kms-reimport/adopt-hmac", random(32))
	secret("kms-reimport/adopt-ecc", ecDER)
	secret("kms-reimport/adopt-short", random(16))

	// Every key visible to DescribeKey (KMS is eventually consistent),
	// then one more, tagged with a good secret, that adopt's first run
	// meets before DescribeKey sees it.
	for _, arn := range []string{symmetric, hmacKey, ecc, missing, short, untagged} {
		if err := kmswait.Visible(ctx, kc, arn); err != nil {
			t.Fatal(err)
		}
	}
	fresh := key(kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "", with("kms-reimport:secret", "kms-reimport/adopt-sym-material")...)

	args := []string{"adopt", "--region", st.Region, "--tag", "byok=adopt", "--secret-name-pattern", "kms-reimport/{alias}", "--valid-for", "90d", "--renew-before", "14d", "--json"}
	report := func(out string) map[string][3]string {
		t.Helper()
		var r adoptReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("adopt --json: %v\n%s", err, out)
		}
		m := map[string][3]string{}
		for _, k := range r.Keys {
			m[k.KeyARN] = [3]string{k.Result, k.SecretID, k.Reason}
		}
		return m
	}
	registered := func() []string {
		t.Helper()
		out, _, code := c.run(t, "status", "--json")
		if code != 0 {
			t.Fatalf("status: exit %d", code)
		}
		var s statusReport
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		var arns []string
		for _, k := range s.Keys {
			arns = append(arns, k.KeyARN)
		}
		return arns
	}
	check := func(name string, got map[string][3]string, arn, result, secret, reason string) {
		t.Helper()
		g, ok := got[arn]
		if !ok || g[0] != result || g[1] != secret || !strings.Contains(g[2], reason) {
			t.Errorf("%s: %q; want %s, secret %q, reason naming %q", name, g, result, secret, reason)
		}
	}

	// --dry-run: the same checks, nothing written (exit 1: two keys fail them).
	out, _, code := c.run(t, append(args, "--dry-run")...)
	got := report(out)
	if code != 1 || len(got) != 6 {
		t.Fatalf("adopt --dry-run: exit %d, %d keys; want 1 and the 6 tagged keys", code, len(got))
	}
	check("symmetric (dry run)", got, symmetric, "would-adopt", "kms-reimport/adopt-sym-material", "--dry-run")
	check("a key just created", got, fresh, "skipped", "", "KMS is eventually consistent")
	if n := registered(); len(n) != 0 {
		t.Fatalf("--dry-run registered %v", n)
	}

	// adopt: the good keys registered, the rest skipped with the reason.
	if err := kmswait.Visible(ctx, kc, fresh); err != nil {
		t.Fatal(err)
	}
	out, _, code = c.run(t, args...)
	got = report(out)
	if code != 1 {
		t.Errorf("adopt: exit %d; want 1 (keys skipped)", code)
	}
	check("symmetric, secret by tag", got, symmetric, "adopted", "kms-reimport/adopt-sym-material", "")
	check("HMAC, secret by the naming rule", got, hmacKey, "adopted", "kms-reimport/adopt-hmac", "")
	check("ECC, secret by tag", got, ecc, "adopted", "kms-reimport/adopt-ecc", "")
	check("the key once visible", got, fresh, "adopted", "kms-reimport/adopt-sym-material", "")
	check("secret missing", got, missing, "skipped", "kms-reimport/adopt-missing", "not found")
	check("secret of the wrong shape", got, short, "skipped", "kms-reimport/adopt-short", "does not hold usable material")
	if _, ok := got[untagged]; ok {
		t.Errorf("an untagged key is reported: %v", got[untagged])
	}
	want := map[string]bool{symmetric: true, hmacKey: true, ecc: true, fresh: true}
	reg := registered()
	if len(reg) != len(want) {
		t.Errorf("registered %v; want the 4 adopted keys", reg)
	}
	for _, arn := range reg {
		if !want[arn] {
			t.Errorf("registered %s, which adopt skipped or was not asked for", arn)
		}
	}

	// Again: the adopted keys are left alone; table output.
	out, _, _ = c.run(t, "adopt", "--tag", "byok=adopt", "--secret-name-pattern", "kms-reimport/{alias}", "--valid-for", "90d", "--account", stack.Account)
	for _, w := range []string{"KEY", "ALIAS", "SECRET", "RESULT", "REASON", "alias/adopt-hmac", "4 already-registered, 2 skipped"} {
		if !strings.Contains(out, w) {
			t.Errorf("second adopt: no %q in\n%s", w, out)
		}
	}
	// Another account is a member: without an ExternalId, refused naming
	// the flag (the member role itself: tests/accounts' two-account stack).
	if _, errOut, code := c.run(t, "adopt", "--tag", "byok=adopt", "--valid-for", "90d", "--account", "444455556666"); code != exitUsage || !strings.Contains(errOut, "--external-id") {
		t.Errorf("adopt --account of another account: exit %d", code)
	}
}

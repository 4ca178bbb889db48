package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// TestRegisterPolicyFlags: register sets every field of the registry
// policy, rotation included, and checks them as an execution input is
// checked, before any call to AWS.
func TestRegisterPolicyFlags(t *testing.T) {
	key := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	base := []string{"register", "--table", "t", "--key", key, "--secret", "s", "--valid-for", "90d"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rotateEvery too short", []string{"--rotate-every", "30d", "--generate-material"}, `field "rotateEvery" is "30d"`},
		{"rotateEvery without new material", []string{"--rotate-every", "180d"}, `field "rotateEvery" needs "newMaterialStage" or "generateMaterial"`},
		{"new material without a rotation policy", []string{"--new-material-stage", "AWSPENDING"}, `apply to a rotation`},
		{"new material stage in use", []string{"--rotate-every", "180d", "--new-material-stage", "AWSCURRENT"}, `field "newMaterialStage" is AWSCURRENT`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(append(append([]string{}, base...), c.args...), &o, &e)
			if code != exitUsage || !strings.Contains(e.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, e.String(), exitUsage, c.want)
			}
		})
	}
}

// TestRegisterSetsEveryPolicyField: every field of flow.Policy has a
// register flag, and giving the flag sets the field; a policy field added
// without a flag fails here.
func TestRegisterSetsEveryPolicyField(t *testing.T) {
	typ := reflect.TypeOf(flow.Policy{})
	for i := 0; i < typ.NumField(); i++ {
		field := typ.Field(i)
		t.Run(field.Name, func(t *testing.T) {
			name, ok := policyFlags[field.Name]
			if !ok {
				t.Fatalf("flow.Policy.%s has no register flag: add it to policyFlags and bindPolicy", field.Name)
			}
			fs := flag.NewFlagSet("register", flag.ContinueOnError)
			v := bindPolicy(fs, "336h")
			before := reflect.ValueOf(v.policy()).Field(i).Interface()
			fl := fs.Lookup(name)
			if fl == nil {
				t.Fatalf("flag --%s of flow.Policy.%s is not defined", name, field.Name)
			}
			value := "7d"
			if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				value = "true"
			} else if field.Type.Kind() == reflect.Slice {
				value = "eu-west-1,eu-west-2"
			}
			if err := fs.Parse([]string{"--" + name + "=" + value}); err != nil {
				t.Fatal(err)
			}
			after := reflect.ValueOf(v.policy()).Field(i).Interface()
			if reflect.DeepEqual(before, after) || reflect.ValueOf(after).IsZero() {
				t.Fatalf("--%s=%s leaves flow.Policy.%s at %v", name, value, field.Name, after)
			}
		})
	}
	if len(policyFlags) != typ.NumField() {
		t.Errorf("policyFlags names %d fields; flow.Policy has %d", len(policyFlags), typ.NumField())
	}
}

const (
	testKeyARN = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	testSecret = "kms-reimport/payments"
)

func importable() *types.KeyMetadata {
	return &types.KeyMetadata{Arn: aws.String(testKeyARN), Origin: types.OriginTypeExternal, KeyState: types.KeyStatePendingImport,
		KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt}
}

// TestCheckRegistration: register refuses, before it writes, a key or a
// secret the deployment can't renew, naming the field, the value and what
// is allowed; a refusal of bad input exits 2.
func TestCheckRegistration(t *testing.T) {
	d := deployment{TagKey: "kms-reimport:managed", TagValue: "true", SecretPrefix: "kms-reimport/"}
	good := func() registerFacts {
		return registerFacts{Key: importable(), Tags: map[string]string{"kms-reimport:managed": "true"}, MaterialLen: 32}
	}
	cases := []struct {
		name   string
		policy func(*flow.RequestInput)
		facts  func(*registerFacts)
		dep    func(*deployment)
		want   string // "" = registered
	}{
		{name: "everything in order"},
		{name: "key not EXTERNAL", facts: func(f *registerFacts) { f.Key.Origin = types.OriginTypeAwsKms }, want: "origin AWS_KMS; only keys with origin EXTERNAL"},
		{name: "key pending deletion", facts: func(f *registerFacts) { f.Key.KeyState = types.KeyStatePendingDeletion }, want: "state PendingDeletion"},
		{name: "multi-Region replica", facts: func(f *registerFacts) {
			f.Key.MultiRegion = aws.Bool(true)
			f.Key.MultiRegionConfiguration = &types.MultiRegionConfiguration{MultiRegionKeyType: types.MultiRegionKeyTypeReplica,
				PrimaryKey: &types.MultiRegionKey{Arn: aws.String("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234")}}
		}, want: "is a multi-Region replica: run kms-reimport on its primary key arn:aws:kms:eu-west-1:111122223333:key/mrk-1234"},
		{name: "rotation policy on an HMAC key", policy: func(in *flow.RequestInput) { in.RotateEvery, in.GenerateMaterial = "180d", true }, facts: func(f *registerFacts) {
			f.Key.KeySpec, f.Key.KeyUsage = types.KeySpecHmac256, types.KeyUsageTypeGenerateVerifyMac
		}, want: "cannot rotate to new material"},
		{name: "managed tag missing", facts: func(f *registerFacts) { f.Tags = map[string]string{} }, want: `tag "kms-reimport:managed" is missing; the deployment uses only keys tagged kms-reimport:managed=true`},
		{name: "managed tag with another value", facts: func(f *registerFacts) { f.Tags["kms-reimport:managed"] = "no" }, want: `tag "kms-reimport:managed" is "no"`},
		{name: "no tag required", facts: func(f *registerFacts) { f.Tags = nil }, dep: func(d *deployment) { d.TagKey = "" }},
		{name: "secret outside the prefix", policy: func(in *flow.RequestInput) { in.SecretID = "other/payments" }, want: `field "secretId" is "other/payments": the deployment reads only secrets named kms-reimport/...`},
		{name: "secret ARN outside the prefix", policy: func(in *flow.RequestInput) {
			in.SecretID = "arn:aws:secretsmanager:eu-west-2:111122223333:secret:other/p-AbCdEf"
		}, want: `field "secretId" is "other/p-AbCdEf"`},
		{name: "secret ARN inside the prefix", policy: func(in *flow.RequestInput) {
			in.SecretID = "arn:aws:secretsmanager:eu-west-2:111122223333:secret:kms-reimport/p-AbCdEf"
		}},
		{name: "any secret allowed", policy: func(in *flow.RequestInput) { in.SecretID = "other/payments" }, dep: func(d *deployment) { d.SecretPrefix = "" }},
		{name: "secret of the wrong shape", facts: func(f *registerFacts) {
			f.MaterialLen, f.MaterialErr = 0, flow.Errorf(flow.InvalidSecret, "secret %q version v does not hold usable material for a SYMMETRIC_DEFAULT key: 16 bytes, want 32", testSecret)
		}, want: "does not hold usable material"},
		{name: "secret not found", facts: func(f *registerFacts) {
			f.MaterialLen, f.MaterialErr = 0, flow.Errorf(flow.SecretNotFound, "secret %q (stage AWSCURRENT) not found", testSecret)
		}, want: "not found"},
		{name: "wrapping that doesn't fit the key", policy: func(in *flow.RequestInput) { in.WrappingAlgorithm = "RSAES_OAEP_SHA_1" }, facts: func(f *registerFacts) {
			f.Key.KeySpec, f.MaterialLen = types.KeySpecRsa4096, 2374
		}, want: "wrappingAlgorithm RSAES_OAEP_SHA_1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := flow.RequestInput{KeyID: "alias/payments", SecretID: testSecret, Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}
			if c.policy != nil {
				c.policy(&in)
			}
			r, err := flow.ValidateRequest(in, time.Now(), flow.RequestOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f, dd := good(), d
			if c.facts != nil {
				c.facts(&f)
			}
			if c.dep != nil {
				c.dep(&dd)
			}
			err = checkRegistration(r, f, dd)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v; want one naming %q", err, c.want)
			case c.want != "" && exitFor(err) != exitUsage:
				t.Fatalf("%v exits %d; want %d (bad input)", err, exitFor(err), exitUsage)
			}
		})
	}
}

// oneKeyKMS answers DescribeKey for one key (by ARN or alias) and lists its
// tags; fakeSecrets holds one secret.
type oneKeyKMS struct {
	md   *types.KeyMetadata
	tags []types.Tag
	err  error
}

func (k oneKeyKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	if k.err != nil {
		return nil, k.err
	}
	if *in.KeyId != *k.md.Arn && *in.KeyId != "alias/payments" {
		return nil, &types.NotFoundException{Message: aws.String("not found")}
	}
	return &kms.DescribeKeyOutput{KeyMetadata: k.md}, nil
}

func (k oneKeyKMS) ListResourceTags(context.Context, *kms.ListResourceTagsInput, ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error) {
	return &kms.ListResourceTagsOutput{Tags: k.tags}, nil
}

type fakeSecrets struct {
	binary []byte
	err    error
}

func (s fakeSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	if s.err != nil {
		return nil, s.err
	}
	return &secretsmanager.GetSecretValueOutput{SecretBinary: bytes.Clone(s.binary), VersionId: aws.String("v1"), Name: in.SecretId}, nil
}

// TestGatherFacts: the key, its tags and the shape of the secret's
// material are gathered through the small interfaces (the material's
// length only); a secret that is missing or of the wrong shape is a fact,
// a failure to reach AWS an error that exits 1.
func TestGatherFacts(t *testing.T) {
	ctx := context.Background()
	r := &flow.Request{KeyID: "alias/payments", SecretID: testSecret, Policy: flow.Policy{SecretVersionStage: "AWSCURRENT"}}
	k := oneKeyKMS{md: importable(), tags: []types.Tag{{TagKey: aws.String("kms-reimport:managed"), TagValue: aws.String("true")}}}
	f, err := gatherFacts(ctx, k, fakeSecrets{binary: bytes.Repeat([]byte{7}, 32)}, r)
	if err != nil || f.MaterialLen != 32 || f.MaterialErr != nil || f.Tags["kms-reimport:managed"] != "true" || *f.Key.Arn != testKeyARN {
		t.Fatalf("facts %+v, %v", f, err)
	}
	f, err = gatherFacts(ctx, k, fakeSecrets{binary: bytes.Repeat([]byte{7}, 16)}, r)
	if err != nil || flow.NameOf(f.MaterialErr) != flow.InvalidSecret || strings.Contains(f.MaterialErr.Error(), "\x07") {
		t.Fatalf("16 bytes for a symmetric key: facts %+v, %v; want InvalidSecret as a fact", f, err)
	}
	f, err = gatherFacts(ctx, k, fakeSecrets{err: &smtypes.ResourceNotFoundException{Message: aws.String("no")}}, r)
	if err != nil || flow.NameOf(f.MaterialErr) != flow.SecretNotFound {
		t.Fatalf("missing secret: facts %+v, %v; want SecretNotFound as a fact", f, err)
	}
	_, err = gatherFacts(ctx, k, fakeSecrets{err: errors.New("dial tcp: connection refused")}, r)
	if err == nil || exitFor(err) != exitFailure {
		t.Fatalf("Secrets Manager unreachable: %v (exit %d); want an error exiting %d", err, exitFor(err), exitFailure)
	}
	r.KeyID = "alias/other"
	_, err = gatherFacts(ctx, k, fakeSecrets{}, r)
	if flow.NameOf(err) != flow.KeyNotFound || exitFor(err) != exitUsage {
		t.Fatalf("missing key: %v; want KeyNotFound exiting %d", err, exitUsage)
	}
}

// TestKeyARN: deregister resolves an alias or key id to the key ARN the
// registry is keyed on, and takes a key ARN as given.
func TestKeyARN(t *testing.T) {
	ctx := context.Background()
	k := oneKeyKMS{md: importable()}
	for _, id := range []string{"alias/payments", testKeyARN} {
		if got, err := keyARN(ctx, k, id); err != nil || got != testKeyARN {
			t.Errorf("keyARN(%s) = %q, %v; want %s", id, got, err, testKeyARN)
		}
	}
	if _, err := keyARN(ctx, k, "alias/other"); flow.NameOf(err) != flow.KeyNotFound {
		t.Errorf("unknown alias: %v; want KeyNotFound", err)
	}
	gone := "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"
	if got, err := keyARN(ctx, oneKeyKMS{err: errors.New("must not be called")}, gone); err != nil || got != gone {
		t.Errorf("a key ARN is resolved through KMS: %q, %v", got, err)
	}
}

// TestRegisterUsage: bad flags, and policy fields the registry can't
// keep, exit 2 before any call to AWS (--table names no real table; no
// endpoint is reachable).
func TestRegisterUsage(t *testing.T) {
	base := []string{"register", "--table", "t", "--key", testKeyARN, "--secret", testSecret, "--valid-for", "90d"}
	for args, want := range map[string]string{
		"--managed-tag=nokey": `flag --managed-tag is "nokey": want KEY=VALUE`,
		// One execution's choices are rotate's flags, not the policy's.
		"--regions=eu-west-1":     "flag provided but not defined: -regions",
		"--allow-legacy-wrapping": "flag provided but not defined: -allow-legacy-wrapping",
		"--renew-before=90d":      `field "renewBefore" is 90d, not shorter than validFor 90d`,
	} {
		var o, e bytes.Buffer
		if code := run(append(append([]string{}, base...), args), &o, &e); code != exitUsage || !strings.Contains(e.String(), want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d naming %q", args, code, e.String(), exitUsage, want)
		}
	}
}

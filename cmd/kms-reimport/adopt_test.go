package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// fakeRegion is one account's KMS in one Region: keys in creation order,
// their tags and aliases, listed in pages of pageSize; calls counts every
// request.
type fakeRegion struct {
	keys     []*types.KeyMetadata
	tags     map[string][]types.Tag
	aliases  []types.AliasListEntry
	pageSize int
	calls    map[string]int
	gone     map[string]bool // listed, then deleted before DescribeKey
	unseen   map[string]bool // listed, tagged, not yet seen by DescribeKey (just created)
	listErr  error           // ListKeys fails with it
}

func newFakeRegion() *fakeRegion {
	return &fakeRegion{tags: map[string][]types.Tag{}, calls: map[string]int{}, gone: map[string]bool{}, unseen: map[string]bool{}, pageSize: 2}
}

const adoptAccount = "111122223333"

// add makes a key: origin EXTERNAL unless origin is given, PendingImport,
// symmetric; tags as k, v pairs.
func (f *fakeRegion) add(n int, origin types.OriginType, spec types.KeySpec, alias string, tags ...string) string {
	id := fmt.Sprintf("%08d-0000-0000-0000-000000000000", n)
	arn := "arn:aws:kms:eu-west-2:" + adoptAccount + ":key/" + id
	f.keys = append(f.keys, &types.KeyMetadata{Arn: aws.String(arn), KeyId: aws.String(id), Origin: origin,
		KeyState: types.KeyStatePendingImport, KeySpec: spec, KeyUsage: types.KeyUsageTypeEncryptDecrypt})
	for i := 0; i+1 < len(tags); i += 2 {
		f.tags[arn] = append(f.tags[arn], types.Tag{TagKey: aws.String(tags[i]), TagValue: aws.String(tags[i+1])})
	}
	if alias != "" {
		f.aliases = append(f.aliases, types.AliasListEntry{AliasName: aws.String(alias), TargetKeyId: aws.String(id)})
	}
	return arn
}

func pageOf(n, size int, marker *string) (start, end int, next *string) {
	fmt.Sscan(aws.ToString(marker), &start)
	end = min(start+size, n)
	if end < n {
		next = aws.String(fmt.Sprint(end))
	}
	return start, end, next
}

func (f *fakeRegion) ListKeys(_ context.Context, in *kms.ListKeysInput, _ ...func(*kms.Options)) (*kms.ListKeysOutput, error) {
	f.calls["ListKeys"]++
	if f.listErr != nil {
		return nil, f.listErr
	}
	start, end, next := pageOf(len(f.keys), f.pageSize, in.Marker)
	out := &kms.ListKeysOutput{Truncated: next != nil, NextMarker: next}
	for _, k := range f.keys[start:end] {
		out.Keys = append(out.Keys, types.KeyListEntry{KeyArn: k.Arn, KeyId: k.KeyId})
	}
	return out, nil
}

func (f *fakeRegion) ListAliases(_ context.Context, in *kms.ListAliasesInput, _ ...func(*kms.Options)) (*kms.ListAliasesOutput, error) {
	f.calls["ListAliases"]++
	start, end, next := pageOf(len(f.aliases), f.pageSize, in.Marker)
	return &kms.ListAliasesOutput{Aliases: f.aliases[start:end], Truncated: next != nil, NextMarker: next}, nil
}

func (f *fakeRegion) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	f.calls["DescribeKey"]++
	for _, k := range f.keys {
		if *k.Arn == *in.KeyId && !f.gone[*k.Arn] && !f.unseen[*k.Arn] {
			return &kms.DescribeKeyOutput{KeyMetadata: k}, nil
		}
	}
	return nil, &types.NotFoundException{Message: aws.String("not found")}
}

func (f *fakeRegion) ListResourceTags(_ context.Context, in *kms.ListResourceTagsInput, _ ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error) {
	f.calls["ListResourceTags"]++
	if f.gone[*in.KeyId] {
		return nil, &types.NotFoundException{Message: aws.String("not found")}
	}
	tags := f.tags[*in.KeyId]
	start, end, next := pageOf(len(tags), 1, in.Marker) // one tag a page: every page must be read
	return &kms.ListResourceTagsOutput{Tags: tags[start:end], Truncated: next != nil, NextMarker: next}, nil
}

// namedSecrets holds secrets by name; err, when set, answers every read.
type namedSecrets struct {
	binary map[string][]byte
	err    error
}

func (s namedSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.binary[*in.SecretId]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
	}
	return &secretsmanager.GetSecretValueOutput{SecretBinary: bytes.Clone(b), VersionId: aws.String("v1"), Name: in.SecretId}, nil
}

// memRegistry is the registry in memory.
type memRegistry struct {
	entries map[string]registry.Entry
	puts    []string
	// racing are registered by someone else after All was read: Create
	// finds them, All does not list them.
	racing map[string]registry.Entry
}

func (m *memRegistry) All(context.Context) ([]registry.Entry, error) {
	var all []registry.Entry
	for _, e := range m.entries {
		all = append(all, e)
	}
	return all, nil
}

func (m *memRegistry) Create(_ context.Context, e registry.Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if _, ok := m.entries[e.KeyARN]; ok {
		return registry.ErrRegistered
	}
	if _, ok := m.racing[e.KeyARN]; ok {
		return registry.ErrRegistered
	}
	m.entries[e.KeyARN] = e
	m.puts = append(m.puts, e.KeyARN)
	return nil
}

type fakeCaller struct{ account string }

func (c fakeCaller) GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error) {
	return &sts.GetCallerIdentityOutput{Account: aws.String(c.account)}, nil
}

// adoptWorld is one account with one Region, its secrets and registry.
type adoptWorld struct {
	kms      *fakeRegion
	secrets  namedSecrets
	reg      *memRegistry
	accounts []string // the account each KMS client was built for
	regions  []string // the Region of each KMS client, then "secrets:" and the Secrets Manager client's
}

func withAdoptFakes(t *testing.T) *adoptWorld {
	t.Helper()
	w := &adoptWorld{kms: newFakeRegion(), secrets: namedSecrets{binary: map[string][]byte{}}, reg: &memRegistry{entries: map[string]registry.Entry{}}}
	saved := adoptClients
	adoptClients.kms = func(_ aws.Config, account, region string) discoveryAPI {
		w.accounts, w.regions = append(w.accounts, account), append(w.regions, region)
		return w.kms
	}
	adoptClients.secrets = func(_ aws.Config, _, region string) secretReader {
		w.regions = append(w.regions, "secrets:"+region)
		return w.secrets
	}
	adoptClients.caller = func(aws.Config) callerAPI { return fakeCaller{account: adoptAccount} }
	adoptClients.registry = func(aws.Config, string) adoptRegistry { return w.reg }
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Cleanup(func() { adoptClients = saved })
	return w
}

// fleetToAdopt is a Region of every kind of key adopt meets; it returns
// the ARNs by name.
func fleetToAdopt(w *adoptWorld) map[string]string {
	managed, adopt := []string{"kms-reimport:managed", "true", "team", "payments"}, func(extra ...string) []string {
		return append([]string{"kms-reimport:managed", "true", "team", "payments"}, extra...)
	}
	k := map[string]string{}
	k["byTag"] = w.kms.add(1, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/one", adopt("kms-reimport:secret", "kms-reimport/one-material")...)
	k["byPattern"] = w.kms.add(2, types.OriginTypeExternal, types.KeySpecHmac256, "alias/two", adopt()...)
	k["missingSecret"] = w.kms.add(3, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/three", adopt()...)
	k["wrongShape"] = w.kms.add(4, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "", adopt("kms-reimport:secret", "kms-reimport/short")...)
	k["notManaged"] = w.kms.add(5, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/five", "team", "payments", "kms-reimport:secret", "kms-reimport/one-material")
	k["untagged"] = w.kms.add(6, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/six", managed[:2]...)
	k["awsKMS"] = w.kms.add(7, types.OriginTypeAwsKms, types.KeySpecSymmetricDefault, "alias/seven", adopt()...)
	k["registered"] = w.kms.add(8, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/eight", adopt("kms-reimport:secret", "kms-reimport/one-material")...)
	k["gone"] = w.kms.add(9, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "", adopt()...)
	w.kms.gone[k["gone"]] = true
	k["unseen"] = w.kms.add(10, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "", adopt()...)
	w.kms.unseen[k["unseen"]] = true
	w.secrets.binary["kms-reimport/one-material"] = bytes.Repeat([]byte{7}, 32)
	w.secrets.binary["kms-reimport/two"] = bytes.Repeat([]byte{9}, 32)
	w.secrets.binary["kms-reimport/short"] = bytes.Repeat([]byte{7}, 16)
	w.reg.entries[k["registered"]] = registry.Entry{KeyARN: k["registered"], SecretID: "kms-reimport/elsewhere"}
	return k
}

func adoptJSON(t *testing.T, out string) adoptReport {
	t.Helper()
	var r adoptReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("adopt --json: %v\n%s", err, out)
	}
	return r
}

func resultsByKey(r adoptReport) map[string]adoptResult {
	m := map[string]adoptResult{}
	for _, k := range r.Keys {
		m[k.KeyARN] = k
	}
	return m
}

// TestAdopt: the keys tagged for adoption with a good secret (by the
// secret tag or by the naming rule) are registered with the policy; a key
// whose secret is missing, of the wrong shape, or without the managed tag
// is skipped with register's reason (exit 1); a key already registered is
// left alone; a tagged key DescribeKey does not see yet is skipped;
// untagged, non-EXTERNAL and vanished keys are not reported.
func TestAdopt(t *testing.T) {
	w := withAdoptFakes(t)
	k := fleetToAdopt(w)
	var o, e bytes.Buffer
	code := run([]string{"adopt", "--table", "t", "--region", "eu-west-2", "--tag", "team=payments", "--secret-name-pattern", "kms-reimport/{alias}",
		"--valid-for", "90d", "--renew-before", "14d", "--json"}, &o, &e)
	if code != exitFailure {
		t.Fatalf("exit %d (stderr %s); want %d: keys were skipped", code, e.String(), exitFailure)
	}
	rep := adoptJSON(t, o.String())
	got := resultsByKey(rep)
	want := map[string]struct{ result, secret, reason string }{
		"byTag":         {adopted, "kms-reimport/one-material", ""},
		"byPattern":     {adopted, "kms-reimport/two", ""},
		"missingSecret": {skipped, "kms-reimport/three", "not found"},
		"wrongShape":    {skipped, "kms-reimport/short", "does not hold usable material"},
		"notManaged":    {skipped, "kms-reimport/one-material", `tag "kms-reimport:managed" is missing`},
		"registered":    {alreadyRegistered, "kms-reimport/elsewhere", "left alone"},
		"unseen":        {skipped, "", "KMS is eventually consistent"},
	}
	if len(got) != len(want) {
		t.Errorf("reported %d keys, want %d: %+v", len(got), len(want), rep.Keys)
	}
	for name, w := range want {
		r, ok := got[k[name]]
		if !ok || r.Result != w.result || r.SecretID != w.secret || !strings.Contains(r.Reason, w.reason) {
			t.Errorf("%s: %+v; want %s, secret %q, reason naming %q", name, r, w.result, w.secret, w.reason)
		}
	}
	if got[k["byTag"]].Alias != "alias/one" {
		t.Errorf("alias of byTag: %q", got[k["byTag"]].Alias)
	}
	slices.Sort(w.reg.puts)
	if wantPuts := []string{k["byTag"], k["byPattern"]}; !slices.Equal(w.reg.puts, wantPuts) {
		t.Fatalf("registered %v; want %v", w.reg.puts, wantPuts)
	}
	if e := w.reg.entries[k["byPattern"]]; e.SecretID != "kms-reimport/two" || e.ValidFor != "90d" || e.RenewBefore != "14d" {
		t.Errorf("entry %+v; want the secret of the naming rule and the policy flags", e)
	}
	if e := w.reg.entries[k["registered"]]; e.SecretID != "kms-reimport/elsewhere" {
		t.Errorf("a registered key was rewritten: %+v", e)
	}
	if rep.Counts[adopted] != 2 || rep.Counts[skipped] != 4 || rep.Counts[alreadyRegistered] != 1 {
		t.Errorf("counts %v", rep.Counts)
	}
	// Every page read: keys (2 a page), aliases, each key's tags (1 a page).
	if w.kms.calls["ListKeys"] != 5 || w.kms.calls["ListAliases"] != 4 {
		t.Errorf("calls %v; want every page of ListKeys (5) and ListAliases (4)", w.kms.calls)
	}
	if w.kms.calls["DescribeKey"] != 10 {
		t.Errorf("DescribeKey %d times; want once per listed key (10)", w.kms.calls["DescribeKey"])
	}
}

// TestAdoptDryRunWritesNothing: --dry-run reports what it would adopt and
// registers nothing; a run with only good keys exits 0, and a second run
// reports them as already registered.
// TestAdoptLeavesARaceToTheOperator: a key registered by someone else
// between adopt's read of the registry and its write is reported as
// already registered and not written over.
func TestAdoptLeavesARaceToTheOperator(t *testing.T) {
	w := withAdoptFakes(t)
	k := fleetToAdopt(w)
	w.reg.racing = map[string]registry.Entry{k["byTag"]: {KeyARN: k["byTag"], SecretID: "kms-reimport/operators"}}
	var o, e bytes.Buffer
	run([]string{"adopt", "--table", "t", "--region", "eu-west-2", "--tag", "team=payments", "--secret-name-pattern", "kms-reimport/{alias}",
		"--valid-for", "90d", "--json"}, &o, &e)
	r := resultsByKey(adoptJSON(t, o.String()))[k["byTag"]]
	if r.Result != alreadyRegistered || !strings.Contains(r.Reason, "registered meanwhile") {
		t.Fatalf("raced key: %+v; want already-registered, registered meanwhile", r)
	}
	if slices.Contains(w.reg.puts, k["byTag"]) {
		t.Fatal("the raced key was written")
	}
}

func TestAdoptDryRunWritesNothing(t *testing.T) {
	w := withAdoptFakes(t)
	one := w.kms.add(1, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/one", "kms-reimport:managed", "true", "adopt", "yes", "kms-reimport:secret", "kms-reimport/one")
	w.kms.add(2, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/two", "kms-reimport:managed", "true")
	w.secrets.binary["kms-reimport/one"] = bytes.Repeat([]byte{1}, 32)
	args := []string{"adopt", "--table", "t", "--tag", "adopt=yes", "--valid-for", "90d"}
	var o, e bytes.Buffer
	if code := run(append(args, "--dry-run"), &o, &e); code != exitOK || len(w.reg.puts) != 0 {
		t.Fatalf("--dry-run: exit %d, registered %v\n%s%s", code, w.reg.puts, o.String(), e.String())
	}
	for _, want := range []string{"KEY", "ALIAS", "SECRET", "RESULT", "REASON", one, "alias/one", "kms-reimport/one", wouldAdopt, "1 would-adopt (EXTERNAL keys tagged adopt=yes in eu-west-2)"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("--dry-run table has no %q:\n%s", want, o.String())
		}
	}
	o.Reset()
	if code := run(args, &o, &e); code != exitOK || !slices.Equal(w.reg.puts, []string{one}) || !strings.Contains(o.String(), "1 adopted") {
		t.Fatalf("adopt: exit %d, registered %v\n%s", code, w.reg.puts, o.String())
	}
	o.Reset()
	if code := run(args, &o, &e); code != exitOK || len(w.reg.puts) != 1 || !strings.Contains(o.String(), "1 already-registered") {
		t.Fatalf("adopt again: exit %d, registered %v\n%s", code, w.reg.puts, o.String())
	}
}

// TestAdoptAccount: another account than the caller's is a member, which
// without an ExternalId is refused before any key is read, naming both
// accounts and the flag (TestAdoptMemberAccount: with one); the clients
// are built for the account given.
func TestAdoptAccount(t *testing.T) {
	w := withAdoptFakes(t)
	t.Setenv("MEMBER_EXTERNAL_ID", "")
	var o, e bytes.Buffer
	code := run([]string{"adopt", "--table", "t", "--tag", "a=b", "--valid-for", "90d", "--account", "444455556666"}, &o, &e)
	for _, want := range []string{"--account is 444455556666", "of 111122223333", "--external-id"} {
		if !strings.Contains(e.String(), want) {
			t.Errorf("stderr %q does not name %q", e.String(), want)
		}
	}
	if code != exitUsage || len(w.kms.calls) != 0 {
		t.Fatalf("another account: exit %d, KMS calls %v; want %d and none", code, w.kms.calls, exitUsage)
	}
	e.Reset()
	if code := run([]string{"adopt", "--table", "t", "--tag", "a=b", "--valid-for", "90d", "--account", adoptAccount}, &o, &e); code != exitOK || !slices.Equal(w.accounts, []string{adoptAccount}) {
		t.Fatalf("own account: exit %d, clients for %v\n%s", code, w.accounts, e.String())
	}
}

// TestAdoptRegions: KMS is read in each --region; the secrets in the
// deployment's Region (the SDK's), where the stages read them.
func TestAdoptRegions(t *testing.T) {
	w := withAdoptFakes(t)
	var o, e bytes.Buffer
	if code := run([]string{"adopt", "--table", "t", "--tag", "a=b", "--valid-for", "90d", "--region", "eu-west-1,us-east-1"}, &o, &e); code != exitOK {
		t.Fatalf("exit %d: %s", code, e.String())
	}
	if want := []string{"eu-west-1", "secrets:eu-west-2", "us-east-1", "secrets:eu-west-2"}; !slices.Equal(w.regions, want) {
		t.Fatalf("clients for %v; want %v", w.regions, want)
	}
	if !strings.Contains(o.String(), "no key (EXTERNAL keys tagged a=b in eu-west-1, us-east-1)") {
		t.Errorf("summary: %s", o.String())
	}
}

// TestAdoptAWSError: a secret that can't be read for another reason than
// its absence is an error for that key (exit 1), not a skip.
func TestAdoptAWSError(t *testing.T) {
	w := withAdoptFakes(t)
	arn := w.kms.add(1, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "", "kms-reimport:managed", "true", "kms-reimport:secret", "kms-reimport/one")
	w.secrets.err = errors.New("dial tcp: connection refused")
	var o, e bytes.Buffer
	code := run([]string{"adopt", "--table", "t", "--tag", "kms-reimport:managed=true", "--valid-for", "90d", "--json"}, &o, &e)
	r := resultsByKey(adoptJSON(t, o.String()))[arn]
	if code != exitFailure || r.Result != failed || len(w.reg.puts) != 0 {
		t.Fatalf("exit %d, %+v; want %d and result %s", code, r, exitFailure, failed)
	}
	// Discovery itself failing: exit 1 naming the Region, nothing written.
	w.kms.listErr = &types.KMSInternalException{Message: aws.String("internal")}
	o.Reset()
	e.Reset()
	code = run([]string{"adopt", "--table", "t", "--tag", "kms-reimport:managed=true", "--valid-for", "90d"}, &o, &e)
	if code != exitFailure || !strings.Contains(e.String(), "discovering the keys of eu-west-2") || len(w.reg.puts) != 0 {
		t.Fatalf("ListKeys failing: exit %d, stderr %q", code, e.String())
	}
}

// TestAdoptUsage: bad flags exit 2 before any call to AWS.
func TestAdoptUsage(t *testing.T) {
	base := []string{"adopt", "--table", "t", "--valid-for", "90d"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--tag KEY=VALUE is required"},
		{[]string{"--tag", "novalue"}, "want KEY=VALUE"},
		{[]string{"--tag", "a=b", "--tag", "a=c"}, `tag "a" given twice`},
		{[]string{"--tag", "a=b", "--secret-name-pattern", "kms-reimport/one"}, "it names one secret for every key"},
		{[]string{"--tag", "a=b", "--secret-name-pattern", "kms-reimport/{name}"}, "unknown placeholder {name}"},
		{[]string{"--tag", "a=b", "--region", "moon-1"}, `flag --region has "moon-1"`},
		{[]string{"--tag", "a=b", "--regions", "eu-west-1"}, "flag provided but not defined: -regions"},
		{[]string{"--tag", "a=b", "--managed-tag", "x"}, "flag --managed-tag"},
		{[]string{"--tag", "a=b", "--kms-read-rate", "0"}, "flag --kms-read-rate is 0"},
	} {
		w := withAdoptFakes(t)
		var o, e bytes.Buffer
		if code := run(append(append([]string{}, base...), c.args...), &o, &e); code != exitUsage || !strings.Contains(e.String(), c.want) || len(w.kms.calls) != 0 {
			t.Errorf("%v: exit %d, stderr %q, calls %v; want exit %d naming %q", c.args, code, e.String(), w.kms.calls, exitUsage, c.want)
		}
	}
}

// TestSecretFor: the secret tag wins; else the naming rule, which needs
// exactly one alias for {alias}; else no secret, with the reason.
func TestSecretFor(t *testing.T) {
	key := func(aliases []string, tags map[string]string) candidate {
		return candidate{Key: &types.KeyMetadata{KeyId: aws.String("1234abcd-12ab-34cd-56ef-1234567890ab")}, Tags: tags, Aliases: aliases}
	}
	tag := map[string]string{"kms-reimport:secret": "kms-reimport/tagged"}
	for _, c := range []struct {
		name    string
		c       candidate
		pattern string
		want    string
		err     string
	}{
		{"tag wins over the rule", key([]string{"alias/a"}, tag), "kms-reimport/{alias}", "kms-reimport/tagged", ""},
		{"alias", key([]string{"alias/a"}, nil), "kms-reimport/{alias}", "kms-reimport/a", ""},
		{"key id", key(nil, nil), "kms-reimport/{keyId}", "kms-reimport/1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		{"both", key([]string{"alias/a"}, nil), "kms-reimport/{alias}-{keyId}", "kms-reimport/a-1234abcd-12ab-34cd-56ef-1234567890ab", ""},
		{"no alias", key(nil, nil), "kms-reimport/{alias}", "", "the key has no alias"},
		{"several aliases", key([]string{"alias/a", "alias/b"}, nil), "kms-reimport/{alias}", "", "ambiguous: the key has aliases alias/a, alias/b"},
		{"no tag, no rule", key([]string{"alias/a"}, nil), "", "", `tag "kms-reimport:secret" is missing and no --secret-name-pattern`},
		{"empty tag", key(nil, map[string]string{"kms-reimport:secret": ""}), "", "", "is empty"},
	} {
		got, err := secretFor(c.c, "kms-reimport:secret", c.pattern)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %q, %v; want %q, error naming %q", c.name, got, err, c.want, c.err)
		}
	}
}

// TestDiscoveryIsPaced: every KMS read of the discovery waits for the
// pacer (ListAliases, ListKeys, DescribeKey, ListResourceTags).
func TestDiscoveryIsPaced(t *testing.T) {
	f := newFakeRegion()
	f.add(1, types.OriginTypeExternal, types.KeySpecSymmetricDefault, "alias/one", "a", "b")
	f.add(2, types.OriginTypeAwsKms, types.KeySpecSymmetricDefault, "", "a", "b")
	now := time.Unix(0, 0)
	var slept time.Duration
	pace := &planner.Pacer{Rate: 10, Now: func() time.Time { return now }, Sleep: func(_ context.Context, d time.Duration) error {
		slept += d
		now = now.Add(d)
		return nil
	}}
	found, err := discover(context.Background(), f, pace, map[string]string{"a": "b"})
	if err != nil || len(found) != 1 {
		t.Fatalf("found %v, %v", found, err)
	}
	calls := 0
	for _, n := range f.calls {
		calls += n
	}
	// ListAliases 1, ListKeys 1, DescribeKey 2, ListResourceTags 1 (the EXTERNAL key only).
	if calls != 5 || slept != time.Duration(calls-1)*100*time.Millisecond {
		t.Fatalf("%d calls %v, slept %v; want 5 calls spaced 100ms", calls, f.calls, slept)
	}
}

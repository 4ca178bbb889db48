package planner

import (
	"bytes"
	"context"
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

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// discKMS is one account's KMS in one Region for discovery: keys in
// creation order, their tags and aliases; calls counts every request.
type discKMS struct {
	keys    []*types.KeyMetadata
	tags    map[string]map[string]string
	aliases []types.AliasListEntry
	calls   map[string]int
}

func newDiscKMS() *discKMS {
	return &discKMS{tags: map[string]map[string]string{}, calls: map[string]int{}}
}

func (k *discKMS) add(n int, origin types.OriginType, state types.KeyState, validTo *time.Time, tags ...string) string {
	id := fmt.Sprintf("00000000-0000-0000-0000-%012d", n)
	a := "arn:aws:kms:eu-west-2:111122223333:key/" + id
	k.keys = append(k.keys, &types.KeyMetadata{Arn: aws.String(a), KeyId: aws.String(id), Origin: origin, KeyState: state, ValidTo: validTo,
		KeySpec: types.KeySpecSymmetricDefault, KeyUsage: types.KeyUsageTypeEncryptDecrypt, ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires})
	k.tags[a] = map[string]string{}
	for i := 0; i+1 < len(tags); i += 2 {
		k.tags[a][tags[i]] = tags[i+1]
	}
	return a
}

func (k *discKMS) ListKeys(_ context.Context, in *kms.ListKeysInput, _ ...func(*kms.Options)) (*kms.ListKeysOutput, error) {
	k.calls["ListKeys"]++
	out := &kms.ListKeysOutput{}
	for _, m := range k.keys {
		out.Keys = append(out.Keys, types.KeyListEntry{KeyArn: m.Arn, KeyId: m.KeyId})
	}
	return out, nil
}

func (k *discKMS) ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error) {
	k.calls["ListAliases"]++
	return &kms.ListAliasesOutput{Aliases: k.aliases}, nil
}

func (k *discKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	k.calls["DescribeKey"]++
	for _, m := range k.keys {
		if *m.Arn == *in.KeyId {
			c := *m
			return &kms.DescribeKeyOutput{KeyMetadata: &c}, nil
		}
	}
	return nil, &types.NotFoundException{Message: aws.String("not found")}
}

func (k *discKMS) ListResourceTags(_ context.Context, in *kms.ListResourceTagsInput, _ ...func(*kms.Options)) (*kms.ListResourceTagsOutput, error) {
	k.calls["ListResourceTags"]++
	out := &kms.ListResourceTagsOutput{}
	for tk, tv := range k.tags[*in.KeyId] {
		out.Tags = append(out.Tags, types.Tag{TagKey: aws.String(tk), TagValue: aws.String(tv)})
	}
	return out, nil
}

func (k *discKMS) total() int {
	n := 0
	for _, c := range k.calls {
		n += c
	}
	return n
}

// discSecrets holds secrets by name.
type discSecrets map[string][]byte

func (s discSecrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	b, ok := s[*in.SecretId]
	if !ok {
		return nil, &smtypes.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
	}
	return &secretsmanager.GetSecretValueOutput{SecretBinary: bytes.Clone(b), VersionId: aws.String("v1"), Name: in.SecretId}, nil
}

// discStore is the registry of a fleet (memRegistry) as discovery reads
// and writes it.
type discStore struct{ f *fleet }

func (d discStore) Get(_ context.Context, a string) (*registry.Entry, error) {
	e, ok := d.f.s.entries["KEY#"+a]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return &e, nil
}

func (d discStore) Create(_ context.Context, e registry.Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if _, ok := d.f.s.entries["KEY#"+e.KeyARN]; ok {
		return registry.ErrRegistered
	}
	e.PK, e.SK, e.Status, e.Version = registry.PK, "KEY#"+e.KeyARN, registry.Active, 1
	d.f.s.entries[e.SK] = e
	return nil
}

// TestDiscoveryStep: on a run's first page, a key tagged for adoption with
// good material is registered and planned in the same run; a tagged key
// without its secret is skipped and notified; an untagged EXTERNAL key
// expiring within ExpiryAlarmDays is counted, listed and notified, while a
// registered one, one expiring later and an AWS_KMS key are not. The next
// pages make no discovery call; a second run the same day notifies nothing
// again; with no Discovery, no discovery call at all.
func TestDiscoveryStep(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := newFleet(t, now)
	k := newDiscKMS()
	in := func(d float64) *time.Time { v := now.Add(time.Duration(d * 24 * float64(time.Hour))); return &v }
	good := k.add(1, types.OriginTypeExternal, types.KeyStatePendingImport, nil, "adopt", "yes", "kms-reimport:managed", "true", "kms-reimport:secret", "kms-reimport/good")
	noSecret := k.add(2, types.OriginTypeExternal, types.KeyStatePendingImport, nil, "adopt", "yes", "kms-reimport:managed", "true", "kms-reimport:secret", "kms-reimport/missing")
	unmanaged := k.add(3, types.OriginTypeExternal, types.KeyStateEnabled, in(3))
	k.add(4, types.OriginTypeExternal, types.KeyStateEnabled, in(30))
	managed := k.add(5, types.OriginTypeExternal, types.KeyStateEnabled, in(2))
	k.add(6, types.OriginTypeAwsKms, types.KeyStateEnabled, nil, "adopt", "yes")
	f.key(managed, in(2))
	f.key(arn(7), in(60))
	f.key(arn(8), in(60))
	notes, marks := &fakeSNS{}, memMarks{}
	stage := func(d *Discovery) *Stage {
		return &Stage{Registry: f.s, PageSize: 1, Now: func() time.Time { return now }, AlarmDays: 7, Discovery: d,
			Notify: &Notifier{SNS: notes, Topic: "arn:aws:sns:eu-west-2:111122223333:t", Marks: marks}}
	}
	disc := &Discovery{Selector: map[string]string{"adopt": "yes"}, Accounts: []string{"111122223333"}, Region: "eu-west-2",
		Rules:   AdoptRules{SecretTag: DefaultSecretTag, Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}, Deployment: Deployment{TagKey: "kms-reimport:managed", TagValue: "true", SecretPrefix: "kms-reimport/"}},
		KMS:     func(account, region string) DiscoveryAPI { return k },
		Secrets: discSecrets{"kms-reimport/good": bytes.Repeat([]byte{7}, 32)}, Store: discStore{f}}

	// The first page discovers; the next pages make no discovery call.
	p := stage(disc)
	first, err := p.Plan(context.Background(), State{})
	if err != nil {
		t.Fatal(err)
	}
	onFirst := k.total()
	st, items := first, first.Items
	for st.Next != "" {
		if st, err = p.Plan(context.Background(), st); err != nil {
			t.Fatal(err)
		}
		items = append(items, st.Items...)
	}
	if onFirst == 0 || k.total() != onFirst {
		t.Fatalf("discovery calls: %d on the first page, %d on the next ones; want some, then none", onFirst, k.total()-onFirst)
	}
	d := st.Stats.Discovery
	if d == nil || d.Adopted != 1 || d.Skipped != 1 || d.Tagged != 2 || d.UnmanagedExpiring != 1 || d.Candidates != 5 {
		t.Fatalf("discovery stats %+v", d)
	}
	if len(d.Unmanaged) != 1 || d.Unmanaged[0].KeyARN != unmanaged || d.Unmanaged[0].Account != "111122223333" || !d.Unmanaged[0].ValidTo.Equal(*in(3)) {
		t.Errorf("unmanaged %+v; want %s with its account and ValidTo", d.Unmanaged, unmanaged)
	}
	if e, ok := f.s.entries["KEY#"+good]; !ok || e.SecretID != "kms-reimport/good" || e.ValidFor != "90d" {
		t.Fatalf("adopted key not registered: %+v", e)
	}
	if !slices.Contains(keys(items), good) {
		t.Errorf("the adopted key is not planned in the same run: %v", keys(items))
	}
	if _, ok := f.s.entries["KEY#"+noSecret]; ok {
		t.Error("a key without its secret was registered")
	}
	subjects := strings.Join(notes.subjects(), "\n")
	for _, want := range []string{"key not adopted " + shortKey(noSecret), "unmanaged key expires soon " + shortKey(unmanaged)} {
		if !strings.Contains(subjects, want) {
			t.Errorf("notifications %q; want %q", subjects, want)
		}
	}
	if strings.Contains(subjects, "unmanaged key expires soon "+shortKey(managed)) {
		t.Errorf("a registered key is reported unmanaged: %q", subjects)
	}
	calls, sent := k.total(), len(notes.msgs)
	if st.Stats.Pages < 3 {
		t.Fatalf("%d pages; the test wants several", st.Stats.Pages)
	}
	// Again the same day: discovery reads again, notifies nothing new.
	planAll(t, stage(disc))
	if len(notes.msgs) != sent {
		t.Errorf("second run notified again: %v", notes.subjects())
	}
	if k.total() != 2*calls {
		t.Errorf("second run: %d calls, want %d (discovery once per run, on its first page)", k.total()-calls, calls)
	}
	// Discovery off: not one KMS call of discovery.
	before := k.total()
	planAll(t, stage(nil))
	if k.total() != before {
		t.Fatalf("discovery off made %d discovery calls", k.total()-before)
	}
}

package planner

// Discovery: the reads that find EXTERNAL keys in one account and Region
// (Discover), the adoption of one key (Adopt), shared by `kms-reimport
// adopt` and the fleet run's discovery step (discovery.go). Every KMS
// call waits for the Pacer in the account and Region's budget.

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// DiscoveryAPI is the part of KMS discovery reads in one account and
// Region (*kms.Client; fakes in tests).
type DiscoveryAPI interface {
	kmsaccess.Describer
	TagReader
	ListKeys(context.Context, *kms.ListKeysInput, ...func(*kms.Options)) (*kms.ListKeysOutput, error)
	ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
}

// AdoptStore is the part of the registry adoption writes
// (*registry.Store.Create: only a key nobody registered meanwhile;
// registry.ErrRegistered otherwise).
type AdoptStore interface {
	Create(context.Context, registry.Entry) error
}

// Discover lists the EXTERNAL keys of one account and Region: every page
// of ListKeys, each key described, the tags of each EXTERNAL key read,
// every call paced in budget (registry.Budget of the account and Region).
// Tagged says which carry every tag of selector. A key deleted between the
// list and its description is passed over; one DescribeKey does not find
// yet is kept, Unseen, when it is tagged.
func Discover(ctx context.Context, k DiscoveryAPI, pace *Pacer, budget string, selector map[string]string) ([]Candidate, error) {
	aliases, err := AliasesByKey(ctx, k, pace, budget)
	if err != nil {
		return nil, err
	}
	var found []Candidate
	in := &kms.ListKeysInput{}
	for {
		if err := pace.WaitIn(ctx, budget); err != nil {
			return nil, err
		}
		out, err := k.ListKeys(ctx, in)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListKeys")
		}
		for _, e := range out.Keys {
			c, ok, err := discoverKey(ctx, k, pace, budget, aws.ToString(e.KeyArn), selector)
			if err != nil {
				return nil, err
			}
			if ok {
				c.Aliases = aliases[aws.ToString(c.Key.KeyId)]
				found = append(found, c)
			}
		}
		if !out.Truncated || out.NextMarker == nil {
			return found, nil
		}
		in.Marker = out.NextMarker
	}
}

// AliasLister is the KMS call AliasesByKey makes.
type AliasLister interface {
	ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
}

// AliasesByKey lists the aliases of one account and Region (every page,
// each paced in budget) by target key id, sorted: discovery's and
// `kms-reimport status`'s.
func AliasesByKey(ctx context.Context, k AliasLister, pace *Pacer, budget string) (map[string][]string, error) {
	by := map[string][]string{}
	in := &kms.ListAliasesInput{}
	for {
		if err := pace.WaitIn(ctx, budget); err != nil {
			return nil, err
		}
		out, err := k.ListAliases(ctx, in)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListAliases")
		}
		for _, a := range out.Aliases {
			if a.TargetKeyId != nil && a.AliasName != nil {
				by[*a.TargetKeyId] = append(by[*a.TargetKeyId], *a.AliasName)
			}
		}
		if !out.Truncated || out.NextMarker == nil {
			break
		}
		in.Marker = out.NextMarker
	}
	for _, names := range by {
		sort.Strings(names)
	}
	return by, nil
}

// discoverKey reads one listed key: a candidate when it is EXTERNAL.
func discoverKey(ctx context.Context, k DiscoveryAPI, pace *Pacer, budget, arn string, selector map[string]string) (Candidate, bool, error) {
	if err := pace.WaitIn(ctx, budget); err != nil {
		return Candidate{}, false, err
	}
	md, err := kmsaccess.Describe(ctx, k, arn)
	if flow.NameOf(err) == flow.KeyNotFound {
		return unseenKey(ctx, k, pace, budget, arn, selector)
	}
	if err != nil {
		return Candidate{}, false, err
	}
	if md.Origin != types.OriginTypeExternal {
		return Candidate{}, false, nil
	}
	if err := pace.WaitIn(ctx, budget); err != nil {
		return Candidate{}, false, err
	}
	tags, err := ReadTags(ctx, k, *md.Arn)
	if err != nil {
		return Candidate{}, false, err
	}
	return Candidate{Key: md, Tags: tags, Tagged: HasTags(tags, selector)}, true, nil
}

// unseenKey is a key ListKeys lists and DescribeKey does not find: one
// just created (KMS is eventually consistent: docs/aws-behaviour.md row
// 12a) or just deleted. Tagged for adoption, it is a candidate that can't
// be checked yet; otherwise (or gone for ListResourceTags too) passed over.
func unseenKey(ctx context.Context, k DiscoveryAPI, pace *Pacer, budget, arn string, selector map[string]string) (Candidate, bool, error) {
	if err := pace.WaitIn(ctx, budget); err != nil {
		return Candidate{}, false, err
	}
	tags, err := ReadTags(ctx, k, arn)
	if nf := new(types.NotFoundException); errors.As(err, &nf) || flow.NameOf(err) == flow.AccessDenied {
		// Gone, or (the fleet run's role reads only EXTERNAL keys' tags)
		// a key whose origin IAM can't tell yet: passed over.
		return Candidate{}, false, nil
	}
	if err != nil {
		return Candidate{}, false, err
	}
	md := &types.KeyMetadata{Arn: &arn, KeyId: aws.String(arn[strings.LastIndex(arn, "/")+1:])}
	tagged := HasTags(tags, selector)
	return Candidate{Key: md, Tags: tags, Tagged: tagged, Unseen: true}, tagged, nil
}

// Adopt decides candidate f (DecideAdopt), reads its secret when the
// checks before it pass (WithMaterial), decides again and, when it is
// adopted, registers it (EntryOf, store.Create). One path for `kms-reimport
// adopt` and the fleet run.
func Adopt(ctx context.Context, s keymaterial.SecretReader, store AdoptStore, rules AdoptRules, f AdoptFacts, now time.Time) AdoptResult {
	res, r := DecideAdopt(f, rules, now)
	if res.Result != NeedsSecret {
		return res
	}
	checked, err := WithMaterial(ctx, s, r, RegisterFacts{Key: f.Key, Tags: f.Tags})
	f.Checked, f.ReadErr = &checked, err
	res, r = DecideAdopt(f, rules, now)
	if res.Result != Adopted {
		return res
	}
	switch err := store.Create(ctx, EntryOf(r, checked)); {
	case errors.Is(err, registry.ErrRegistered):
		// Registered between the registry's read and this write (an
		// operator's register wins: its policy is not replaced).
		res.Result, res.Reason = AlreadyRegistered, "registered meanwhile: left alone"
	case err != nil:
		res.Result, res.Reason = Failed, err.Error()
	}
	return res
}

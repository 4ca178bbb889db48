package main

// adopt: register in bulk the EXTERNAL keys of an account's Regions that
// carry the given tags. Discovery lists every key (ListKeys), keeps the
// EXTERNAL ones (DescribeKey) that carry every tag asked for
// (ListResourceTags), paced under the read quotas; each key is mapped to
// its secret (a tag on the key, else a naming rule), then checked and
// registered exactly as register does it (withMaterial, checkRegistration,
// entryOf). A key already registered is reported and left alone.
//
// The clients of one account and Region come from adoptClients: the
// caller's own account with the caller's credentials; a member account
// (--account other than the caller's) with the member role's, through
// shared/kmsaccess (accounts.go, reachAccount).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// discoveryAPI is the part of KMS adopt reads in one account and Region:
// keyReader (DescribeKey, ListResourceTags), with ListKeys and ListAliases.
type discoveryAPI interface {
	keyReader
	ListKeys(context.Context, *kms.ListKeysInput, ...func(*kms.Options)) (*kms.ListKeysOutput, error)
	ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
}

// callerAPI tells the account of the credentials (sts:GetCallerIdentity).
type callerAPI interface {
	GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// adoptRegistry is the part of the registry adopt uses (*registry.Store).
type adoptRegistry interface {
	All(context.Context) ([]registry.Entry, error)
	Put(context.Context, registry.Entry) error
}

// adoptClients builds adopt's clients; account is the account the keys
// are in (today always the caller's; "" when --account is not given),
// region the keys' Region for KMS and, for Secrets Manager, the
// deployment's Region (the SDK's), where the stages read the secrets. The
// tests replace them with fakes.
var adoptClients = struct {
	kms      func(cfg aws.Config, account, region string) discoveryAPI
	secrets  func(cfg aws.Config, account, region string) secretReader
	caller   func(cfg aws.Config) callerAPI
	registry func(cfg aws.Config, table string) adoptRegistry
}{
	kms: func(c aws.Config, _, region string) discoveryAPI {
		return kms.NewFromConfig(c, func(o *kms.Options) { o.Region = region })
	},
	secrets: func(c aws.Config, _, region string) secretReader {
		return secretsmanager.NewFromConfig(c, func(o *secretsmanager.Options) { o.Region = region })
	},
	caller: func(c aws.Config) callerAPI { return sts.NewFromConfig(c) },
	registry: func(c aws.Config, table string) adoptRegistry {
		return &registry.Store{DB: dynamodb.NewFromConfig(c), Table: table}
	},
}

// What adopt did with a key (adoptResult.Result).
const (
	adopted           = "adopted"
	wouldAdopt        = "would-adopt"
	alreadyRegistered = "already-registered"
	skipped           = "skipped"
	failed            = "error"
)

// adoptResult is one key's line of adopt's report.
type adoptResult struct {
	KeyARN   string `json:"keyArn"`
	Region   string `json:"region"`
	Alias    string `json:"alias,omitempty"`
	SecretID string `json:"secretId,omitempty"`
	Result   string `json:"result"`
	Reason   string `json:"reason,omitempty"`
}

// candidate is a discovered key: EXTERNAL, carrying every tag asked for.
type candidate struct {
	Key     *types.KeyMetadata
	Tags    map[string]string
	Aliases []string // alias names (alias/...), sorted
	// Unseen: listed, tagged, but DescribeKey does not find it (yet).
	Unseen bool
}

// adoptOptions are adopt's flags as parsed.
type adoptOptions struct {
	account   string
	regions   []string
	selector  map[string]string
	secretTag string
	pattern   string
	dryRun    bool
	json      bool
	table     string
	rate      float64
	policy    flow.Policy
	dep       deployment
	// access: --member-role, --external-id; reach: how --account's
	// clients are built (accounts.go).
	access *memberAccess
	reach  accountReach
}

// tagFlags is a repeatable --tag KEY=VALUE.
type tagFlags map[string]string

func (t tagFlags) String() string { return "" }

func (t tagFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, such as kms-reimport:adopt=true")
	}
	if old, dup := t[k]; dup && old != v {
		return fmt.Errorf("tag %q given twice, as %q and %q: a key carries one value", k, old, v)
	}
	t[k] = v
	return nil
}

// regionName is the form of a Region name (flow's, for --regions).
var regionName = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$`)

// placeholder is a {name} in --secret-name-pattern.
var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// checkPattern refuses a naming rule that names no key or an unknown
// placeholder.
func checkPattern(p string) error {
	if p == "" {
		return nil
	}
	found := placeholder.FindAllString(p, -1)
	if len(found) == 0 {
		return fmt.Errorf("flag --secret-name-pattern is %q: it names one secret for every key; want {alias} or {keyId} in it, such as kms-reimport/{alias}", p)
	}
	for _, f := range found {
		if f != "{alias}" && f != "{keyId}" {
			return fmt.Errorf("flag --secret-name-pattern is %q: unknown placeholder %s; allowed: {alias}, {keyId}", p, f)
		}
	}
	return nil
}

// secretFor maps a key to its secret: the value of its tag secretTag;
// else the naming rule pattern, {keyId} its key id and {alias} its alias
// name without "alias/" (a key with several aliases is ambiguous); else
// none. The error says why there is none.
func secretFor(c candidate, secretTag, pattern string) (string, error) {
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

// hasTags reports whether tags carries every tag of selector.
func hasTags(tags, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// aliasesByKey lists a Region's aliases (every page) by target key id.
func aliasesByKey(ctx context.Context, k discoveryAPI, pace *planner.Pacer) (map[string][]string, error) {
	by := map[string][]string{}
	in := &kms.ListAliasesInput{}
	for {
		if err := pace.Wait(ctx); err != nil {
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

// discover lists the EXTERNAL keys of one account and Region that carry
// every tag of selector: every page of ListKeys, each key described, the
// tags of each EXTERNAL key read; every call paced. A key deleted between
// the list and its description is passed over.
func discover(ctx context.Context, k discoveryAPI, pace *planner.Pacer, selector map[string]string) ([]candidate, error) {
	aliases, err := aliasesByKey(ctx, k, pace)
	if err != nil {
		return nil, err
	}
	var found []candidate
	in := &kms.ListKeysInput{}
	for {
		if err := pace.Wait(ctx); err != nil {
			return nil, err
		}
		out, err := k.ListKeys(ctx, in)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListKeys")
		}
		for _, e := range out.Keys {
			c, ok, err := discoverKey(ctx, k, pace, aws.ToString(e.KeyArn), selector)
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

// discoverKey reads one listed key: a candidate when it is EXTERNAL and
// carries every tag of selector.
func discoverKey(ctx context.Context, k discoveryAPI, pace *planner.Pacer, arn string, selector map[string]string) (candidate, bool, error) {
	if err := pace.Wait(ctx); err != nil {
		return candidate{}, false, err
	}
	md, err := kmsaccess.Describe(ctx, k, arn)
	if flow.NameOf(err) == flow.KeyNotFound {
		return unseenKey(ctx, k, pace, arn, selector)
	}
	if err != nil {
		return candidate{}, false, err
	}
	if md.Origin != types.OriginTypeExternal {
		return candidate{}, false, nil
	}
	if err := pace.Wait(ctx); err != nil {
		return candidate{}, false, err
	}
	tags, err := readTags(ctx, k, *md.Arn)
	if err != nil {
		return candidate{}, false, err
	}
	return candidate{Key: md, Tags: tags}, hasTags(tags, selector), nil
}

// unseenKey is a key ListKeys lists and DescribeKey does not find: one
// just created (KMS is eventually consistent: docs/aws-behaviour.md row
// 12a) or just deleted. Tagged for adoption, it is a candidate that can't
// be checked yet; otherwise (or gone for ListResourceTags too) passed over.
func unseenKey(ctx context.Context, k discoveryAPI, pace *planner.Pacer, arn string, selector map[string]string) (candidate, bool, error) {
	if err := pace.Wait(ctx); err != nil {
		return candidate{}, false, err
	}
	tags, err := readTags(ctx, k, arn)
	if nf := new(types.NotFoundException); errors.As(err, &nf) {
		return candidate{}, false, nil
	}
	if err != nil {
		return candidate{}, false, err
	}
	md := &types.KeyMetadata{Arn: &arn, KeyId: aws.String(arn[strings.LastIndex(arn, "/")+1:])}
	return candidate{Key: md, Tags: tags, Unseen: true}, hasTags(tags, selector), nil
}

// adoptKey checks one candidate as register does and, unless dry run,
// registers it. Registered holds the keys already in the registry, with
// their secrets.
func adoptKey(ctx context.Context, s secretReader, store adoptRegistry, o adoptOptions, c candidate, registered map[string]string) adoptResult {
	res := adoptResult{KeyARN: *c.Key.Arn, Region: registry.RegionOf(*c.Key.Arn), Alias: strings.Join(c.Aliases, ",")}
	if secret, ok := registered[res.KeyARN]; ok {
		res.SecretID, res.Result, res.Reason = secret, alreadyRegistered, "in the registry: left alone"
		return res
	}
	if c.Unseen {
		res.Result, res.Reason = skipped, "ListKeys lists the key and DescribeKey does not find it: just created (KMS is eventually consistent) or just deleted; run adopt again"
		return res
	}
	secret, err := secretFor(c, o.secretTag, o.pattern)
	if err != nil {
		res.Result, res.Reason = skipped, err.Error()
		return res
	}
	res.SecretID = secret
	r, err := flow.ValidateRequest(flow.RequestInput{KeyID: res.KeyARN, SecretID: secret, Policy: o.policy}, time.Now(), flow.RequestOptions{})
	if err != nil {
		res.Result, res.Reason = skipped, err.Error()
		return res
	}
	f, err := withMaterial(ctx, s, r, registerFacts{Key: c.Key, Tags: c.Tags})
	if err != nil {
		res.Result, res.Reason = failed, err.Error()
		return res
	}
	if err := checkRegistration(r, f, o.dep); err != nil {
		res.Result, res.Reason = skipped, err.Error()
		return res
	}
	if o.dryRun {
		res.Result, res.Reason = wouldAdopt, "checks passed; nothing registered (--dry-run)"
		return res
	}
	if err := store.Put(ctx, entryOf(r, f)); err != nil {
		res.Result, res.Reason = failed, err.Error()
		return res
	}
	res.Result = adopted
	return res
}

// adoptReport is adopt's JSON output.
type adoptReport struct {
	Account string         `json:"account,omitempty"`
	Regions []string       `json:"regions"`
	Tags    tagFlags       `json:"tags"`
	DryRun  bool           `json:"dryRun"`
	Keys    []adoptResult  `json:"keys"`
	Counts  map[string]int `json:"counts"`
}

// exitOf is adopt's exit code for its results: 1 when any key was skipped
// or met an error, else 0.
func exitOf(results []adoptResult) int {
	for _, r := range results {
		if r.Result == skipped || r.Result == failed {
			return exitFailure
		}
	}
	return exitOK
}

func parseAdopt(args []string, stderr io.Writer) (adoptOptions, int, bool) {
	fs := newFlags("adopt", "adopt --region R --tag KEY=VALUE [--tag ...] [--secret-tag KEY | --secret-name-pattern P] [--dry-run] [--json] [policy flags]", stderr)
	o := adoptOptions{selector: map[string]string{}}
	table := tableFlag(fs)
	fs.StringVar(&o.account, "account", "", "account of the keys: the caller's own, or a member account reached through the member role (default: the caller's)")
	o.access = memberFlags(fs)
	region := fs.String("region", "", "Region(s) of the keys, comma separated (default: the SDK's, $AWS_REGION)")
	fs.Var(tagFlags(o.selector), "tag", "adopt keys carrying this tag `KEY=VALUE`; repeat for several (all must match)")
	fs.StringVar(&o.secretTag, "secret-tag", "kms-reimport:secret", "tag on the key whose value names its secret")
	fs.StringVar(&o.pattern, "secret-name-pattern", "", "secret name for a key without --secret-tag, with {alias} (alias name without alias/) or {keyId}, e.g. kms-reimport/{alias}")
	fs.BoolVar(&o.dryRun, "dry-run", false, "check and report every key; register nothing")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.Float64Var(&o.rate, "kms-read-rate", rotation.DefaultReadRate, "requests per second of the discovery's KMS reads (ListKeys, DescribeKey, ListResourceTags, ListAliases)")
	pv := bindPolicy(fs, "336h")
	tag, prefix := deploymentFlags(fs)
	if code, ok := parse(fs, args); !ok {
		return o, code, false
	}
	o.table, o.policy = *table, pv.policy()
	if *region != "" {
		o.regions = strings.Split(*region, ",")
	}
	err := adoptUsage(&o, *tag, *prefix)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport adopt:", err)
		return o, exitUsage, false
	}
	return o, exitOK, true
}

// adoptUsage checks adopt's flags before any call to AWS.
func adoptUsage(o *adoptOptions, tag, prefix string) error {
	if len(o.selector) == 0 {
		return errors.New("--tag KEY=VALUE is required: adopt takes only keys tagged for it")
	}
	if o.table == "" {
		return errors.New("no table: pass --table or set TABLE_NAME (the stack output TableName)")
	}
	if !o.policy.NoExpiry() && o.policy.ValidFor == "" {
		return errors.New("--valid-for (or --no-expiry) is required")
	}
	if !(o.rate > 0) {
		return fmt.Errorf("flag --kms-read-rate is %v: want a rate above 0", o.rate)
	}
	for _, r := range o.regions {
		if !regionName.MatchString(r) {
			return fmt.Errorf("flag --region has %q: not a Region name such as eu-west-2", r)
		}
	}
	if err := checkPattern(o.pattern); err != nil {
		return err
	}
	// The policy as every key will have it: refused once, here, when the
	// registry can't keep it.
	sample := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	r, err := flow.ValidateRequest(flow.RequestInput{KeyID: sample, SecretID: "kms-reimport/adopt", Policy: o.policy}, time.Now(), flow.RequestOptions{})
	if err != nil {
		return err
	}
	if err := r.ValidateKept(); err != nil {
		return err
	}
	o.dep, err = parseDeployment(tag, prefix)
	return err
}

func runAdopt(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseAdopt(args, stderr)
	if !ok {
		return code
	}
	fail := func(err error, code int) int {
		fmt.Fprintln(stderr, "kms-reimport adopt:", err)
		return code
	}
	ctx := context.Background()
	cfg, err := awsConfig(ctx)
	if err != nil {
		return fail(err, exitFailure)
	}
	if o.account != "" {
		c, err := callerOf(ctx, adoptClients.caller(cfg))
		if err != nil {
			return fail(err, exitFailure)
		}
		if o.reach, code, err = reachAccount(ctx, cfg, c, o.account, o.access.resolved()); err != nil {
			return fail(err, code)
		}
	}
	if len(o.regions) == 0 {
		if cfg.Region == "" {
			return fail(errors.New("no Region: pass --region or set AWS_REGION"), exitUsage)
		}
		o.regions = []string{cfg.Region}
	}
	store := adoptClients.registry(cfg, o.table)
	entries, err := store.All(ctx)
	if err != nil {
		return fail(err, exitFailure)
	}
	registered := map[string]string{} // key ARN: its secret
	for _, e := range entries {
		registered[e.KeyARN] = e.SecretID
	}
	var results []adoptResult
	var discoveryErr error
	for _, region := range o.regions {
		rs, err := adoptRegion(ctx, cfg, store, o, region, registered)
		results = append(results, rs...)
		if err != nil {
			// What the earlier Regions did is still reported.
			discoveryErr = fmt.Errorf("discovering the keys of %s: %w", region, err)
			break
		}
	}
	if err := writeAdopt(stdout, o, results); err != nil {
		return fail(err, exitFailure)
	}
	if discoveryErr != nil {
		return fail(discoveryErr, exitFailure)
	}
	return exitOf(results)
}

// adoptRegion discovers and adopts the keys of one Region.
func adoptRegion(ctx context.Context, cfg aws.Config, store adoptRegistry, o adoptOptions, region string, registered map[string]string) ([]adoptResult, error) {
	pace := &planner.Pacer{Rate: o.rate}
	found, err := discover(ctx, adoptClients.kms(o.reach.kms(cfg), o.account, region), pace, o.selector)
	if err != nil {
		return nil, err
	}
	s := o.reach.secretsVia(adoptClients.secrets(cfg, o.account, cfg.Region))
	results := make([]adoptResult, 0, len(found))
	for _, c := range found {
		results = append(results, adoptKey(ctx, s, store, o, c, registered))
	}
	return results, nil
}

// writeAdopt prints the report: a table with a summary line, or JSON.
func writeAdopt(w io.Writer, o adoptOptions, results []adoptResult) error {
	counts := map[string]int{}
	for _, r := range results {
		counts[r.Result]++
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if results == nil {
			results = []adoptResult{}
		}
		return enc.Encode(adoptReport{Account: o.account, Regions: o.regions, Tags: o.selector, DryRun: o.dryRun, Keys: results, Counts: counts})
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tALIAS\tSECRET\tRESULT\tREASON")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.KeyARN, orDash(r.Alias, "-"), orDash(r.SecretID, "-"), r.Result, orDash(r.Reason, "-"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, k := range []string{adopted, wouldAdopt, alreadyRegistered, skipped, failed} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(parts) == 0 {
		parts = []string{"no key"}
	}
	tags := make([]string, 0, len(o.selector))
	for k, v := range o.selector {
		tags = append(tags, k+"="+v)
	}
	slices.Sort(tags)
	_, err := fmt.Fprintf(w, "%s (EXTERNAL keys tagged %s in %s)\n", strings.Join(parts, ", "), strings.Join(tags, ", "), strings.Join(o.regions, ", "))
	return err
}

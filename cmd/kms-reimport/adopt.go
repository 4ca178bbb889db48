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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// discoveryAPI is the part of KMS adopt reads in one account and Region
// (planner.DiscoveryAPI: DescribeKey, ListResourceTags, ListKeys,
// ListAliases).
type discoveryAPI = planner.DiscoveryAPI

// callerAPI tells the account of the credentials (sts:GetCallerIdentity).
type callerAPI interface {
	GetCallerIdentity(context.Context, *sts.GetCallerIdentityInput, ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// adoptRegistry is the part of the registry adopt uses (*registry.Store).
type adoptRegistry interface {
	All(context.Context) ([]registry.Entry, error)
	Create(context.Context, registry.Entry) error
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

// What adopt did with a key (adoptResult.Result): the shared decision's
// results (planner.DecideAdopt).
const (
	adopted           = planner.Adopted
	wouldAdopt        = planner.WouldAdopt
	alreadyRegistered = planner.AlreadyRegistered
	skipped           = planner.Skipped
	failed            = planner.Failed
)

// adoptResult is one key's line of adopt's report.
type adoptResult = planner.AdoptResult

// candidate is a discovered key: EXTERNAL, carrying every tag asked for.
type candidate = planner.Candidate

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

// checkPattern refuses a naming rule that names no key or an unknown
// placeholder.
func checkPattern(p string) error { return planner.CheckPattern("flag --secret-name-pattern", p) }

// secretFor maps a key to its secret (planner.SecretFor).
func secretFor(c candidate, secretTag, pattern string) (string, error) {
	return planner.SecretFor(c, secretTag, pattern)
}

// discover lists the EXTERNAL keys of one account and Region that carry
// every tag of selector (planner.Discover, paced in one budget).
func discover(ctx context.Context, k discoveryAPI, pace *planner.Pacer, selector map[string]string) ([]candidate, error) {
	all, err := planner.Discover(ctx, k, pace, "", selector)
	if err != nil {
		return nil, err
	}
	var found []candidate
	for _, c := range all {
		if c.Tagged {
			found = append(found, c)
		}
	}
	return found, nil
}

// adoptKey checks one candidate as register does and, unless dry run,
// registers it (planner.Adopt: the fleet run's discovery takes the same
// path). Registered holds the keys already in the registry, with their
// secrets.
func adoptKey(ctx context.Context, s secretReader, store adoptRegistry, o adoptOptions, c candidate, registered map[string]string) adoptResult {
	secret, ok := registered[aws.ToString(c.Key.Arn)]
	rules := planner.AdoptRules{SecretTag: o.secretTag, Pattern: o.pattern, Policy: o.policy, Deployment: o.dep, DryRun: o.dryRun}
	return planner.Adopt(ctx, s, store, rules, planner.AdoptFacts{Candidate: c, Registered: ok, RegisteredSecret: secret}, time.Now())
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

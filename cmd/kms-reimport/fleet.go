package main

// The fleet subcommands: register, deregister, status and plan. They talk
// to the product's DynamoDB table (--table or TABLE_NAME) and, for register,
// to KMS to resolve the key, through the standard AWS SDK configuration
// (region, credentials, AWS_ENDPOINT_URL_* for the local stack).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

func init() {
	register(command{name: "register", summary: "add a key to the registry the scheduled planner renews", run: runRegister})
	register(command{name: "deregister", summary: "remove a key from the registry (its records stay)", run: runDeregister})
	register(command{name: "status", summary: "table of managed keys: state, ValidTo, days left, last import, last error", run: runStatus})
	register(command{name: "plan", summary: "what the next scheduled run would renew, changing nothing", run: runPlan})
}

func tableFlag(fs *flag.FlagSet) *string {
	return fs.String("table", os.Getenv("TABLE_NAME"), "DynamoDB table of the deployment (default $TABLE_NAME)")
}

func awsConfig(ctx context.Context) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx)
}

func registryStore(ctx context.Context, table string) (*registry.Store, aws.Config, error) {
	if table == "" {
		return nil, aws.Config{}, errors.New("no table: pass --table or set TABLE_NAME (the stack output TableName)")
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, cfg, err
	}
	return &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: table}, cfg, nil
}

func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kms-reimport %s\n\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func runRegister(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("register", "register --key KEY --secret SECRET --valid-for 2160h --renew-before 336h [flags]", stderr)
	table := tableFlag(fs)
	keyID := fs.String("key", "", "key ARN, key id or alias (resolved to the key ARN)")
	secret := fs.String("secret", "", "secret ARN or name holding the key material")
	stage := fs.String("secret-stage", "", "staging label of the secret version to import (default AWSCURRENT)")
	validFor := fs.String("valid-for", "", "validity of each import, e.g. 2160h or 90d (at most 365d)")
	noExpiry := fs.Bool("no-expiry", false, "import with KEY_MATERIAL_DOES_NOT_EXPIRE instead of --valid-for")
	renewBefore := fs.String("renew-before", "336h", "renew this long before ValidTo")
	alg := fs.String("wrapping-algorithm", "", "wrapping algorithm (default: the best for the key type)")
	spec := fs.String("wrapping-key-spec", "", "RSA_2048, RSA_3072 or RSA_4096 (default RSA_4096)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	in := flow.RequestInput{KeyID: *keyID, SecretID: *secret, SecretVersionStage: *stage, ValidFor: *validFor,
		WrappingAlgorithm: *alg, WrappingKeySpec: *spec, RenewBefore: *renewBefore}
	if *noExpiry {
		in.ExpirationModel = flow.DoesNotExpire
	}
	if !*noExpiry && *validFor == "" {
		fmt.Fprintln(stderr, "kms-reimport register: --valid-for (or --no-expiry) is required")
		return exitUsage
	}
	// The same validation as an execution input: a clear error naming the flag's field.
	if _, err := flow.ValidateRequest(in, time.Now(), flow.RequestOptions{}); err != nil {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return exitUsage
	}
	ctx := context.Background()
	store, cfg, err := registryStore(ctx, *table)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return exitUsage
	}
	md, err := kmsaccess.Describe(ctx, kms.NewFromConfig(cfg), *keyID)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return exitFailure
	}
	if err := kmsaccess.CheckImportable(md); err != nil {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return exitUsage
	}
	e := registry.Entry{KeyARN: *md.Arn, SecretID: *secret, SecretVersionStage: *stage, ValidFor: *validFor, NoExpiry: *noExpiry,
		RenewBefore: *renewBefore, WrappingAlgorithm: *alg, WrappingKeySpec: *spec}
	if md.KeyState == "Enabled" && md.ValidTo != nil {
		e.CurrentValidTo = md.ValidTo // renewal due from what KMS says today
	}
	if err := store.Put(ctx, e); err != nil {
		fmt.Fprintln(stderr, "kms-reimport register:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "registered %s (secret %s, valid for %s, renew %s before)\n", *md.Arn, *secret, orDash(*validFor, "no expiry"), *renewBefore)
	return exitOK
}

func runDeregister(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("deregister", "deregister --key KEY_ARN", stderr)
	table := tableFlag(fs)
	keyARN := fs.String("key", "", "key ARN as registered")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *keyARN == "" {
		fmt.Fprintln(stderr, "kms-reimport deregister: --key is required")
		return exitUsage
	}
	ctx := context.Background()
	store, _, err := registryStore(ctx, *table)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport deregister:", err)
		return exitUsage
	}
	if err := store.Delete(ctx, *keyARN); err != nil {
		fmt.Fprintln(stderr, "kms-reimport deregister:", err)
		if errors.Is(err, registry.ErrNotFound) {
			return exitUsage
		}
		return exitFailure
	}
	fmt.Fprintf(stdout, "deregistered %s\n", *keyARN)
	return exitOK
}

// statusRow is one line of `status`.
type statusRow struct {
	KeyARN      string     `json:"keyArn"`
	Status      string     `json:"status"`
	ValidTo     *time.Time `json:"validTo,omitempty"`
	DaysLeft    *float64   `json:"daysLeft,omitempty"`
	NextDue     *time.Time `json:"nextDue,omitempty"`
	LastSuccess *time.Time `json:"lastImport,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
	LastFailure *time.Time `json:"lastFailure,omitempty"`
	Secret      string     `json:"secretId"`
	// Multi-Region keys: every replica's ValidTo; rotation policy.
	Replicas     []registry.Replica `json:"replicas,omitempty"`
	RotateEvery  string             `json:"rotateEvery,omitempty"`
	LastRotation *time.Time         `json:"lastRotation,omitempty"`
	Materials    int                `json:"materials,omitempty"`
}

// reportFlags parses the flags of the read-only reports (status, plan)
// and opens the registry.
func reportFlags(name string, args []string, stderr io.Writer) (*registry.Store, bool, int, bool) {
	fs := newFlags(name, name+" [--json]", stderr)
	table := tableFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return nil, false, code, false
	}
	store, _, err := registryStore(context.Background(), *table)
	if err != nil {
		fmt.Fprintf(stderr, "kms-reimport %s: %v\n", name, err)
		return nil, false, exitUsage, false
	}
	return store, *asJSON, 0, true
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	store, asJSON, code, ok := reportFlags("status", args, stderr)
	if !ok {
		return code
	}
	ctx := context.Background()
	all, err := store.All(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport status:", err)
		return exitFailure
	}
	now := time.Now()
	rows := make([]statusRow, 0, len(all))
	for _, e := range all {
		r := statusRow{KeyARN: e.KeyARN, Status: e.Status, ValidTo: e.CurrentValidTo, NextDue: e.NextDue, LastSuccess: e.LastSuccess,
			LastError: e.LastError, LastFailure: e.LastFailure, Secret: e.SecretID,
			Replicas: e.Replicas, RotateEvery: e.RotateEvery, LastRotation: e.LastRotation, Materials: e.Materials}
		// Days left: the earliest ValidTo of the primary and its replicas.
		for _, v := range append([]*time.Time{e.CurrentValidTo}, replicaValidTos(e)...) {
			if v == nil {
				continue
			}
			d := float64(int(v.Sub(now).Hours()/24*10)) / 10
			if r.DaysLeft == nil || d < *r.DaysLeft {
				r.DaysLeft = &d
			}
		}
		rows = append(rows, r)
	}
	// Closest to expiry first: what needs attention.
	sort.SliceStable(rows, func(i, j int) bool { return daysOf(rows[i]) < daysOf(rows[j]) })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rows)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTATUS\tVALID TO\tDAYS LEFT\tLAST IMPORT\tLAST ERROR")
	for _, r := range rows {
		days := "-"
		if r.DaysLeft != nil {
			days = fmt.Sprintf("%.1f", *r.DaysLeft)
		}
		lastErr := "-"
		if r.LastError != "" && (r.LastSuccess == nil || r.LastFailure.After(*r.LastSuccess)) {
			lastErr = r.LastError + " at " + r.LastFailure.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.KeyARN, r.Status, fmtTime(r.ValidTo), days, fmtTime(r.LastSuccess), lastErr)
		for _, rp := range r.Replicas {
			fmt.Fprintf(tw, "  replica %s\t%s\t%s\t%s\t\t\n", rp.KeyARN, orDash(rp.State, "-"), fmtTime(rp.ValidTo), daysLeft(rp.ValidTo, now))
		}
		if r.RotateEvery != "" || r.Materials > 1 {
			fmt.Fprintf(tw, "  materials %d, rotate every %s, last rotation %s\t\t\t\t\t\n", r.Materials, orDash(r.RotateEvery, "-"), fmtTime(r.LastRotation))
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d keys\n", len(rows))
	return exitOK
}

func daysOf(r statusRow) float64 {
	if r.DaysLeft == nil {
		return -1e9 // never imported: most urgent
	}
	return *r.DaysLeft
}

func runPlan(args []string, stdout, stderr io.Writer) int {
	store, asJSON, code, ok := reportFlags("plan", args, stderr)
	if !ok {
		return code
	}
	ctx := context.Background()
	// The planner the schedule runs, page by page; it changes nothing.
	p := &planner.Stage{Registry: store, PageSize: 1000}
	var items []planner.Item
	s := planner.State{}
	var err error
	for {
		s, err = p.Plan(ctx, s)
		if err != nil {
			fmt.Fprintln(stderr, "kms-reimport plan:", err)
			return exitFailure
		}
		items = append(items, s.Items...)
		if s.Next == "" {
			break
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"renew": items, "stats": s.Stats})
		return exitOK
	}
	fmt.Fprintf(stdout, "The next scheduled run would renew %d of %d keys (%d ineligible):\n", len(items), s.Stats.Scanned, s.Stats.Ineligible)
	for _, it := range items {
		what := ""
		switch {
		case it.Rotate:
			what = ", rotating to new material"
		case len(it.Regions) > 0:
			what = ", only in " + strings.Join(it.Regions, ", ")
		}
		fmt.Fprintf(stdout, "  %s  from %s, valid for %s%s\n", it.KeyID, it.SecretID, orDash(it.ValidFor, "no expiry"), what)
	}
	for _, k := range s.Stats.IneligibleKeys {
		fmt.Fprintf(stdout, "  skipped (ineligible): %s\n", k)
	}
	return exitOK
}

func replicaValidTos(e registry.Entry) []*time.Time {
	var out []*time.Time
	for _, r := range e.Replicas {
		out = append(out, r.ValidTo)
	}
	return out
}

func daysLeft(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(int(t.Sub(now).Hours()/24*10))/10)
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

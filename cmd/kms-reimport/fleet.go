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
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

func tableFlag(fs *flag.FlagSet) *string {
	return fs.String("table", os.Getenv("TABLE_NAME"), "DynamoDB table of the deployment (default $TABLE_NAME)")
}

func registryStore(ctx context.Context, table string) (*registry.Store, aws.Config, error) {
	if table == "" {
		return nil, aws.Config{}, errors.New("no table: pass --table or set TABLE_NAME (the stack output TableName)")
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, cfg, err
	}
	return &registry.Store{DB: clients.db(cfg), Table: table}, cfg, nil
}

// newFlags is a subcommand's flag set; its help (--help, on stdout) has
// the style of every subcommand: usage line, summary, flags, exit codes.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(helpOut, fs, usage) }
	return fs
}

func parse(fs *flag.FlagSet, args []string) (int, bool) {
	out, help := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard) // parse errors are reported below, in one line
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = help
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help()
			return exitOK, false
		}
		fmt.Fprintf(out, "kms-reimport %s: %v (see 'kms-reimport %s --help')\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "kms-reimport %s: unexpected argument %q: all inputs are flags (see 'kms-reimport %s --help')\n", fs.Name(), fs.Arg(0), fs.Name())
		return exitUsage, false
	}
	return 0, true
}

// statusRow is one key in `status`.
type statusRow struct {
	KeyARN string `json:"keyArn"`
	// Account is the key's account (its ARN's): the hub's own or a member.
	Account string `json:"account"`
	// Aliases are the key's alias names (status reads them from KMS).
	Aliases []string `json:"aliases"`
	// Status is active or blocked.
	Status  string     `json:"status"`
	ValidTo *time.Time `json:"validTo,omitempty"`
	// DaysLeft: days until the earliest ValidTo of the key and its
	// replicas, rounded down to a tenth; negative and Expired once past.
	DaysLeft    *float64   `json:"daysLeft,omitempty"`
	Expired     bool       `json:"expired,omitempty"`
	NextDue     *time.Time `json:"nextDue,omitempty"`
	LastSuccess *time.Time `json:"lastImport,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
	LastFailure *time.Time `json:"lastFailure,omitempty"`
	// Blocked says why a blocked key is blocked.
	Blocked *registry.Block `json:"blocked,omitempty"`
	Secret  string          `json:"secretId"`
	// Multi-Region keys: every replica's ValidTo; rotation policy.
	Replicas     []registry.Replica `json:"replicas"`
	RotateEvery  string             `json:"rotateEvery,omitempty"`
	LastRotation *time.Time         `json:"lastRotation,omitempty"`
	Materials    int                `json:"materials,omitempty"`
	// FromKMS: ValidTo, days left and the replicas' are what KMS says
	// (DescribeKey); false: the registry's (--no-kms, or KMS not read).
	FromKMS bool `json:"fromKms"`
	// KMSState is the key's state in KMS ("NotFound": KMS has no such key).
	KMSState string `json:"kmsState,omitempty"`
	// Drift: where KMS's expiry is earlier than the registry's.
	Drift []planner.Drift `json:"drift"`
	// Unreachable: the member role of the key's account can't be assumed
	// (the cause, naming the account and the role); KMS was not read.
	Unreachable string `json:"unreachable,omitempty"`
}

// statusReport is `status --json`.
type statusReport struct {
	GeneratedAt time.Time   `json:"generatedAt"`
	Keys        []statusRow `json:"keys"`
	Blocked     int         `json:"blocked"`
	Outlook     outlook     `json:"outlook"`
	// Check is the result of --check (null without it).
	Check *checkResult `json:"check"`
}

// outlook counts the KMS keys (registered keys and their replicas, each
// with its own ValidTo) by when their key material expires.
type outlook struct {
	Expired      int `json:"expired"`
	Within7Days  int `json:"within7Days"`
	Within30Days int `json:"within30Days"`
	Within90Days int `json:"within90Days"`
	// Next are the next expiries still ahead, soonest first.
	Next []expiry `json:"next"`
}

type expiry struct {
	registry.Expiry
	DaysLeft float64 `json:"daysLeft"`
}

// outlookNext is how many expiries the outlook lists.
const outlookNext = 10

// days rounds days left down to a tenth for display: never closer to
// safety than it is.
func days(validTo, now time.Time) float64 {
	return math.Floor(validTo.Sub(now).Hours()/24*10) / 10
}

// report builds `status` from the registry at now.
func report(all []registry.Entry, now time.Time) statusReport {
	rep := statusReport{GeneratedAt: now.UTC(), Keys: make([]statusRow, 0, len(all)), Outlook: outlook{Next: []expiry{}}}
	var ahead []expiry
	for _, e := range all {
		r := statusRow{KeyARN: e.KeyARN, Account: e.Account(), Status: e.Status, ValidTo: e.CurrentValidTo, NextDue: e.NextDue, LastSuccess: e.LastSuccess,
			LastError: e.LastError, LastFailure: e.LastFailure, Secret: e.SecretID,
			Replicas: append([]registry.Replica{}, e.Replicas...), RotateEvery: e.RotateEvery, LastRotation: e.LastRotation, Materials: e.Materials,
			Aliases: []string{}, Drift: []planner.Drift{}}
		if b := e.Block(); b != nil {
			r.Status, r.Blocked = registry.Blocked, b
			rep.Blocked++
		}
		if first := e.Earliest(); first != nil {
			d := days(first.ValidTo, now)
			r.DaysLeft, r.Expired = &d, !first.ValidTo.After(now)
		}
		for _, x := range e.Expiries() {
			left := x.ValidTo.Sub(now)
			switch {
			case left <= 0:
				rep.Outlook.Expired++
				continue
			case left <= 7*24*time.Hour:
				rep.Outlook.Within7Days++
				fallthrough
			case left <= 30*24*time.Hour:
				rep.Outlook.Within30Days++
				fallthrough
			case left <= 90*24*time.Hour:
				rep.Outlook.Within90Days++
			}
			ahead = append(ahead, expiry{Expiry: x, DaysLeft: days(x.ValidTo, now)})
		}
		rep.Keys = append(rep.Keys, r)
	}
	// Closest to expiry first: what needs attention.
	sort.SliceStable(rep.Keys, func(i, j int) bool { return daysOf(rep.Keys[i]) < daysOf(rep.Keys[j]) })
	sort.SliceStable(ahead, func(i, j int) bool { return ahead[i].ValidTo.Before(ahead[j].ValidTo) })
	rep.Outlook.Next = append(rep.Outlook.Next, ahead[:min(len(ahead), outlookNext)]...)
	return rep
}

// reportFlags parses the flags of the read-only reports (status, plan)
// and opens the registry.
func reportFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (*registry.Store, bool, int, bool) {
	table := tableFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parse(fs, args); !ok {
		return nil, false, code, false
	}
	store, _, err := registryStore(context.Background(), *table)
	if err != nil {
		fmt.Fprintf(stderr, "kms-reimport %s: %v\n", fs.Name(), err)
		return nil, false, exitUsage, false
	}
	return store, *asJSON, 0, true
}

// blockedView is a blocked key as status and plan print it.
type blockedView struct {
	KeyARN string
	registry.Block
	DaysLeft *float64
}

// printBlocked lists blocked keys: why, and how long each has left.
func printBlocked(w io.Writer, keys []blockedView) {
	if len(keys) == 0 {
		return
	}
	fmt.Fprintf(w, "\nBlocked keys (%d): planned again on every fleet run and renewed as soon as KMS allows; 'kms-reimport deregister' removes one.\n", len(keys))
	for _, k := range keys {
		left := "never imported"
		if k.DaysLeft != nil {
			left = fmtDays(k.DaysLeft)
			if *k.DaysLeft >= 0 {
				left += " days left"
			}
		}
		since := ""
		if k.LastFailure != nil {
			since = ", last failed " + k.LastFailure.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s: %s, %s%s\n", k.KeyARN, k.Error, left, since)
		if k.Cause != "" {
			fmt.Fprintf(w, "      %s\n", k.Cause)
		}
	}
}

func daysOf(r statusRow) float64 {
	if r.DaysLeft == nil {
		return -1e9 // never imported: most urgent
	}
	return *r.DaysLeft
}

// planEstimate is how long a fleet run takes at the configured KMS rate.
type planEstimate struct {
	// KMSRate is the requests per second the import-related KMS calls
	// are paced at (--kms-rate; the KmsRequestRate template parameter).
	KMSRate     float64 `json:"kmsRate"`
	KeysDue     int     `json:"keysDue"`
	ImportItems int     `json:"importItems"`
	KMSRequests int     `json:"kmsRequests"`
	Seconds     float64 `json:"seconds"`
	Duration    string  `json:"duration"`
	Note        string  `json:"note"`
}

const estimateNote = "an estimate: GetParametersForImport and ImportKeyMaterial once per import at the given rate; retries, import tokens fetched again and waits for rotations add to it"

func estimate(st planner.Stats, rate float64) planEstimate {
	e := planEstimate{KMSRate: rate, KeysDue: st.Due, ImportItems: st.ImportItems, KMSRequests: rotation.Requests(st.ImportItems), Note: estimateNote}
	d := rotation.Duration(e.KMSRequests, rate)
	e.Seconds, e.Duration = d.Seconds(), d.String()
	return e
}

// planReader reads keys from KMS for plan, each in its own Region
// (KMS_ENDPOINTS_BY_REGION as the functions read it).
func planReader(ctx context.Context, rate float64) (planner.KeyReader, error) {
	if !(rate > 0) || math.IsInf(rate, 0) {
		return nil, fmt.Errorf("--kms-read-rate %v: want a positive number of requests per second", rate)
	}
	cfg, err := awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	return clients.reader(cfg, kmsaccess.Members{})
}

func runPlan(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("plan", "plan [--json] [--kms-rate N] [--no-kms] [--detailed-exitcode]", stderr)
	noKMS := fs.Bool("no-kms", false, "plan from the registry alone, without reading each key's state from KMS (DescribeKey); the fleet run always reads KMS")
	readRate := fs.Float64("kms-read-rate", rotation.DefaultReadRate, "requests per second of the DescribeKey reads the plan makes (the planner's KMS_READ_RATE)")
	rate := fs.Float64("kms-rate", rotation.DefaultRequestRate, "requests per second of the import-related KMS calls (GetParametersForImport, ImportKeyMaterial) a run is paced at: the deployment's KmsRequestRate; the default is KMS's GetParametersForImport quota")
	detailed := fs.Bool("detailed-exitcode", false, "as in Terraform: exit 0 when nothing is due, 2 when some key is due, 1 on an error")
	store, asJSON, code, ok := reportFlags(fs, args, stderr)
	if !ok {
		if *detailed && code == exitUsage {
			return exitFailure // 2 means "something is due" here
		}
		return code
	}
	if !(*rate > 0) || math.IsInf(*rate, 0) {
		fmt.Fprintf(stderr, "kms-reimport plan: --kms-rate %v: want a positive number of requests per second\n", *rate)
		return exitUsage
	}
	var err error
	// The planner's per-key warnings are for the Lambda's log; here the
	// output says it all.
	ctx := telemetry.WithLogger(context.Background(), slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	// The planner the schedule runs, page by page; it changes nothing.
	p := &planner.Stage{Registry: store, PageSize: 1000, Report: true, AlarmDays: defaultExpiryAlarmDays}
	if !*noKMS {
		if p.KMS, err = planReader(ctx, *readRate); err != nil {
			fmt.Fprintln(stderr, "kms-reimport plan:", err)
			return exitUsage
		}
		p.Pace = &planner.Pacer{Rate: *readRate}
	}
	items, s, err := planAll(ctx, p)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport plan:", err)
		return exitFailure
	}
	est := estimate(s.Stats, *rate)
	if asJSON {
		if code := writeJSON(stdout, stderr, "plan", map[string]any{"renew": items, "stats": s.Stats, "estimate": est}); code != exitOK {
			return code
		}
		return planExit(*detailed, len(items))
	}
	printPlan(stdout, items, s.Stats, p, est)
	return planExit(*detailed, len(items))
}

// planAll runs the planner over every page of the registry.
func planAll(ctx context.Context, p *planner.Stage) ([]planner.Item, planner.State, error) {
	items := []planner.Item{}
	s := planner.State{}
	for {
		var err error
		if s, err = p.Plan(ctx, s); err != nil {
			return nil, s, err
		}
		items = append(items, s.Items...)
		if s.Next == "" {
			return items, s, nil
		}
	}
}

// printPlan is plan's text output.
func printPlan(stdout io.Writer, items []planner.Item, st planner.Stats, p *planner.Stage, est planEstimate) {
	blocked := map[string]string{}
	var views []blockedView
	for _, b := range st.BlockedKeys {
		blocked[b.KeyARN] = b.Error
		views = append(views, blockedView{KeyARN: b.KeyARN, Block: b.Block, DaysLeft: tenths(b.DaysLeft)})
	}
	fmt.Fprintf(stdout, "The next scheduled run would renew %d of %d keys (%d blocked):\n", len(items), st.Scanned, st.Blocked)
	for _, it := range items {
		what := ""
		switch {
		case it.Rotate:
			what = ", rotating to new material"
		case len(it.Regions) > 0:
			what = ", only in " + strings.Join(it.Regions, ", ")
		}
		if name, ok := blocked[it.KeyID]; ok {
			what += " (blocked: " + name + ")"
		}
		fmt.Fprintf(stdout, "  %s  from %s, valid for %s%s\n", it.KeyID, it.SecretID, orDash(it.ValidFor, "no expiry"), what)
	}
	printBlocked(stdout, views)
	if p.KMS != nil {
		fmt.Fprintf(stdout, "\nFrom KMS: %d keys expire earlier than the registry says (renewed by the run), %d within %g days, %d replicas gone, %d pending deletion, %d keys not read (planned from the registry).\n",
			st.Drifted, st.ExpiringSoon, p.AlarmDays, st.ReplicasGone, st.ReplicasLeaving, st.Unread)
	}
	fmt.Fprintf(stdout, "\nEstimated duration: about %s at %g KMS requests per second: %d keys due, %d imports, %d import-related KMS requests (%s).\n",
		est.Duration, est.KMSRate, est.KeysDue, est.ImportItems, est.KMSRequests, est.Note)
}

// exitDue is plan --detailed-exitcode's "something is due" (Terraform's
// "changes present").
const exitDue = 2

// planExit is plan's exit code once the plan is printed.
func planExit(detailed bool, due int) int {
	if detailed && due > 0 {
		return exitDue
	}
	return exitOK
}

// tenths rounds a planner's days left (hundredths) down to a tenth, as
// status shows them.
func tenths(d *float64) *float64 {
	if d == nil {
		return nil
	}
	v := math.Floor(*d*10) / 10
	return &v
}

func writeJSON(stdout, stderr io.Writer, name string, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "kms-reimport %s: %v\n", name, err)
		return exitFailure
	}
	return exitOK
}

func daysLeft(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := days(*t, now)
	return fmtDays(&d)
}

// fmtDays shows days left, or "expired".
func fmtDays(d *float64) string {
	switch {
	case d == nil:
		return "-"
	case *d < 0: // rounded down: any time past ValidTo
		return "expired"
	}
	return fmt.Sprintf("%.1f", *d)
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

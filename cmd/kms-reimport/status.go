package main

// status: the managed keys, filtered, with days left and ValidTo as KMS
// says (DescribeKey, as plan reads it; --no-kms: the registry's); with
// --check, a verdict for scripts: exit 1 when any key is blocked, expires
// within --days or has drifted from KMS (planner.Decide's drift: KMS's
// expiry earlier than the registry's, or the key gone), or its account's
// member role can't be assumed (unreachable). Each key is read through
// its own account (accounts.go): a member's through the member role.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// defaultExpiryAlarmDays is the template's ExpiryAlarmDays default (status
// --check's, and plan's count of the keys a run reports KeysExpiringSoon).
const defaultExpiryAlarmDays = 7

// Finding reasons of status --check.
const (
	findingBlocked  = "blocked"
	findingExpiring = "expiring"
	findingDrift    = "drift"
	// findingUnreachable: the member role of the key's account can't be
	// assumed, so KMS was not read.
	findingUnreachable = "unreachable"
)

// finding is one reason status --check fails.
type finding struct {
	Account string `json:"account"`
	KeyARN  string `json:"keyArn"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

// checkResult is status --check's verdict.
type checkResult struct {
	Days int  `json:"days"`
	OK   bool `json:"ok"`
	// DriftChecked: KMS was read (not --no-kms), so drift was checked.
	DriftChecked bool      `json:"driftChecked"`
	Findings     []finding `json:"findings"`
}

// check decides status --check from the report, in which days left,
// ValidTo and drift are what KMS says unless KMS was not read: a pure
// function over typed facts.
func check(rows []statusRow, days int, now time.Time) checkResult {
	res := checkResult{Days: days, Findings: []finding{}}
	limit := now.Add(time.Duration(days) * 24 * time.Hour)
	for _, r := range rows {
		res.DriftChecked = res.DriftChecked || r.FromKMS
		if r.Unreachable != "" {
			res.Findings = append(res.Findings, finding{r.Account, r.KeyARN, findingUnreachable, r.Unreachable})
		}
		if r.Blocked != nil {
			res.Findings = append(res.Findings, finding{r.Account, r.KeyARN, findingBlocked, r.Blocked.Error})
		}
		for _, x := range append([]registry.Replica{{KeyARN: r.KeyARN, ValidTo: r.ValidTo}}, r.Replicas...) {
			if x.ValidTo != nil && x.ValidTo.Before(limit) && !leaving(x.State) {
				res.Findings = append(res.Findings, finding{r.Account, x.KeyARN, findingExpiring, "ValidTo " + fmtTime(x.ValidTo)})
			}
		}
		if r.KMSState == kmsNotFound {
			res.Findings = append(res.Findings, finding{r.Account, r.KeyARN, findingDrift, "KMS does not find the key"})
		}
		for _, d := range r.Drift {
			res.Findings = append(res.Findings, finding{r.Account, d.KeyARN, findingDrift,
				fmt.Sprintf("registry ValidTo %s, KMS ValidTo %s (%s)", fmtTime(d.Expected), fmtTime(d.Actual), orDash(d.State, "-"))})
		}
	}
	res.OK = len(res.Findings) == 0
	return res
}

// leaving: a replica KMS is deleting, which the fleet run neither renews
// nor waits for (planner.Decide): its expiry is no finding.
func leaving(state string) bool {
	return state == string(kmstypes.KeyStatePendingDeletion) || state == string(kmstypes.KeyStatePendingReplicaDeletion)
}

// kmsNotFound is statusRow.KMSState for a key KMS does not have.
const kmsNotFound = "NotFound"

// kmsSays is e with the expiries KMS gives (planner.Gather's facts) in
// place of the registry's: the primary's and each replica's ValidTo and
// state; a replica KMS no longer has is left out. Unread keys keep the
// registry's.
func kmsSays(e registry.Entry, f planner.Facts, now time.Time) registry.Entry {
	if !f.Primary.Read || f.Primary.NotFound {
		return e
	}
	e.CurrentValidTo = kmsValidTo(f.Primary, e.CurrentValidTo, now)
	rs := []registry.Replica{}
	for i, r := range e.Replicas {
		if i < len(f.Replicas) {
			kf := f.Replicas[i]
			if kf.NotFound {
				continue
			}
			r.ValidTo = kmsValidTo(kf, r.ValidTo, now)
			r.State = orDash(kf.State, r.State)
		}
		rs = append(rs, r)
	}
	e.Replicas = rs
	return e
}

// kmsValidTo is when one KMS key's material expires as KMS says: a key
// back in PendingImport has expired (at the registry's ValidTo, or now).
func kmsValidTo(kf planner.KeyFacts, registered *time.Time, now time.Time) *time.Time {
	switch {
	case !kf.Read:
		return registered
	case kf.State == string(kmstypes.KeyStatePendingImport):
		if registered == nil || registered.Before(now) {
			return registered
		}
		return &now
	case kf.ExpirationModel == string(kmstypes.ExpirationModelTypeKeyMaterialDoesNotExpire):
		return nil
	}
	return kf.ValidTo
}

// statusFilter selects the keys status shows (--due: what the decision
// says, from KMS unless --no-kms).
type statusFilter struct {
	KeyARN, Account string
	Blocked, Due    bool
}

func (f statusFilter) keep(e registry.Entry) bool {
	if f.KeyARN != "" && e.KeyARN != f.KeyARN {
		return false
	}
	if f.Account != "" && e.Account() != f.Account {
		return false
	}
	return !f.Blocked || e.Block() != nil
}

// statusOptions are status's flags.
type statusOptions struct {
	table, key, stack  string
	json, check, noKMS bool
	days               int
	readRate           float64
	filter             statusFilter
	access             *memberAccess
}

func parseStatus(args []string, stderr io.Writer) (statusOptions, int, bool) {
	fs := newFlags("status", "status [--key KEY] [--blocked] [--due] [--check [--days N]] [--no-kms] [--json]", stderr)
	var o statusOptions
	table := tableFlag(fs)
	fs.StringVar(&o.key, "key", "", "only this key: key ARN, key id or alias (a member account's: its key ARN or alias ARN)")
	fs.StringVar(&o.filter.Account, "account", "", "only the keys of this `account` (12 digits): the hub's own or a member")
	o.access = memberFlags(fs)
	fs.BoolVar(&o.filter.Blocked, "blocked", false, "only blocked keys")
	fs.BoolVar(&o.filter.Due, "due", false, "only keys the next scheduled run would renew")
	fs.BoolVar(&o.check, "check", false, "exit 1 when any key shown is blocked, expires within --days or has drifted from KMS")
	fs.IntVar(&o.days, "days", 0, "with --check: the expiry horizon in days (default: --stack's ExpiryAlarmDays when --stack is given, else 7, the template's)")
	fs.StringVar(&o.stack, "stack", "", "with --check: CloudFormation stack to read ExpiryAlarmDays from")
	fs.BoolVar(&o.noKMS, "no-kms", false, "the registry alone: days left, ValidTo and --due without reading each key from KMS (DescribeKey, ListAliases), and no drift check")
	fs.Float64Var(&o.readRate, "kms-read-rate", rotation.DefaultReadRate, "requests per second of the DescribeKey reads (the planner's KMS_READ_RATE)")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	code, ok := parse(fs, args)
	o.table = *table
	if ok && o.table == "" {
		fmt.Fprintln(stderr, "kms-reimport status: no table: pass --table or set TABLE_NAME (the stack output TableName)")
		return o, exitUsage, false
	}
	if ok && o.filter.Account != "" && kmsaccess.AccountOf("arn:aws:kms:-:"+o.filter.Account+":key/-") == "" {
		fmt.Fprintf(stderr, "kms-reimport status: flag --account is %q: want a 12-digit account id\n", o.filter.Account)
		return o, exitUsage, false
	}
	if ok && o.days < 0 {
		fmt.Fprintf(stderr, "kms-reimport status: --days %d: want a positive number of days\n", o.days)
		return o, exitUsage, false
	}
	return o, code, ok
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseStatus(args, stderr)
	if !ok {
		return code
	}
	// The planner's per-key warnings (a key KMS did not answer for) are
	// for the Lambda's log; here the row says it (fromKms false).
	ctx := telemetry.WithLogger(context.Background(), slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	rep, err := statusOf(ctx, &o, time.Now(), stderr)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport status:", err)
		return exitFailure
	}
	if o.json {
		if code := writeJSON(stdout, stderr, "status", rep); code != exitOK {
			return code
		}
	} else {
		printStatus(stdout, rep, time.Now())
	}
	if rep.Check != nil && !rep.Check.OK {
		return exitFailure
	}
	return exitOK
}

// statusOf reads the registry, what KMS says of each key shown (as
// plan does: planner.Gather and planner.Decide, unless --no-kms) and KMS's
// aliases.
func statusOf(ctx context.Context, o *statusOptions, now time.Time, stderr io.Writer) (statusReport, error) {
	cfg, err := awsConfig(ctx)
	if err != nil {
		return statusReport{}, err
	}
	keys := clients.kms(cfg)
	all, err := (&registry.Store{DB: clients.db(cfg), Table: o.table}).All(ctx)
	if err != nil {
		return statusReport{}, err
	}
	acc, kr, err := statusReach(ctx, cfg, *o, all)
	if err != nil {
		return statusReport{}, err
	}
	if o.key != "" {
		if o.filter.KeyARN, err = resolveVia(ctx, keys, kr, o.key); err != nil {
			return statusReport{}, err
		}
	}
	pace := &planner.Pacer{Rate: o.readRate}
	var shown []registry.Entry
	decided := map[string]planner.Facts{}
	drift := map[string][]planner.Drift{}
	for _, e := range all {
		if !o.filter.keep(e) {
			continue
		}
		var f planner.Facts
		if kr != nil {
			if f, err = planner.Gather(ctx, kr, pace, e); err != nil {
				return statusReport{}, err
			}
		}
		d := planner.Decide(e, f, now)
		if o.filter.Due && !d.Due {
			continue
		}
		shown, decided[e.KeyARN], drift[e.KeyARN] = append(shown, kmsSays(e, f, now)), f, d.Drift
	}
	rep := report(shown, now)
	if acc != nil {
		addAliases(ctx, *acc, pace, rep.Keys, stderr)
	}
	for i := range rep.Keys {
		rep.Keys[i].annotate(decided[rep.Keys[i].KeyARN], drift[rep.Keys[i].KeyARN])
	}
	if !o.check {
		return rep, nil
	}
	days, err := checkDays(ctx, cfg, *o)
	if err != nil {
		return statusReport{}, err
	}
	c := check(rep.Keys, days, now)
	rep.Check = &c
	return rep, nil
}

// statusReach is how status reaches KMS (nil, nil with --no-kms): the
// accounts of the keys shown (and of --key) told apart from the caller's,
// and the KeyReader reading each key through its own account.
func statusReach(ctx context.Context, cfg aws.Config, o statusOptions, all []registry.Entry) (*keyAccounts, planner.KeyReader, error) {
	if o.noKMS {
		return nil, nil, nil
	}
	if !(o.readRate > 0) || math.IsInf(o.readRate, 0) {
		return nil, nil, fmt.Errorf("--kms-read-rate %v: want a positive number of requests per second", o.readRate)
	}
	c, err := callerOf(ctx, clients.caller(cfg))
	if err != nil {
		return nil, nil, err
	}
	keys := []string{o.key}
	for _, e := range all {
		if o.filter.keep(e) {
			keys = append(keys, e.KeyARN)
		}
	}
	a, err := reachAccounts(ctx, cfg, c, o.access.resolved(), keys)
	if err != nil {
		return nil, nil, err
	}
	kr, err := a.reader(cfg)
	if err != nil {
		return nil, nil, err
	}
	return &a, kr, nil
}

// resolveVia resolves --key: an alias ARN (or key id ARN form) of any
// account through kr, that account's clients; anything else as
// resolveKey does, in the caller's account.
func resolveVia(ctx context.Context, keys keyAPI, kr planner.KeyReader, key string) (string, error) {
	if kr == nil || keyARNPattern.MatchString(key) || kmsaccess.AccountOf(key) == "" {
		return resolveKey(ctx, keys, key)
	}
	md, err := kr.Describe(ctx, "", key)
	if err != nil {
		return "", err
	}
	return aws.ToString(md.Arn), nil
}

// annotate adds what KMS said of the row's key: its state, drift, or
// why its account could not be read.
func (r *statusRow) annotate(f planner.Facts, drift []planner.Drift) {
	r.Drift = append([]planner.Drift{}, drift...)
	r.Unreachable = f.Primary.RoleUnavailable
	if !f.Primary.Read {
		return
	}
	r.FromKMS, r.KMSState = true, f.Primary.State
	if f.Primary.NotFound {
		r.KMSState = kmsNotFound
	}
}

// checkDays is --days, or the stack's ExpiryAlarmDays, or the template's.
func checkDays(ctx context.Context, cfg aws.Config, o statusOptions) (int, error) {
	if o.days > 0 {
		return o.days, nil
	}
	if o.stack == "" {
		return defaultExpiryAlarmDays, nil
	}
	info, err := describeStack(ctx, clients.stack(cfg), o.stack)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(info.Parameters["ExpiryAlarmDays"])
	if err != nil || n <= 0 {
		return defaultExpiryAlarmDays, nil
	}
	return n, nil
}

// aliasPlace is an account and Region whose aliases status lists.
type aliasPlace struct{ account, region string }

// addAliases adds to each row its key's aliases: ListAliases once per
// account and Region of the keys shown, through that account's clients (a
// member's with the member role, as the stages reach it), each page paced
// in the budget of the account and Region as the DescribeKey reads are.
// Aliases are per account and Region, so a row takes those of its own
// (a multi-Region key's id is the same in every Region). An account that
// is down is not asked (its rows say why); a listing that fails is a
// warning on stderr naming the account and the Region, and the other
// rows keep theirs.
func addAliases(ctx context.Context, a keyAccounts, pace *planner.Pacer, rows []statusRow, stderr io.Writer) {
	rowsOf := map[aliasPlace][]int{}
	var places []aliasPlace
	for i, r := range rows {
		p := aliasPlace{kmsaccess.AccountOf(r.KeyARN), kmsaccess.RegionOf(r.KeyARN)}
		if p.account == "" || p.region == "" || a.down[p.account] != nil {
			continue
		}
		if _, seen := rowsOf[p]; !seen {
			places = append(places, p)
		}
		rowsOf[p] = append(rowsOf[p], i)
	}
	for _, p := range places {
		api := clients.aliases(a.clients, a.partition, p.account, p.region)
		byID, err := planner.AliasesByKey(ctx, api, pace, registry.Budget(rows[rowsOf[p][0]].KeyARN, ""))
		if err != nil {
			fmt.Fprintf(stderr, "kms-reimport status: warning: aliases of account %s in %s not shown: %v\n", p.account, p.region, err)
			continue
		}
		for _, i := range rowsOf[p] {
			rows[i].Aliases = append(rows[i].Aliases, byID[keyIDOf(rows[i].KeyARN)]...)
		}
	}
}

// keyIDOf is the key id at the end of a key ARN.
func keyIDOf(arn string) string {
	_, id, _ := strings.Cut(arn, ":key/")
	return id
}

func printStatus(stdout io.Writer, rep statusReport, now time.Time) {
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tKEY\tALIAS\tSECRET\tSTATUS\tVALID TO\tDAYS LEFT\tLAST IMPORT\tLAST ERROR")
	for _, r := range rep.Keys {
		lastErr := "-"
		if r.LastError != "" && r.LastFailure != nil && (r.LastSuccess == nil || r.LastFailure.After(*r.LastSuccess)) {
			lastErr = r.LastError + " at " + r.LastFailure.Format(time.RFC3339)
		}
		st := r.Status
		if r.Unreachable != "" {
			st = findingUnreachable
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(r.Account, "-"), r.KeyARN, orDash(strings.Join(r.Aliases, ","), "-"), orDash(r.Secret, "-"), st,
			fmtTime(r.ValidTo), fmtDays(r.DaysLeft), fmtTime(r.LastSuccess), lastErr)
		if r.Unreachable != "" {
			fmt.Fprintf(tw, "  unreachable: %s\t\t\t\t\t\t\t\t\n", r.Unreachable)
		}
		for _, d := range r.Drift {
			fmt.Fprintf(tw, "  drift %s\tregistry ValidTo %s, KMS ValidTo %s (%s)\t\t\t\t\t\t\n", d.KeyARN, fmtTime(d.Expected), fmtTime(d.Actual), orDash(d.State, "-"))
		}
		if r.KMSState == kmsNotFound {
			fmt.Fprintf(tw, "  KMS does not find the key\t\t\t\t\t\t\t\n")
		}
		for _, rp := range r.Replicas {
			fmt.Fprintf(tw, "  replica %s\t\t\t%s\t%s\t%s\t\t\n", rp.KeyARN, orDash(rp.State, "-"), fmtTime(rp.ValidTo), daysLeft(rp.ValidTo, now))
		}
		if r.RotateEvery != "" || r.Materials > 1 {
			fmt.Fprintf(tw, "  materials %d, rotate every %s, last rotation %s\t\t\t\t\t\t\t\n", r.Materials, orDash(r.RotateEvery, "-"), fmtTime(r.LastRotation))
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d keys, %d blocked\n", len(rep.Keys), rep.Blocked)
	if len(rep.Keys) > 0 && !rep.Keys[0].FromKMS {
		fmt.Fprintln(stdout, "(days left and ValidTo from the registry, not read from KMS)")
	}
	var blocked []blockedView
	for _, r := range rep.Keys {
		if r.Blocked != nil {
			blocked = append(blocked, blockedView{KeyARN: r.KeyARN, Block: *r.Blocked, DaysLeft: r.DaysLeft})
		}
	}
	printBlocked(stdout, blocked)
	printOutlook(stdout, rep.Outlook)
	if c := rep.Check; c != nil {
		printCheck(stdout, *c)
	}
}

func printOutlook(stdout io.Writer, o outlook) {
	fmt.Fprintf(stdout, "\nExpiry outlook (KMS keys, replicas included): %d expired, %d within 7 days, %d within 30 days, %d within 90 days\n",
		o.Expired, o.Within7Days, o.Within30Days, o.Within90Days)
	if len(o.Next) == 0 {
		return
	}
	fmt.Fprintf(stdout, "Next %d expiries:\n", len(o.Next))
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tVALID TO\tDAYS LEFT")
	for _, x := range o.Next {
		k := x.KeyARN
		if x.Primary != "" {
			k += " (replica)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.1f\n", k, fmtTime(&x.ValidTo), x.DaysLeft)
	}
	tw.Flush()
}

func printCheck(w io.Writer, c checkResult) {
	agree := "registry and KMS agree"
	if !c.DriftChecked {
		agree = "drift from KMS not checked"
	}
	if c.OK {
		fmt.Fprintf(w, "\nCheck: OK (nothing blocked, nothing expiring within %d days, %s)\n", c.Days, agree)
		return
	}
	fmt.Fprintf(w, "\nCheck: FAILED, %d finding(s) (expiry horizon %d days):\n", len(c.Findings), c.Days)
	for _, f := range c.Findings {
		fmt.Fprintf(w, "  %-11s account %s, %s: %s\n", f.Reason, orDash(f.Account, "-"), f.KeyARN, f.Detail)
	}
}

package main

// status: the managed keys, filtered; with --check, a verdict for scripts:
// exit 1 when any key is blocked, expires within --days or has drifted
// from KMS (the registry's ValidTo is not the one DescribeKey gives).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// defaultExpiryAlarmDays is the template's ExpiryAlarmDays default (status
// --check's, and plan's count of the keys a run reports KeysExpiringSoon).
const defaultExpiryAlarmDays = 7

// Finding reasons of status --check.
const (
	findingBlocked  = "blocked"
	findingExpiring = "expiring"
	findingDrift    = "drift"
)

// finding is one reason status --check fails.
type finding struct {
	KeyARN string `json:"keyArn"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// checkResult is status --check's verdict.
type checkResult struct {
	Days     int       `json:"days"`
	OK       bool      `json:"ok"`
	Findings []finding `json:"findings"`
}

// kmsView is what KMS says of a key, for the drift check.
type kmsView struct {
	Found   bool
	ValidTo *time.Time
}

// check decides status --check from the report and what KMS says: a pure
// function over typed facts.
func check(rows []statusRow, inKMS map[string]kmsView, days int, now time.Time) checkResult {
	res := checkResult{Days: days, Findings: []finding{}}
	limit := now.Add(time.Duration(days) * 24 * time.Hour)
	for _, r := range rows {
		if r.Blocked != nil {
			res.Findings = append(res.Findings, finding{r.KeyARN, findingBlocked, r.Blocked.Error})
		}
		for _, x := range append([]registry.Replica{{KeyARN: r.KeyARN, ValidTo: r.ValidTo}}, r.Replicas...) {
			if x.ValidTo != nil && x.ValidTo.Before(limit) {
				res.Findings = append(res.Findings, finding{x.KeyARN, findingExpiring, "ValidTo " + fmtTime(x.ValidTo)})
			}
		}
		k, asked := inKMS[r.KeyARN]
		switch {
		case !asked:
		case !k.Found:
			res.Findings = append(res.Findings, finding{r.KeyARN, findingDrift, "KMS does not find the key"})
		case !sameTime(k.ValidTo, r.ValidTo):
			res.Findings = append(res.Findings, finding{r.KeyARN, findingDrift, fmt.Sprintf("registry ValidTo %s, KMS ValidTo %s", fmtTime(r.ValidTo), fmtTime(k.ValidTo))})
		}
	}
	res.OK = len(res.Findings) == 0
	return res
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
}

// statusFilter selects the keys status shows.
type statusFilter struct {
	KeyARN       string
	Blocked, Due bool
	Now          time.Time
}

func (f statusFilter) keep(e registry.Entry) bool {
	if f.KeyARN != "" && e.KeyARN != f.KeyARN {
		return false
	}
	if f.Blocked && e.Block() == nil {
		return false
	}
	if f.Due {
		if due, _ := e.IsDue(f.Now); !due {
			return false
		}
	}
	return true
}

// statusOptions are status's flags.
type statusOptions struct {
	table, key, stack string
	json, check       bool
	days              int
	filter            statusFilter
}

func parseStatus(args []string, stderr io.Writer) (statusOptions, int, bool) {
	fs := newFlags("status", "status [--key KEY] [--blocked] [--due] [--check [--days N]] [--json]", stderr)
	var o statusOptions
	table := tableFlag(fs)
	fs.StringVar(&o.key, "key", "", "only this key: key ARN, key id or alias")
	fs.BoolVar(&o.filter.Blocked, "blocked", false, "only blocked keys")
	fs.BoolVar(&o.filter.Due, "due", false, "only keys the next scheduled run would renew")
	fs.BoolVar(&o.check, "check", false, "exit 1 when any key shown is blocked, expires within --days or has drifted from KMS")
	fs.IntVar(&o.days, "days", 0, "with --check: the expiry horizon in days (default: --stack's ExpiryAlarmDays when --stack is given, else 7, the template's)")
	fs.StringVar(&o.stack, "stack", "", "with --check: CloudFormation stack to read ExpiryAlarmDays from")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	code, ok := parse(fs, args)
	o.table = *table
	if ok && o.table == "" {
		fmt.Fprintln(stderr, "kms-reimport status: no table: pass --table or set TABLE_NAME (the stack output TableName)")
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
	ctx := context.Background()
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

// statusOf reads the registry, KMS's aliases and, with --check, every
// key's ValidTo.
func statusOf(ctx context.Context, o *statusOptions, now time.Time, stderr io.Writer) (statusReport, error) {
	cfg, err := awsConfig(ctx)
	if err != nil {
		return statusReport{}, err
	}
	keys := clients.kms(cfg)
	o.filter.Now = now
	if o.key != "" {
		if o.filter.KeyARN, err = resolveKey(ctx, keys, o.key); err != nil {
			return statusReport{}, err
		}
	}
	all, err := (&registry.Store{DB: clients.db(cfg), Table: o.table}).All(ctx)
	if err != nil {
		return statusReport{}, err
	}
	var shown []registry.Entry
	for _, e := range all {
		if o.filter.keep(e) {
			shown = append(shown, e)
		}
	}
	rep := report(shown, now)
	aliases, err := aliasesOf(ctx, keys)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport status: aliases not shown:", err)
	}
	for i := range rep.Keys {
		rep.Keys[i].Aliases = append(rep.Keys[i].Aliases, aliases[keyIDOf(rep.Keys[i].KeyARN)]...)
	}
	if !o.check {
		return rep, nil
	}
	days, err := checkDays(ctx, cfg, *o)
	if err != nil {
		return statusReport{}, err
	}
	inKMS := map[string]kmsView{}
	for _, r := range rep.Keys {
		if inKMS[r.KeyARN], err = describeValidTo(ctx, keys, r.KeyARN); err != nil {
			return statusReport{}, err
		}
	}
	c := check(rep.Keys, inKMS, days, now)
	rep.Check = &c
	return rep, nil
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

// describeValidTo is what KMS says of the key now.
func describeValidTo(ctx context.Context, api keyAPI, arn string) (kmsView, error) {
	out, err := api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	var nf interface{ ErrorCode() string }
	if errors.As(err, &nf) && nf.ErrorCode() == "NotFoundException" {
		return kmsView{}, nil
	}
	if err != nil {
		return kmsView{}, fmt.Errorf("DescribeKey %s: %w", arn, err)
	}
	return kmsView{Found: true, ValidTo: out.KeyMetadata.ValidTo}, nil
}

// aliasesOf maps key ids to their alias names.
func aliasesOf(ctx context.Context, api keyAPI) (map[string][]string, error) {
	m := map[string][]string{}
	p := kms.NewListAliasesPaginator(api, &kms.ListAliasesInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return m, err
		}
		for _, a := range out.Aliases {
			if a.TargetKeyId != nil {
				m[*a.TargetKeyId] = append(m[*a.TargetKeyId], aws.ToString(a.AliasName))
			}
		}
	}
	return m, nil
}

// keyIDOf is the key id at the end of a key ARN.
func keyIDOf(arn string) string {
	_, id, _ := strings.Cut(arn, ":key/")
	return id
}

func printStatus(stdout io.Writer, rep statusReport, now time.Time) {
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tALIAS\tSECRET\tSTATUS\tVALID TO\tDAYS LEFT\tLAST IMPORT\tLAST ERROR")
	for _, r := range rep.Keys {
		lastErr := "-"
		if r.LastError != "" && r.LastFailure != nil && (r.LastSuccess == nil || r.LastFailure.After(*r.LastSuccess)) {
			lastErr = r.LastError + " at " + r.LastFailure.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.KeyARN, orDash(strings.Join(r.Aliases, ","), "-"), orDash(r.Secret, "-"), r.Status,
			fmtTime(r.ValidTo), fmtDays(r.DaysLeft), fmtTime(r.LastSuccess), lastErr)
		for _, rp := range r.Replicas {
			fmt.Fprintf(tw, "  replica %s\t\t\t%s\t%s\t%s\t\t\n", rp.KeyARN, orDash(rp.State, "-"), fmtTime(rp.ValidTo), daysLeft(rp.ValidTo, now))
		}
		if r.RotateEvery != "" || r.Materials > 1 {
			fmt.Fprintf(tw, "  materials %d, rotate every %s, last rotation %s\t\t\t\t\t\t\t\n", r.Materials, orDash(r.RotateEvery, "-"), fmtTime(r.LastRotation))
		}
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d keys, %d blocked\n", len(rep.Keys), rep.Blocked)
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
	if c.OK {
		fmt.Fprintf(w, "\nCheck: OK (nothing blocked, nothing expiring within %d days, registry and KMS agree)\n", c.Days)
		return
	}
	fmt.Fprintf(w, "\nCheck: FAILED, %d finding(s) (expiry horizon %d days):\n", len(c.Findings), c.Days)
	for _, f := range c.Findings {
		fmt.Fprintf(w, "  %-8s %s: %s\n", f.Reason, f.KeyARN, f.Detail)
	}
}

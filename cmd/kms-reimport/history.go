package main

// history: a key's audit trail from the DynamoDB records (import records,
// failures among them, and token records: their metadata only; the list
// reads the projection that leaves out the token and wrapped material),
// and the evidence an auditor asks for: did the key have valid material at
// every moment of the period, from the chain of the import records'
// ValidTo, with each gap named.

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

// historyEvent is one line of a key's history.
type historyEvent struct {
	Time time.Time `json:"time"`
	// Kind is import, failure or token.
	Kind      string     `json:"kind"`
	Execution string     `json:"execution"`
	Outcome   string     `json:"outcome"`
	ValidTo   *time.Time `json:"validTo"`
	Error     string     `json:"error"`
	Detail    string     `json:"detail"`
}

// gap is a span of the period without valid key material on record.
type gap struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// evidence is whether the key had valid material over [From, To].
type evidence struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Covered bool      `json:"covered"`
	Gaps    []gap     `json:"gaps"`
}

// historyReport is `history --json`.
type historyReport struct {
	KeyARN string `json:"keyArn"`
	// Account is the key's account (its ARN's): the hub's own or a member.
	Account    string         `json:"account"`
	Since      time.Time      `json:"since"`
	Events     []historyEvent `json:"events"`
	Executions []string       `json:"executions"`
	Evidence   evidence       `json:"evidence"`
}

// span is a stretch of valid material: an import's [ImportedAt, ValidTo);
// To nil is no expiry.
type span struct {
	From time.Time
	To   *time.Time
}

// coverage gives the gaps of [from, to] that no span covers: a pure
// function over the import records' facts.
func coverage(spans []span, from, to time.Time) evidence {
	sort.Slice(spans, func(i, j int) bool { return spans[i].From.Before(spans[j].From) })
	ev := evidence{From: from.UTC(), To: to.UTC(), Gaps: []gap{}}
	at := from // everything before at is accounted for
	for _, s := range spans {
		if !at.Before(to) {
			break
		}
		if s.To != nil && !s.To.After(at) {
			continue // ended before the point reached
		}
		if s.From.After(at) {
			end := s.From
			if end.After(to) {
				end = to
			}
			ev.Gaps = append(ev.Gaps, gap{From: at.UTC(), To: end.UTC()})
			if !s.From.Before(to) {
				at = to
				break
			}
		}
		if s.To == nil {
			at = to
			break
		}
		at = *s.To
	}
	if at.Before(to) {
		ev.Gaps = append(ev.Gaps, gap{From: at.UTC(), To: to.UTC()})
	}
	ev.Covered = len(ev.Gaps) == 0
	return ev
}

// buildHistory assembles the report from a key's records at now.
func buildHistory(keyARN string, imports []records.Import, tokens []records.Token, since, now time.Time) historyReport {
	rep := historyReport{KeyARN: keyARN, Account: kmsaccess.AccountOf(keyARN), Since: since.UTC(), Events: []historyEvent{}, Executions: []string{}}
	seen := map[string]bool{}
	addExec := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			rep.Executions = append(rep.Executions, id)
		}
	}
	var spans []span
	for _, r := range imports {
		at := r.RecordedAt
		if r.ImportedAt != nil {
			at = *r.ImportedAt
		}
		if r.Outcome == records.ImportSucceeded {
			s := span{From: at, To: r.ValidTo}
			if r.ExpirationModel != flow.DoesNotExpire && r.ValidTo == nil {
				s.To = &at
			}
			spans = append(spans, s)
		}
		if r.ValidToBefore != nil && r.ValidToBefore.After(at) {
			// KMS said the material before this execution was valid
			// until then.
			spans = append(spans, span{From: at, To: r.ValidToBefore})
		}
		if at.Before(since) {
			continue
		}
		e := historyEvent{Time: at.UTC(), Kind: "import", Execution: r.ExecutionID, Outcome: r.Outcome, ValidTo: r.ValidTo,
			Detail: fmt.Sprintf("secret %s version %s, %s/%s, state %s -> %s", r.SecretID, orDash(r.SecretVersionID, "-"),
				orDash(r.WrappingAlgorithm, "-"), orDash(r.WrappingKeySpec, "-"), orDash(r.KeyStateBefore, "-"), orDash(r.KeyStateAfter, "-"))}
		if r.Outcome == records.ImportFailed {
			e.Kind, e.Error = "failure", r.ErrorName
			e.Detail = fmt.Sprintf("stage %s: %s", orDash(r.Stage, "-"), clipCause(r.Cause))
		}
		rep.Events = append(rep.Events, e)
		addExec(r.ExecutionID)
	}
	for _, t := range tokens {
		if t.IssuedAt.Before(since) {
			continue
		}
		// Metadata only: never the token itself.
		vt := t.ParametersValidTo
		rep.Events = append(rep.Events, historyEvent{Time: t.IssuedAt.UTC(), Kind: "token", Execution: t.ExecutionID, Outcome: t.Status, ValidTo: &vt,
			Detail: fmt.Sprintf("record %s, %s/%s%s", t.TokenID, t.WrappingAlgorithm, t.WrappingKeySpec, reason(t.StatusReason))})
		addExec(t.ExecutionID)
	}
	sort.SliceStable(rep.Events, func(i, j int) bool { return rep.Events[i].Time.Before(rep.Events[j].Time) })
	rep.Evidence = coverage(spans, since, now)
	return rep
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

var keyARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/`)

// resolveKey gives the key ARN of a key ARN, key id, alias name or alias
// ARN: as given when it is a key ARN (the records of a deleted key stay
// readable), else from DescribeKey.
func resolveKey(ctx context.Context, api keyAPI, key string) (string, error) {
	if keyARNPattern.MatchString(key) {
		return key, nil
	}
	md, err := kmsaccess.Describe(ctx, api, key)
	if err != nil {
		return "", err
	}
	return *md.Arn, nil
}

// parseSince reads --since: an RFC 3339 time, a date, or a duration back
// from now (720h, 90d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := flow.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time, a date (2026-01-31) or a duration back from now (720h, 90d)", s)
}

func runHistory(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("history", "history --key KEY [--since 90d] [--json|--csv] [--member-role NAME] [--external-id ID]", stderr)
	table := tableFlag(fs)
	key := fs.String("key", "", "key ARN, key id or alias (a member account's: its key ARN or alias ARN)")
	access := memberFlags(fs)
	since := fs.String("since", "365d", "start of the period: an RFC 3339 time, a date or a duration back from now")
	asJSON := fs.Bool("json", false, "print JSON")
	asCSV := fs.Bool("csv", false, "print the events as CSV")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	now := time.Now()
	from, err := parseSince(*since, now)
	switch {
	case err != nil:
	case *key == "":
		err = errors.New("--key is required")
	case *asJSON && *asCSV:
		err = errors.New("--json and --csv exclude each other")
	case *table == "":
		err = errors.New("no table: pass --table or set TABLE_NAME (the stack output TableName)")
	}
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport history:", err)
		return exitUsage
	}
	rep, err := loadHistory(context.Background(), *table, *key, access.resolved(), from, now)
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport history:", err)
		return exitFailure
	}
	switch {
	case *asJSON:
		return writeJSON(stdout, stderr, "history", rep)
	case *asCSV:
		return writeHistoryCSV(stdout, stderr, rep)
	}
	printHistory(stdout, rep)
	return exitOK
}

func loadHistory(ctx context.Context, table, key string, access memberAccess, from, now time.Time) (historyReport, error) {
	cfg, err := awsConfig(ctx)
	if err != nil {
		return historyReport{}, err
	}
	arn, err := historyKey(ctx, cfg, key, access)
	if err != nil {
		return historyReport{}, err
	}
	db := clients.db(cfg)
	imports, err := (&records.Imports{DB: db, Table: table}).List(ctx, arn)
	if err != nil {
		return historyReport{}, err
	}
	tokens, err := (&records.Tokens{DB: db, Table: table}).List(ctx, arn)
	if err != nil {
		return historyReport{}, err
	}
	return buildHistory(arn, imports, tokens, from, now), nil
}

// historyKey resolves --key: a key ARN as given (no KMS call: the records
// of a deleted key stay readable); an alias ARN of another account than
// the caller's through that account's member role; anything else in the
// caller's account.
func historyKey(ctx context.Context, cfg aws.Config, key string, access memberAccess) (string, error) {
	account := kmsaccess.AccountOf(key)
	if keyARNPattern.MatchString(key) || account == "" {
		return resolveKey(ctx, clients.kms(cfg), key)
	}
	c, err := callerOf(ctx, clients.caller(cfg))
	if err != nil {
		return "", err
	}
	if account == c.account {
		return resolveKey(ctx, clients.kms(cfg), key)
	}
	kr, err := accountReader(ctx, cfg, c, access, []string{key})
	if err != nil {
		return "", err
	}
	return resolveVia(ctx, clients.kms(cfg), kr, key)
}

func printHistory(w io.Writer, rep historyReport) {
	fmt.Fprintf(w, "History of %s (account %s) since %s: %d events, %d executions\n\n", rep.KeyARN, orDash(rep.Account, "-"), rep.Since.Format(time.RFC3339), len(rep.Events), len(rep.Executions))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tOUTCOME\tVALID TO\tERROR\tEXECUTION\tDETAIL")
	for _, e := range rep.Events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Kind, e.Outcome, fmtTime(e.ValidTo), orDash(e.Error, "-"), shortExec(e.Execution), e.Detail)
	}
	tw.Flush()
	ev := rep.Evidence
	fmt.Fprintf(w, "\nEvidence: from %s to %s ", ev.From.Format(time.RFC3339), ev.To.Format(time.RFC3339))
	if ev.Covered {
		fmt.Fprintln(w, "the key had valid imported material at all times (import records' ValidTo chain).")
		return
	}
	fmt.Fprintf(w, "the records show %d gap(s) without valid material:\n", len(ev.Gaps))
	for _, g := range ev.Gaps {
		fmt.Fprintf(w, "  GAP %s -> %s (%s)\n", g.From.Format(time.RFC3339), g.To.Format(time.RFC3339), g.To.Sub(g.From).Round(time.Second))
	}
}

// shortExec is an execution ARN's name (the part after the last colon).
func shortExec(id string) string {
	if i := strings.LastIndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return orDash(id, "-")
}

func writeHistoryCSV(stdout, stderr io.Writer, rep historyReport) int {
	cw := csv.NewWriter(stdout)
	_ = cw.Write([]string{"time", "kind", "outcome", "validTo", "error", "execution", "detail", "account"})
	for _, e := range rep.Events {
		vt := ""
		if e.ValidTo != nil {
			vt = e.ValidTo.UTC().Format(time.RFC3339)
		}
		_ = cw.Write([]string{e.Time.Format(time.RFC3339), e.Kind, e.Outcome, vt, e.Error, e.Execution, e.Detail, rep.Account})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		fmt.Fprintln(stderr, "kms-reimport history:", err)
		return exitFailure
	}
	return exitOK
}

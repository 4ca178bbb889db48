package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

// TestCommandTable: the subcommands are the one table in main.go; nothing
// registers itself from an init function.
func TestCommandTable(t *testing.T) {
	var names []string
	for _, c := range commands {
		if c.name == "" || c.summary == "" || c.run == nil {
			t.Errorf("incomplete subcommand %+v", c.name)
		}
		if slices.Contains(names, c.name) {
			t.Errorf("subcommand %s listed twice", c.name)
		}
		names = append(names, c.name)
		if got, ok := lookup(c.name); !ok || got.name != c.name {
			t.Errorf("lookup(%s) = %v, %v", c.name, got.name, ok)
		}
	}
	want := []string{"wrap", "register", "deregister", "status", "plan", "rotate", "selftest", "history"}
	if !slices.Equal(names, want) {
		t.Errorf("subcommands %v, want %v", names, want)
	}
	if _, ok := lookup("frobnicate"); ok {
		t.Error("lookup finds an unknown subcommand")
	}
	// Usage lists them in the table's order.
	var b bytes.Buffer
	usage(&b)
	last := -1
	for _, n := range names {
		i := strings.Index(b.String(), "\n  "+n+" ")
		if i <= last {
			t.Fatalf("usage does not list %s in the table's order:\n%s", n, b.String())
		}
		last = i
	}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range src.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "init" {
				t.Errorf("%s has an init function: add subcommands to the table in main.go", f)
			}
		}
	}
}

func TestReport(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d float64) *time.Time { v := now.Add(time.Duration(d * 24 * float64(time.Hour))); return &v }
	k := func(n int) string { return fmt.Sprintf("arn:aws:kms:eu-west-2:111122223333:key/k%02d", n) }
	replica := "arn:aws:kms:us-east-1:111122223333:key/mrk-3"
	entries := []registry.Entry{
		{KeyARN: k(1), Status: registry.Blocked, StatusReason: "KeyNotFound: KMS key not found", LastError: flow.KeyNotFound, CurrentValidTo: at(-1), LastFailure: at(-0.1)},
		{KeyARN: k(2), Status: registry.Active, CurrentValidTo: at(3)},
		{KeyARN: k(3), Status: registry.Active, CurrentValidTo: at(20), Replicas: []registry.Replica{{Region: "us-east-1", KeyARN: replica, ValidTo: at(5)}}},
		{KeyARN: k(4), Status: registry.Ineligible, StatusReason: "KeyNotEligible: key is in state Disabled", CurrentValidTo: at(60)},
		{KeyARN: k(5), Status: registry.Active, CurrentValidTo: at(100)},
		{KeyARN: k(6), Status: registry.Blocked, StatusReason: "KeyNotEligible: key has origin AWS_KMS", LastError: flow.KeyNotEligible},
	}
	for i := range 8 {
		entries = append(entries, registry.Entry{KeyARN: k(10 + i), Status: registry.Active, CurrentValidTo: at(120 + float64(i))})
	}
	rep := report(entries, now)

	o := rep.Outlook
	if o.Expired != 1 || o.Within7Days != 2 || o.Within30Days != 3 || o.Within90Days != 4 {
		t.Errorf("outlook %d expired, %d/%d/%d within 7/30/90 days; want 1, 2/3/4 (the replica counts, the expired key only as expired)", o.Expired, o.Within7Days, o.Within30Days, o.Within90Days)
	}
	var next []string
	for _, x := range o.Next {
		next = append(next, x.KeyARN)
	}
	wantNext := []string{k(2), replica, k(3), k(4), k(5), k(10), k(11), k(12), k(13), k(14)}
	if !slices.Equal(next, wantNext) {
		t.Errorf("next expiries %v, want %v", next, wantNext)
	}
	if o.Next[1].Primary != k(3) || o.Next[1].DaysLeft != 5 {
		t.Errorf("replica's expiry: %+v", o.Next[1])
	}

	if rep.Blocked != 3 {
		t.Errorf("%d blocked, want 3 (one written ineligible by an earlier version)", rep.Blocked)
	}
	rows := map[string]statusRow{}
	for _, r := range rep.Keys {
		rows[r.KeyARN] = r
	}
	if r := rows[k(1)]; r.Status != registry.Blocked || r.Blocked == nil || r.Blocked.Error != flow.KeyNotFound || r.Blocked.Cause != "KMS key not found" || !r.Expired || r.DaysLeft == nil || *r.DaysLeft != -1 {
		t.Errorf("blocked expired key: %+v %+v", r, r.Blocked)
	}
	if r := rows[k(4)]; r.Status != registry.Blocked || r.Blocked == nil || r.Blocked.Error != flow.KeyNotEligible || r.Expired {
		t.Errorf("key blocked by an earlier version: %+v", r)
	}
	if r := rows[k(3)]; r.DaysLeft == nil || *r.DaysLeft != 5 || r.Blocked != nil {
		t.Errorf("multi-Region key: days left %v, want the replica's 5", r.DaysLeft)
	}
	// Never imported first, then closest to expiry.
	if rep.Keys[0].KeyARN != k(6) || rep.Keys[1].KeyARN != k(1) {
		t.Errorf("order: %s, %s first", rep.Keys[0].KeyARN, rep.Keys[1].KeyARN)
	}
}

func TestEstimate(t *testing.T) {
	cases := []struct {
		items    int
		rate     float64
		seconds  float64
		duration string
	}{
		{0, 1, 0, "0s"},
		{3, 1, 6, "6s"},
		{3, 0.5, 12, "12s"},
		{3, 4, 2, "2s"}, // 1.5 s rounded up
		{1000, 1, 2000, "33m20s"},
	}
	for _, c := range cases {
		e := estimate(planner.Stats{Due: c.items, ImportItems: c.items}, c.rate)
		if e.KMSRequests != 2*c.items || e.Seconds != c.seconds || e.Duration != c.duration || !strings.Contains(e.Note, "estimate") {
			t.Errorf("%d imports at %g/s: %+v; want %d requests, %gs (%s)", c.items, c.rate, e, 2*c.items, c.seconds, c.duration)
		}
	}
}

// cliOn runs the command in process against DynamoDB Local.
func cliOn(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return o.String(), e.String(), code
}

// TestStatusAndPlanOnTheRegistry: what an operator sees of blocked keys,
// the expiry outlook and the duration estimate, from a registry on
// DynamoDB Local written as the product writes it.
func TestStatusAndPlanOnTheRegistry(t *testing.T) {
	db, table := ddblocal.Table(t)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": ddblocal.Endpoint(t), "AWS_REGION": "eu-west-2", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
		"TABLE_NAME": table,
	} {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	store := &registry.Store{DB: db, Table: table}
	now := time.Now().UTC()
	at := func(d float64) *time.Time {
		v := now.Add(time.Duration(d*24*float64(time.Hour)) + time.Hour).Truncate(time.Second)
		return &v
	}
	k := func(n int) string {
		return fmt.Sprintf("arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-%012d", n)
	}
	disabledCause := "key " + k(1) + " is in state Disabled; an import is done only in states PendingImport, Enabled (enable a Disabled key, cancel a pending deletion first)"
	for i, validTo := range []*time.Time{at(3), at(10), at(60), at(-2)} {
		if err := store.Put(ctx, registry.Entry{KeyARN: k(i + 1), SecretID: "s", ValidFor: "90d", RenewBefore: "14d"}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.RecordRenewal(ctx, registry.Renewal{KeyARN: k(i + 1), Execution: "x", At: now.Add(-24 * time.Hour), ValidTo: validTo}); err != nil {
			t.Fatal(err)
		}
	}
	for arn, f := range map[string]registry.Failure{
		k(1): {Execution: "e1", At: now, Error: flow.KeyNotEligible, Cause: disabledCause, Stage: "FetchParameters"},
		k(4): {Execution: "e4", At: now, Error: flow.KeyNotFound, Cause: "KMS key \"" + k(4) + "\" not found", Stage: "FetchParameters"},
	} {
		if err := store.RecordFailure(ctx, arn, f); err != nil {
			t.Fatal(err)
		}
	}

	out, errOut, code := cliOn(t, "status")
	for _, want := range []string{
		"4 keys, 2 blocked",
		"Blocked keys (2): planned again on every fleet run",
		k(1) + ": KeyNotEligible, 3.0 days left, last failed ",
		"      " + disabledCause + "\n",
		k(4) + ": KeyNotFound, expired, last failed ",
		"Expiry outlook (KMS keys, replicas included): 1 expired, 1 within 7 days, 2 within 30 days, 3 within 90 days",
		"Next 3 expiries:",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status: exit %d, output lacks %q:\n%s%s", code, want, out, errOut)
		}
	}

	out, _, code = cliOn(t, "status", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v:\n%s", code, err, out)
	}
	if rep.Blocked != 2 || rep.Outlook.Expired != 1 || rep.Outlook.Within7Days != 1 || rep.Outlook.Within30Days != 2 || rep.Outlook.Within90Days != 3 || len(rep.Outlook.Next) != 3 || rep.Outlook.Next[0].KeyARN != k(1) {
		t.Errorf("status --json: %+v", rep)
	}
	var raw map[string]map[string]any
	_ = json.Unmarshal([]byte(out), &raw)
	for _, f := range []string{"expired", "within7Days", "within30Days", "within90Days", "next"} {
		if _, ok := raw["outlook"][f]; !ok {
			t.Errorf("status --json: outlook.%s missing", f)
		}
	}
	for _, r := range rep.Keys {
		switch r.KeyARN {
		case k(1):
			if r.Blocked == nil || r.Blocked.Error != flow.KeyNotEligible || r.Blocked.Cause != disabledCause || r.DaysLeft == nil || *r.DaysLeft != 3 {
				t.Errorf("status --json, blocked key: %+v %+v", r, r.Blocked)
			}
		case k(4):
			if r.Blocked == nil || r.Blocked.Error != flow.KeyNotFound || !r.Expired {
				t.Errorf("status --json, blocked expired key: %+v %+v", r, r.Blocked)
			}
		}
	}

	out, _, code = cliOn(t, "plan")
	for _, want := range []string{
		"would renew 3 of 4 keys (2 blocked)",
		k(1) + "  from s, valid for 90d (blocked: KeyNotEligible)",
		k(2) + "  from s, valid for 90d\n",
		k(1) + ": KeyNotEligible, 3.0 days left",
		"      " + disabledCause + "\n",
		"Estimated duration: about 6s at 1 KMS requests per second: 3 keys due, 3 imports, 6 import-related KMS requests (an estimate:",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("plan: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	if out, _, _ := cliOn(t, "plan", "--kms-rate", "0.25"); !strings.Contains(out, "about 24s at 0.25 KMS requests per second") {
		t.Errorf("plan --kms-rate 0.25:\n%s", out)
	}
	out, _, code = cliOn(t, "plan", "--json", "--kms-rate", "2")
	var pj struct {
		Renew    []planner.Item `json:"renew"`
		Stats    planner.Stats  `json:"stats"`
		Estimate planEstimate   `json:"estimate"`
	}
	if err := json.Unmarshal([]byte(out), &pj); code != 0 || err != nil {
		t.Fatalf("plan --json: exit %d, %v:\n%s", code, err, out)
	}
	if len(pj.Renew) != 3 || pj.Stats.Blocked != 2 || len(pj.Stats.BlockedKeys) != 2 || pj.Estimate.KMSRate != 2 || pj.Estimate.KMSRequests != 6 || pj.Estimate.Seconds != 3 || !strings.Contains(pj.Estimate.Note, "estimate") {
		t.Errorf("plan --json: %+v", pj)
	}
	for _, b := range pj.Stats.BlockedKeys {
		if b.KeyARN == k(1) && (b.Cause != disabledCause || b.DaysLeft == nil || math.Floor(*b.DaysLeft) != 3) {
			t.Errorf("plan --json, blocked key: %+v", b)
		}
	}
	for _, bad := range []string{"0", "-1", "NaN", "+Inf", "fast"} {
		_, errOut, code := cliOn(t, "plan", "--kms-rate", bad)
		if code != exitUsage || !strings.Contains(errOut, "kms-rate") {
			t.Errorf("plan --kms-rate %s: exit %d, %q; want 2 naming the flag", bad, code, errOut)
		}
	}

	// Deregistering is the one way out of the registry.
	if _, errOut, code := cliOn(t, "deregister", "--key", k(4)); code != 0 {
		t.Fatalf("deregister: %d %s", code, errOut)
	}
	if out, _, _ := cliOn(t, "status"); strings.Contains(out, k(4)) || !strings.Contains(out, "3 keys, 1 blocked") {
		t.Errorf("status after deregister:\n%s", out)
	}
}

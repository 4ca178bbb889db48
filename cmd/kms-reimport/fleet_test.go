package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
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
	want := []string{"wrap", "register", "adopt", "deregister", "status", "plan", "rotate", "selftest", "history"}
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

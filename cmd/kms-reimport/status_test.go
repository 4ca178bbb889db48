package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// TestCheck: status --check finds blocked keys, keys (or replicas)
// expiring within the horizon, and drift from KMS; nothing else.
func TestCheck(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	far, near := now.Add(60*24*time.Hour), now.Add(3*24*time.Hour)
	cases := []struct {
		name  string
		row   statusRow
		found []string
	}{
		{"healthy", statusRow{KeyARN: "k", ValidTo: &far, FromKMS: true}, nil},
		{"not read from KMS", statusRow{KeyARN: "k", ValidTo: &far}, nil},
		{"blocked", statusRow{KeyARN: "k", ValidTo: &far, Blocked: &registry.Block{Error: "KeyNotFound"}}, []string{findingBlocked}},
		{"expiring", statusRow{KeyARN: "k", ValidTo: &near}, []string{findingExpiring}},
		{"replica expiring", statusRow{KeyARN: "k", ValidTo: &far, Replicas: []registry.Replica{{KeyARN: "r", ValidTo: &near}}}, []string{findingExpiring}},
		{"replica pending deletion expiring", statusRow{KeyARN: "k", ValidTo: &far, Replicas: []registry.Replica{{KeyARN: "r", ValidTo: &near, State: "PendingDeletion"}}}, nil},
		{"drift", statusRow{KeyARN: "k", ValidTo: &far, FromKMS: true, Drift: []planner.Drift{{KeyARN: "k", Expected: &far, State: "PendingImport"}}}, []string{findingDrift}},
		{"drift: key gone", statusRow{KeyARN: "k", ValidTo: &far, FromKMS: true, KMSState: kmsNotFound}, []string{findingDrift}},
		{"never imported", statusRow{KeyARN: "k", FromKMS: true}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := check([]statusRow{c.row}, 7, now)
			var got []string
			for _, f := range res.Findings {
				got = append(got, f.Reason)
			}
			if strings.Join(got, ",") != strings.Join(c.found, ",") || res.OK != (len(c.found) == 0) || res.Findings == nil || res.DriftChecked != c.row.FromKMS {
				t.Fatalf("findings %v (ok %v, drift checked %v), want %v", got, res.OK, res.DriftChecked, c.found)
			}
		})
	}
}

// TestKMSSays: status's expiries are KMS's where KMS answered: its
// ValidTo, a key back in PendingImport expired, a key whose material does
// not expire without one, a gone replica left out, an unread key the
// registry's.
func TestKMSSays(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	reg, kmsTo, past := now.Add(60*24*time.Hour), now.Add(5*24*time.Hour), now.Add(-time.Hour)
	e := registry.Entry{KeyARN: "k", CurrentValidTo: &reg, Replicas: []registry.Replica{{KeyARN: "r1", ValidTo: &reg}, {KeyARN: "r2", ValidTo: &reg}}}
	read := func(st string, v *time.Time) planner.KeyFacts {
		return planner.KeyFacts{Read: true, State: st, ValidTo: v}
	}
	cases := []struct {
		name     string
		entry    registry.Entry
		f        planner.Facts
		primary  *time.Time
		replicas int
	}{
		{"KMS's ValidTo", e, planner.Facts{Primary: read("Enabled", &kmsTo), Replicas: []planner.KeyFacts{read("Enabled", &reg), read("Enabled", &reg)}}, &kmsTo, 2},
		{"not read", e, planner.Facts{}, &reg, 2},
		{"primary gone: the registry's", e, planner.Facts{Primary: planner.KeyFacts{Read: true, NotFound: true}}, &reg, 2},
		{"PendingImport: expired now", e, planner.Facts{Primary: read("PendingImport", nil)}, &now, 2},
		{"PendingImport after ValidTo: then", registry.Entry{KeyARN: "k", CurrentValidTo: &past}, planner.Facts{Primary: read("PendingImport", nil)}, &past, 0},
		{"does not expire", e, planner.Facts{Primary: planner.KeyFacts{Read: true, State: "Enabled", ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}}, nil, 2},
		{"replica gone", e, planner.Facts{Primary: read("Enabled", &reg), Replicas: []planner.KeyFacts{{Read: true, NotFound: true}, read("Enabled", &kmsTo)}}, &reg, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := kmsSays(c.entry, c.f, now)
			if !sameTime(got.CurrentValidTo, c.primary) || len(got.Replicas) != c.replicas {
				t.Fatalf("ValidTo %s, %d replicas; want %s, %d", fmtTime(got.CurrentValidTo), len(got.Replicas), fmtTime(c.primary), c.replicas)
			}
		})
	}
	if got := kmsSays(e, planner.Facts{Primary: read("Enabled", &reg), Replicas: []planner.KeyFacts{{Read: true, NotFound: true}, read("Enabled", &kmsTo)}}, now); got.Replicas[0].KeyARN != "r2" || !sameTime(got.Replicas[0].ValidTo, &kmsTo) {
		t.Errorf("replicas %+v: want r2 with KMS's ValidTo", got.Replicas)
	}
	if e.CurrentValidTo != &reg || len(e.Replicas) != 2 {
		t.Error("kmsSays changed the registry entry it was given")
	}
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

const otherKey = "arn:aws:kms:eu-west-2:111122223333:key/aaaaaaaa-12ab-34cd-56ef-1234567890ab"

func registerFake(t *testing.T, f *fakes, e registry.Entry) {
	f.db.put(t, registry.PK, "KEY#"+e.KeyARN, e)
}

// TestStatus: alias and secret columns, the filters, --check's exit code
// and JSON with arrays that are [] when empty.
func TestStatus(t *testing.T) {
	f := withFakes(t)
	now := time.Now().UTC().Truncate(time.Second)
	far, near := now.Add(60*24*time.Hour), now.Add(2*24*time.Hour)
	f.kms.addKey(testKey, &far, "alias/payments")
	f.kms.addKey(otherKey, &near)
	registerFake(t, f, registry.Entry{KeyARN: testKey, SecretID: "kms-reimport/payments", Status: registry.Active, CurrentValidTo: &far, LastSuccess: &now, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h"}})
	registerFake(t, f, registry.Entry{KeyARN: otherKey, SecretID: "kms-reimport/other", Status: registry.Active, CurrentValidTo: &near, LastSuccess: &now, Policy: flow.Policy{ValidFor: "720h", RenewBefore: "336h"}})

	out, errOut, code := cliRun("status", "--table", "t")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{"ALIAS", "SECRET", "alias/payments", "kms-reimport/payments", "kms-reimport/other", "2 keys"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
	out, _, _ = cliRun("status", "--table", "t", "--key", "alias/payments")
	if !strings.Contains(out, "1 keys") || strings.Contains(out, "kms-reimport/other") {
		t.Errorf("--key alias/payments:\n%s", out)
	}
	out, _, _ = cliRun("status", "--table", "t", "--due")
	if !strings.Contains(out, "1 keys") || !strings.Contains(out, "kms-reimport/other") {
		t.Errorf("--due shows other keys than the one due:\n%s", out)
	}
	out, _, _ = cliRun("status", "--table", "t", "--blocked", "--json")
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if keys, ok := rep["keys"].([]any); !ok || len(keys) != 0 {
		t.Errorf("--blocked --json keys = %#v, want []", rep["keys"])
	}
	if next, ok := rep["outlook"].(map[string]any)["next"].([]any); !ok || len(next) != 0 {
		t.Errorf("outlook.next = %#v, want []", rep["outlook"])
	}

	// --check: the key expiring in 2 days fails a 7-day check, not a 1-day one.
	out, _, code = cliRun("status", "--table", "t", "--check")
	if code != exitFailure || !strings.Contains(out, "expiring") || !strings.Contains(out, otherKey) {
		t.Errorf("--check: exit %d:\n%s", code, out)
	}
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1", "--json")
	var checked statusReport
	if err := json.Unmarshal([]byte(out), &checked); err != nil || code != exitOK || checked.Check == nil || !checked.Check.OK || checked.Check.Findings == nil {
		t.Errorf("--check --days 1: exit %d, %v:\n%s", code, err, out)
	}
	for _, k := range checked.Keys {
		if k.Replicas == nil || k.Aliases == nil {
			t.Errorf("key %s: replicas or aliases null, want []", k.KeyARN)
		}
	}
	// Drift: KMS's ValidTo is earlier than the registry's. Days left are
	// KMS's; --no-kms shows the registry's and checks no drift.
	f.kms.keys[testKey].ValidTo = &near
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1", "--key", testKey)
	if code != exitFailure || !strings.Contains(out, "drift") {
		t.Errorf("drift: exit %d:\n%s", code, out)
	}
	out, _, _ = cliRun("status", "--table", "t", "--key", testKey, "--json")
	var fromKMS statusReport
	if err := json.Unmarshal([]byte(out), &fromKMS); err != nil || len(fromKMS.Keys) != 1 || !fromKMS.Keys[0].FromKMS ||
		!sameTime(fromKMS.Keys[0].ValidTo, &near) || len(fromKMS.Keys[0].Drift) != 1 {
		t.Errorf("status --json with KMS's ValidTo earlier: %v\n%s", err, out)
	}
	out, _, _ = cliRun("status", "--table", "t", "--due", "--key", testKey)
	if !strings.Contains(out, "1 keys") {
		t.Errorf("--due: the key KMS says expires in 2 days is not shown:\n%s", out)
	}
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1", "--key", testKey, "--no-kms")
	if code != exitOK || !strings.Contains(out, "drift from KMS not checked") || !strings.Contains(out, "from the registry") {
		t.Errorf("--no-kms: exit %d:\n%s", code, out)
	}
	// The days default from the stack's ExpiryAlarmDays.
	f.kms.keys[testKey].ValidTo = &far
	f.stack.outputs["TableName"], f.stack.params["ExpiryAlarmDays"] = "t", "1"
	if out, _, code = cliRun("status", "--table", "t", "--check", "--stack", "kms-reimport"); code != exitOK {
		t.Errorf("--check with the stack's ExpiryAlarmDays 1: exit %d:\n%s", code, out)
	}
	if _, errOut, code := cliRun("status", "--table", "t", "--days", "-1"); code != exitUsage || errOut == "" {
		t.Errorf("--days -1: exit %d", code)
	}
}

// TestPlanDetailedExitcode: 0 nothing due, 2 something due, 1 an error
// (never 2, which means "due" here).
func TestPlanDetailedExitcode(t *testing.T) {
	f := withFakes(t)
	now := time.Now().UTC()
	far := now.Add(60 * 24 * time.Hour)
	registerFake(t, f, registry.Entry{KeyARN: testKey, SecretID: "s", Status: registry.Active, CurrentValidTo: &far, LastSuccess: &now, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h"}})
	if out, errOut, code := cliRun("plan", "--no-kms", "--table", "t", "--detailed-exitcode"); code != exitOK {
		t.Fatalf("nothing due: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := cliRun("plan", "--no-kms", "--table", "t"); code != exitOK {
		t.Fatalf("without the flag: exit %d", code)
	}
	registerFake(t, f, registry.Entry{KeyARN: otherKey, SecretID: "s", Status: registry.Active, Policy: flow.Policy{ValidFor: "720h", RenewBefore: "336h"}})
	if out, errOut, code := cliRun("plan", "--no-kms", "--table", "t", "--detailed-exitcode"); code != exitDue {
		t.Fatalf("a key due: exit %d\n%s%s", code, out, errOut)
	}
	if _, _, code := cliRun("plan", "--no-kms", "--table", "t", "--detailed-exitcode", "--json"); code != exitDue {
		t.Fatalf("a key due, --json: exit %d", code)
	}
	if _, _, code := cliRun("plan", "--no-kms", "--table", "t"); code != exitOK {
		t.Fatalf("a key due without the flag: exit %d", code)
	}
	if _, _, code := cliRun("plan", "--table", "", "--detailed-exitcode"); code != exitFailure {
		t.Fatalf("no table with --detailed-exitcode: exit %d, want 1", code)
	}
}

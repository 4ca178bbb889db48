package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

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
		if err := store.Put(ctx, registry.Entry{KeyARN: k(i + 1), SecretID: "s", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}}); err != nil {
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

	out, errOut, code := cliOn(t, "status", "--no-kms")
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

	out, _, code = cliOn(t, "status", "--no-kms", "--json")
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

	out, _, code = cliOn(t, "plan", "--no-kms")
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
	if out, _, _ := cliOn(t, "plan", "--no-kms", "--kms-rate", "0.25"); !strings.Contains(out, "about 24s at 0.25 KMS requests per second") {
		t.Errorf("plan --kms-rate 0.25:\n%s", out)
	}
	out, _, code = cliOn(t, "plan", "--no-kms", "--json", "--kms-rate", "2")
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
		_, errOut, code := cliOn(t, "plan", "--no-kms", "--kms-rate", bad)
		if code != exitUsage || !strings.Contains(errOut, "kms-rate") {
			t.Errorf("plan --kms-rate %s: exit %d, %q; want 2 naming the flag", bad, code, errOut)
		}
	}

	// Deregistering is the one way out of the registry.
	if _, errOut, code := cliOn(t, "deregister", "--key", k(4)); code != 0 {
		t.Fatalf("deregister: %d %s", code, errOut)
	}
	if out, _, _ := cliOn(t, "status", "--no-kms"); strings.Contains(out, k(4)) || !strings.Contains(out, "3 keys, 1 blocked") {
		t.Errorf("status after deregister:\n%s", out)
	}
}

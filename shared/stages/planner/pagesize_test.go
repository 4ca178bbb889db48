package planner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// awsRegions: a full Region list (commercial, China, GovCloud, ISO) of
// the longest names, for a multi-Region key replicated everywhere.
var awsRegions = []string{
	"us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2",
	"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
	"ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2",
	"eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1", "il-central-1", "me-south-1",
	"me-central-1", "mx-central-1", "sa-east-1", "cn-north-1", "cn-northwest-1", "us-gov-east-1", "us-gov-west-1",
	"us-iso-east-1", "us-iso-west-1", "us-isob-east-1", "us-isof-south-1", "eu-isoe-west-1",
}

// worstKey registers, as the product does, the registry entry whose page
// item and blocked-key listing are the largest the planner can write: the
// longest key identifier (an alias ARN in the longest partition, a
// 250-character alias name), a secret ARN with a 512-character name, the
// longest version stages, a rotation policy, a replica in every other
// Region of which all but one are due (so the item lists the Regions),
// and a blocking failure whose cause is clipped at MaxCauseLen characters
// that JSON escapes to 6 bytes each.
func worstKey(t *testing.T, f *fleet, n int) string {
	t.Helper()
	name := fmt.Sprintf("%04d", n) + strings.Repeat("a/b_c-", 41)
	arn := "arn:aws-iso-b:kms:us-isob-east-1:111122223333:alias/" + name[:250]
	secret := "arn:aws-iso-b:secretsmanager:us-isob-east-1:111122223333:secret:" + strings.Repeat("s/+=.@-", 74)[:512] + "-AbCdEf"
	stage := strings.Repeat("S_.@-", 52)[:256]
	e := registry.Entry{KeyARN: arn, SecretID: secret, Policy: flow.Policy{SecretVersionStage: stage, ValidFor: "8760h", RenewBefore: "240h", WrappingAlgorithm: "RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec: "RSA_4096", RotateEvery: "87600h", NewMaterialStage: stage}}
	var reps []registry.Replica
	for i, r := range awsRegions {
		if r == "us-isob-east-1" {
			continue
		}
		validTo := f.days(1) // due
		if i == 0 {
			validTo = f.days(300) // one not due: the item names the others
		}
		reps = append(reps, registry.Replica{Region: r, KeyARN: "arn:aws-iso-b:kms:" + r + ":111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab", ValidTo: validTo})
	}
	// Registered and renewed as the verify stage does: one write.
	f.renew(registry.Renewal{KeyARN: arn, Execution: "exec-" + strings.Repeat("x", 80), At: f.now.Add(-time.Hour),
		ValidTo: f.days(300), Replicas: reps, Materials: 10, Register: &e.Policy, SecretID: e.SecretID})
	f.fail(arn, flow.KeyNotFound, "KMS key "+strings.Repeat("<", 2*MaxCauseLen), true)
	return arn
}

// TestPagesBoundedInBytes: a fleet of the largest entries the registry
// can hold, planned page by page as the fleet state machine does. Every
// page, encoded as Step Functions receives it, stays within MaxPageBytes
// (half the 256 KiB payload limit: a larger state is
// States.DataLimitExceeded, which no Catch catches); the pages together
// plan every key exactly once, count it once, and list at most
// MaxBlockedKeys blocked keys. Without the bound one registry page of
// these entries would be over the limit.
func TestPagesBoundedInBytes(t *testing.T) {
	if MaxPageBytes > 256<<10/2 {
		t.Fatalf("MaxPageBytes %d: want at most half of 256 KiB", MaxPageBytes)
	}
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	// 150 of them: one registry page of these (the planner reads 400
	// entries, DynamoDB at most 1 MB) is far over 256 KiB of items.
	const n = 150
	first := worstKey(t, f, 0)
	// The other keys: copies of the first entry, each of its own account
	// (the worst case for the page's groups and the run's per-account
	// numbers: one group and one account entry per key).
	e := f.s.entries["KEY#"+first]
	for i := 1; i < n; i++ {
		c := e
		arn := strings.Replace(first, "/0000", fmt.Sprintf("/%04d", i), 1)
		parts := strings.SplitN(arn, ":", 6)
		parts[4] = fmt.Sprintf("%012d", 100000000000+i)
		c.KeyARN = strings.Join(parts, ":")
		c.SK = strings.Replace(e.SK, first, c.KeyARN, 1)
		f.s.entries[c.SK] = c
	}
	p := &Stage{Registry: f.s, PageSize: 400, Now: func() time.Time { return now }}
	ctx := telemetry.WithLogger(context.Background(), slog.New(slog.NewJSONHandler(io.Discard, nil)))

	var s State
	seen := map[string]int{}
	unbounded := 0
	for pages := 1; ; pages++ {
		var err error
		if s, err = p.Plan(ctx, s); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxPageBytes {
			t.Errorf("page %d: %d bytes, over MaxPageBytes %d", pages, len(b), MaxPageBytes)
		}
		t.Logf("page %d: %d items, %d bytes, %d blocked keys listed", pages, len(s.Items), len(b), len(s.Stats.BlockedKeys))
		for _, it := range s.Items {
			seen[it.KeyID]++
			j, _ := json.Marshal(it)
			unbounded += len(j) + 1
			if len(it.Regions) != len(awsRegions)-2 {
				t.Fatalf("item %s: %d Regions, want the worst case's %d", it.KeyID, len(it.Regions), len(awsRegions)-2)
			}
		}
		if s.Next == "" {
			break
		}
		if pages > n {
			t.Fatal("the pages never end")
		}
	}
	if len(seen) != n {
		t.Errorf("%d keys planned, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s planned %d times", k, c)
		}
	}
	if st := s.Stats; st.Scanned != n || st.Due != n || st.Blocked != n || len(st.BlockedKeys) != MaxBlockedKeys || st.Pages < 2 {
		t.Errorf("stats: scanned %d due %d blocked %d listed %d pages %d", st.Scanned, st.Due, st.Blocked, len(st.BlockedKeys), st.Pages)
	}
	if unbounded <= 256<<10 {
		t.Errorf("the items of one registry page take %d bytes: this fleet does not reach the 256 KiB limit, so the test proves nothing", unbounded)
	}
}

package planner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

func arn(n int) string {
	return fmt.Sprintf("arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-%012d", n)
}

const replicaARN = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"

// memRegistry is the registry in memory, paged by sort key as
// registry.Store.List pages it.
type memRegistry struct{ entries map[string]registry.Entry }

func (m *memRegistry) List(_ context.Context, next string, limit int32) (registry.Page, error) {
	var sks []string
	for sk := range m.entries {
		if sk > next {
			sks = append(sks, sk)
		}
	}
	slices.Sort(sks)
	var p registry.Page
	for i, sk := range sks {
		if i == int(limit) {
			p.Next = sks[i-1]
			break
		}
		p.Entries = append(p.Entries, m.entries[sk])
	}
	return p, nil
}

// fleet registers keys the way the product does (registry.Renewed, as the
// verify stage's registration and renewal) and notes failures as
// record-failure leaves them.
type fleet struct {
	t   *testing.T
	s   *memRegistry
	now time.Time
}

func newFleet(t *testing.T, now time.Time) *fleet {
	return &fleet{t: t, s: &memRegistry{entries: map[string]registry.Entry{}}, now: now}
}

func (f *fleet) days(d float64) *time.Time {
	v := f.now.Add(time.Duration(d * 24 * float64(time.Hour)))
	return &v
}

// key registers arn, imported until validTo (nil: never imported).
func (f *fleet) key(arn string, validTo *time.Time) {
	f.t.Helper()
	f.renew(registry.Renewal{KeyARN: arn, Execution: "exec-import", At: f.now.Add(-time.Hour), ValidTo: validTo,
		Register: &flow.Policy{ValidFor: "90d", RenewBefore: "14d"}, SecretID: "s"})
	if validTo == nil {
		e := f.s.entries["KEY#"+arn]
		e.LastSuccess, e.LastExecution, e.NextDue = nil, "", nil // registered, never imported
		f.s.entries["KEY#"+arn] = e
	}
}

func (f *fleet) renew(r registry.Renewal) {
	f.t.Helper()
	var old *registry.Entry
	if e, ok := f.s.entries["KEY#"+r.KeyARN]; ok {
		old = &e
	}
	e, ok, err := registry.Renewed(old, r)
	if err != nil || !ok {
		f.t.Fatalf("Renewed: %v %v", ok, err)
	}
	f.s.entries[e.SK] = e
}

// fail notes a failed rotation; blocks says whether it blocked the key
// (registry's decision, tested there).
func (f *fleet) fail(arn, name, cause string, blocks bool) {
	f.t.Helper()
	e := f.s.entries["KEY#"+arn]
	at := f.now.Add(-time.Minute)
	e.LastFailure, e.LastError, e.LastErrorStage, e.LastExecution = &at, name, "FetchParameters", "exec-"+name
	if blocks {
		e.Status, e.StatusReason = registry.Blocked, name+": "+flow.Sanitize(cause)
	}
	f.s.entries["KEY#"+arn] = e
}

func disabled(arn string) string {
	return "key " + arn + " is in state Disabled; an import is done only in states PendingImport, Enabled (enable a Disabled key, cancel a pending deletion first)"
}

// planAll runs the planner page by page, as the fleet state machine does.
func planAll(t *testing.T, p *Stage) (State, []Item) {
	t.Helper()
	var items []Item
	s := State{}
	for {
		var err error
		if s, err = p.Plan(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		items = append(items, s.Items...)
		if s.Next == "" {
			return s, items
		}
	}
}

func keys(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.KeyID)
	}
	slices.Sort(out)
	return out
}

// TestBlockedKeysArePlannedAndCounted: a blocked key is planned on every
// run, counted as blocked (KeysIneligible) with why and how long it has
// left, and still counts towards FewestDaysLeft, whatever the page size.
func TestBlockedKeysArePlannedAndCounted(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	f.key(arn(1), f.days(60))  // active, not due
	f.key(arn(2), f.days(10))  // active, due
	f.key(arn(3), f.days(2.5)) // blocked (disabled), the fewest days left
	f.fail(arn(3), flow.KeyNotEligible, disabled(arn(3)), true)
	f.key(arn(4), nil) // blocked (gone), never imported
	f.fail(arn(4), flow.KeyNotFound, "KMS key \""+arn(4)+"\" not found", true)
	f.key(arn(5), f.days(200)) // blocked, not due by date: planned anyway
	f.fail(arn(5), flow.KeyNotEligible, disabled(arn(5)), true)
	f.key(arn(6), f.days(30)) // passing state: not blocked, not due
	f.fail(arn(6), flow.KeyNotReady, "key "+arn(6)+" is in state Updating, which passes; an import is done in states PendingImport, Enabled", false)

	for _, size := range []int32{1, 2, 1000} {
		t.Run(fmt.Sprintf("page size %d", size), func(t *testing.T) {
			out, items := planAll(t, &Stage{Registry: f.s, PageSize: size, Now: func() time.Time { return now }})
			st := out.Stats
			if got, want := keys(items), []string{arn(2), arn(3), arn(4), arn(5)}; !slices.Equal(got, want) {
				t.Errorf("planned %v, want %v", got, want)
			}
			if st.Scanned != 6 || st.Due != 4 || st.NotDue != 2 || st.Blocked != 3 || st.Scanned != st.Due+st.NotDue {
				t.Errorf("stats %+v: want 6 scanned = 4 due + 2 not due, 3 blocked", st)
			}
			if st.FewestDaysLeft == nil || *st.FewestDaysLeft != 2.5 || st.FewestDaysLeftKey != arn(3) {
				t.Errorf("fewest days left %v on %s, want 2.5 on the blocked %s", deref(st.FewestDaysLeft), st.FewestDaysLeftKey, arn(3))
			}
			want := map[string]int{"blocked: KeyNotEligible": 2, "blocked: KeyNotFound": 1, "within renew-before window": 1, "not due": 2}
			if fmt.Sprint(st.Reasons) != fmt.Sprint(want) {
				t.Errorf("reasons %v, want %v", st.Reasons, want)
			}
			byKey := map[string]BlockedKey{}
			for _, b := range st.BlockedKeys {
				byKey[b.KeyARN] = b
			}
			if len(byKey) != 3 {
				t.Fatalf("blocked keys %+v, want 3", st.BlockedKeys)
			}
			if b := byKey[arn(3)]; b.Error != flow.KeyNotEligible || b.Cause != disabled(arn(3)) || b.DaysLeft == nil || *b.DaysLeft != 2.5 || b.ValidTo == nil || b.LastFailure == nil {
				t.Errorf("blocked %s: %+v", arn(3), b)
			}
			if b := byKey[arn(4)]; b.Error != flow.KeyNotFound || b.DaysLeft != nil || b.ValidTo != nil {
				t.Errorf("blocked %s (never imported): %+v", arn(4), b)
			}
			if st.ImportItems != 4 {
				t.Errorf("import items %d, want one per key due", st.ImportItems)
			}
		})
	}

	// The metrics of the run: KeysIneligible counts the blocked keys.
	var buf bytes.Buffer
	telemetry.SetOutput(&buf)
	defer telemetry.SetOutput(os.Stdout)
	if _, err := (&Stage{Registry: f.s, Now: func() time.Time { return now }}).Run(context.Background(), json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Two lines: the fleet's ([Service]), then the one account's
	// ([Service, Account]).
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want the fleet's line and one account's: %s", buf.String())
	}
	var emf, acct map[string]any
	if err := json.Unmarshal(lines[0], &emf); err != nil {
		t.Fatalf("metrics: %v: %s", err, buf.String())
	}
	if emf["KeysIneligible"] != 3.0 || emf["KeysDue"] != 4.0 || emf["FewestDaysLeft"] != 2.5 || emf["KeysManaged"] != 6.0 || emf["Account"] != nil {
		t.Errorf("metrics %s", buf.String())
	}
	if err := json.Unmarshal(lines[1], &acct); err != nil {
		t.Fatalf("account metrics: %v: %s", err, lines[1])
	}
	if acct["Account"] != "111122223333" || acct["KeysDue"] != 4.0 || acct["FewestDaysLeft"] != 2.5 || acct["KeysManaged"] != 6.0 || acct["KeysIneligible"] != nil {
		t.Errorf("account metrics %s", lines[1])
	}
}

// TestFewestDaysLeftCountsReplicas: a replica expiring first is the fleet's
// fewest days left.
func TestFewestDaysLeftCountsReplicas(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	f.key(arn(1), f.days(40))
	f.key(arn(2), f.days(50))
	f.renew(registry.Renewal{KeyARN: arn(2), Execution: "exec-import", At: now, ValidTo: f.days(50),
		Replicas: []registry.Replica{{Region: "us-east-1", KeyARN: replicaARN, ValidTo: f.days(20)}}})
	out, _ := planAll(t, &Stage{Registry: f.s, Now: func() time.Time { return now }})
	if st := out.Stats; st.FewestDaysLeft == nil || *st.FewestDaysLeft != 20 || st.FewestDaysLeftKey != replicaARN {
		t.Fatalf("fewest days left %v on %s, want 20 on the replica", deref(st.FewestDaysLeft), st.FewestDaysLeftKey)
	}
}

// TestBlockedKeysBounded: a fleet run's state lists at most
// MaxBlockedKeys blocked keys with clipped causes (Step Functions'
// payload limit) but counts them all; Report lists all, whole.
func TestBlockedKeysBounded(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	const n = MaxBlockedKeys + 3
	long := disabled(arn(0)) + " " + strings.Repeat("and more words ", 40)
	for i := range n {
		f.key(arn(i), f.days(float64(i+1)))
		f.fail(arn(i), flow.KeyNotEligible, long, true)
	}
	cause := flow.Sanitize(long)
	for _, c := range []struct {
		report      bool
		listed, cut int
	}{{false, MaxBlockedKeys, MaxCauseLen}, {true, n, len([]rune(cause))}} {
		out, items := planAll(t, &Stage{Registry: f.s, PageSize: 20, Now: func() time.Time { return now }, Report: c.report})
		st := out.Stats
		if st.Blocked != n || len(items) != n || len(st.BlockedKeys) != c.listed {
			t.Fatalf("report %v: %d blocked, %d planned, %d listed; want %d, %d, %d", c.report, st.Blocked, len(items), len(st.BlockedKeys), n, n, c.listed)
		}
		for _, b := range st.BlockedKeys {
			if got := len([]rune(strings.TrimSuffix(b.Cause, "…"))); got != c.cut {
				t.Fatalf("report %v: cause of %d characters, want %d", c.report, got, c.cut)
			}
		}
	}
}

func TestImportItems(t *testing.T) {
	r := func(n int) []registry.Replica {
		out := make([]registry.Replica, n)
		for i := range out {
			out[i] = registry.Replica{Region: fmt.Sprint("r", i), KeyARN: fmt.Sprint(replicaARN, i)}
		}
		return out
	}
	cases := []struct {
		name string
		e    registry.Entry
		it   Item
		want int
	}{
		{"one material, one Region", registry.Entry{}, Item{}, 1},
		{"materials not known yet", registry.Entry{Materials: 0}, Item{}, 1},
		{"three materials", registry.Entry{Materials: 3}, Item{}, 3},
		{"two replicas", registry.Entry{Replicas: r(2)}, Item{}, 3},
		{"two materials, two replicas, one Region due", registry.Entry{Materials: 2, Replicas: r(2)}, Item{Regions: []string{"r1"}}, 2},
		{"rotation: every material and the new one everywhere", registry.Entry{Materials: 2, Replicas: r(1)}, Item{Rotate: true}, 2*2 + 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ImportItems(c.e, c.it); got != c.want {
				t.Fatalf("ImportItems = %d, want %d", got, c.want)
			}
		})
	}
}

// slowKMS answers DescribeKey for the first n keys; after that each read
// waits until its context ends, as a throttled read retried with backoff
// does when the invocation's time runs out.
type slowKMS struct{ n int }

func (k *slowKMS) Describe(ctx context.Context, _, arn string) (*types.KeyMetadata, error) {
	if k.n > 0 {
		k.n--
		return &types.KeyMetadata{Arn: aws.String(arn), KeyState: types.KeyStateEnabled, ValidTo: aws.Time(time.Now().Add(60 * 24 * time.Hour))}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestPageCutBeforeTheDeadline: reads that can't finish before the
// invocation's deadline (less Reserve) cut the page after the last key
// decided; the next invocation goes on from there; nothing is lost. A
// first key that can't be read is an error (the task is retried).
func TestPageCutBeforeTheDeadline(t *testing.T) {
	now := time.Now()
	f := newFleet(t, now)
	for i := 0; i < 5; i++ {
		f.key(arn(i), f.days(60))
	}
	p := &Stage{Registry: f.s, PageSize: 10, KMS: &slowKMS{n: 2}, Pace: &Pacer{}, Reserve: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	out, err := p.Plan(ctx, State{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Next != "KEY#"+arn(1) || out.Stats.Scanned != 2 || out.Stats.PagesCut != 1 {
		t.Fatalf("next %q, scanned %d, cut %d; want the page cut after the two keys read", out.Next, out.Stats.Scanned, out.Stats.PagesCut)
	}
	p.KMS = &slowKMS{n: 10}
	rest, err := p.Plan(context.Background(), out)
	if err != nil || rest.Next != "" || rest.Stats.Scanned != 5 {
		t.Fatalf("the next invocation: %v, next %q, scanned %d; want the other 3 keys", err, rest.Next, rest.Stats.Scanned)
	}
	p.KMS = &slowKMS{}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel2()
	if _, err := p.Plan(ctx2, State{}); err == nil {
		t.Fatal("no key readable before the deadline: want an error (the task is retried), not an empty page")
	}
}

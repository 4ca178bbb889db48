package planner

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

const (
	primaryMRK = "arn:aws:kms:eu-west-2:111122223333:key/mrk-00000000000000000000000000000001"
	replicaUS  = "arn:aws:kms:us-east-1:111122223333:key/mrk-00000000000000000000000000000001"
	replicaEU  = "arn:aws:kms:eu-west-1:111122223333:key/mrk-00000000000000000000000000000001"
)

// TestDecide: due-ness, drift, the earliest expiry and the Regions renewed
// come from what KMS says; the registry gives the policy and what it
// expects.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	day := func(d float64) *time.Time { v := now.Add(time.Duration(d * 24 * float64(time.Hour))); return &v }
	ago := now.Add(-time.Hour)
	entry := func(validTo *time.Time, replicas ...registry.Replica) registry.Entry {
		return registry.Entry{KeyARN: primaryMRK, SecretID: "s", Policy: flow.Policy{ValidFor: "90d", RenewBefore: "14d"}, Status: registry.Active,
			RegisteredAt: now.Add(-100 * 24 * time.Hour), CurrentValidTo: validTo, LastSuccess: &ago, Replicas: replicas}
	}
	rep := func(region, arn string, v *time.Time) registry.Replica {
		return registry.Replica{Region: region, KeyARN: arn, ValidTo: v, State: "Enabled"}
	}
	kf := func(arn, state string, v *time.Time) KeyFacts {
		return KeyFacts{KeyARN: arn, Region: registry.RegionOf(arn), Read: true, State: state, ValidTo: v, ExpirationModel: "KEY_MATERIAL_EXPIRES"}
	}
	gone := KeyFacts{KeyARN: replicaUS, Region: "us-east-1", Read: true, NotFound: true}
	never := entry(nil)
	never.LastSuccess = nil
	noExpiry := entry(nil)
	noExpiry.ExpirationModel, noExpiry.ValidFor = flow.DoesNotExpire, ""
	blocked := entry(day(60))
	blocked.Status, blocked.StatusReason = registry.Blocked, "KeyNotEligible: replica pending deletion"
	rotating := entry(day(60), rep("us-east-1", replicaUS, day(60)))
	rotating.RotateEvery, rotating.GenerateMaterial = "90d", true
	unread := entry(day(3))
	unread.NextDue = day(3 - 14)

	cases := []struct {
		name     string
		e        registry.Entry
		f        Facts
		due      bool
		reason   string
		regions  []string
		rotate   bool
		drift    []string // Regions drifted
		earliest *time.Time
		gone     int
		leaving  []string
	}{
		{name: "agree, not due", e: entry(day(60)), f: Facts{Primary: kf(primaryMRK, "Enabled", day(60))},
			reason: "not due", earliest: day(60)},
		{name: "agree, within window", e: entry(day(10)), f: Facts{Primary: kf(primaryMRK, "Enabled", day(10))},
			due: true, reason: "within renew-before window", earliest: day(10)},
		// Scenario 1: a late import left KMS at one hour, the registry at
		// 90 days: the registry alone would see nothing due.
		{name: "KMS earlier than registry (drift)", e: entry(day(90)), f: Facts{Primary: kf(primaryMRK, "Enabled", day(1.0/24))},
			due: true, reason: "KMS expiry earlier than registry", drift: []string{"eu-west-2"}, earliest: day(1.0 / 24)},
		{name: "KMS later than registry is no drift", e: entry(day(10)), f: Facts{Primary: kf(primaryMRK, "Enabled", day(80))},
			reason: "not due", earliest: day(80)},
		{name: "PendingImport while registry says valid (drift)", e: entry(day(60)), f: Facts{Primary: kf(primaryMRK, "PendingImport", nil)},
			due: true, reason: "KMS expiry earlier than registry", drift: []string{"eu-west-2"}, earliest: &now},
		// Scenario 8: a regions run that skipped a PendingImport primary
		// left no currentValidTo: the registry read that as "no expiry".
		{name: "no registry ValidTo, KMS PendingImport (scenario 8)", e: entry(nil), f: Facts{Primary: kf(primaryMRK, "PendingImport", nil)},
			due: true, reason: "KMS expiry earlier than registry", drift: []string{"eu-west-2"}, earliest: &now},
		{name: "no registry ValidTo, KMS expiring", e: entry(nil), f: Facts{Primary: kf(primaryMRK, "Enabled", day(30))},
			due: true, reason: "KMS expiry earlier than registry", drift: []string{"eu-west-2"}, earliest: day(30)},
		{name: "expired, registry knew", e: entry(day(-1)), f: Facts{Primary: kf(primaryMRK, "PendingImport", nil)},
			due: true, reason: "expired", earliest: day(-1)},
		{name: "never imported", e: never, f: Facts{Primary: kf(primaryMRK, "PendingImport", nil)},
			due: true, reason: "never imported"},
		// A key registered, never imported, then scheduled for deletion
		// (or disabled): planned, so its rotation blocks it (row 13).
		{name: "never imported, pending deletion", e: never, f: Facts{Primary: kf(primaryMRK, "PendingDeletion", nil)},
			due: true, reason: "never imported"},
		{name: "does not expire", e: noExpiry, f: Facts{Primary: KeyFacts{KeyARN: primaryMRK, Read: true, State: "Enabled", ExpirationModel: "KEY_MATERIAL_DOES_NOT_EXPIRE"}},
			reason: "no expiry"},
		{name: "primary gone: registry decides", e: entry(day(60)), f: Facts{Primary: KeyFacts{KeyARN: primaryMRK, Region: "eu-west-2", Read: true, NotFound: true}},
			reason: "not due", earliest: day(60)},
		{name: "KMS unread: registry decides", e: unread, f: Facts{Primary: KeyFacts{KeyARN: primaryMRK}},
			due: true, reason: "within renew-before window", earliest: day(3)},
		{name: "replica due alone", e: entry(day(60), rep("us-east-1", replicaUS, day(5)), rep("eu-west-1", replicaEU, day(60))),
			f:   Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "Enabled", day(5)), kf(replicaEU, "Enabled", day(60))}},
			due: true, reason: "within renew-before window", regions: []string{"us-east-1"}, earliest: day(5)},
		{name: "replica drifted", e: entry(day(60), rep("us-east-1", replicaUS, day(60))),
			f:   Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "PendingImport", nil)}},
			due: true, reason: "KMS expiry earlier than registry", regions: []string{"us-east-1"}, drift: []string{"us-east-1"}, earliest: &now},
		// Scenario 4: a replica pending deletion (its waiting period
		// longer than renewBefore) holds nothing hostage.
		{name: "replica pending deletion: primary renewed alone", e: entry(day(5), rep("us-east-1", replicaUS, day(1)), rep("eu-west-1", replicaEU, day(60))),
			f:   Facts{Primary: kf(primaryMRK, "Enabled", day(5)), Replicas: []KeyFacts{kf(replicaUS, "PendingDeletion", day(1)), kf(replicaEU, "Enabled", day(60))}},
			due: true, reason: "within renew-before window", regions: []string{"eu-west-2"}, earliest: day(5), leaving: []string{"us-east-1"}},
		{name: "replica pending deletion: not due, not counted", e: entry(day(60), rep("us-east-1", replicaUS, day(1))),
			f:      Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "PendingDeletion", day(1))}},
			reason: "not due", earliest: day(60), leaving: []string{"us-east-1"}},
		{name: "replica gone", e: entry(day(5), rep("us-east-1", replicaUS, day(1)), rep("eu-west-1", replicaEU, day(5))),
			f:   Facts{Primary: kf(primaryMRK, "Enabled", day(5)), Replicas: []KeyFacts{gone, kf(replicaEU, "Enabled", day(5))}},
			due: true, reason: "within renew-before window", regions: []string{"eu-west-2", "eu-west-1"}, earliest: day(5), gone: 1},
		{name: "blocked, nothing due: every live Region", e: func() registry.Entry {
			e := blocked
			e.Replicas = []registry.Replica{rep("us-east-1", replicaUS, day(60)), rep("eu-west-1", replicaEU, day(60))}
			return e
		}(),
			f:   Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "PendingDeletion", day(60)), kf(replicaEU, "Enabled", day(60))}},
			due: true, reason: "blocked: KeyNotEligible", regions: []string{"eu-west-2", "eu-west-1"}, earliest: day(60), leaving: []string{"us-east-1"}},
		{name: "rotation due", e: rotating, f: Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "Enabled", day(60))}},
			due: true, reason: "rotation due", rotate: true, earliest: day(60)},
		{name: "rotation waits for a replica leaving", e: rotating, f: Facts{Primary: kf(primaryMRK, "Enabled", day(60)), Replicas: []KeyFacts{kf(replicaUS, "PendingDeletion", day(60))}},
			reason: "not due", earliest: day(60), leaving: []string{"us-east-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.e, c.f, now)
			if d.Due != c.due || d.Reason != c.reason || d.Rotate != c.rotate {
				t.Errorf("due %v %q rotate %v; want %v %q %v", d.Due, d.Reason, d.Rotate, c.due, c.reason, c.rotate)
			}
			if !slices.Equal(d.Regions, c.regions) {
				t.Errorf("regions %v, want %v", d.Regions, c.regions)
			}
			var drift []string
			for _, x := range d.Drift {
				drift = append(drift, x.Region)
			}
			if !slices.Equal(drift, c.drift) {
				t.Errorf("drift %v, want %v", drift, c.drift)
			}
			switch {
			case (d.Earliest == nil) != (c.earliest == nil):
				t.Errorf("earliest %+v, want %v", d.Earliest, c.earliest)
			case d.Earliest != nil && !d.Earliest.ValidTo.Equal(*c.earliest):
				t.Errorf("earliest %v, want %v", d.Earliest.ValidTo, *c.earliest)
			}
			if len(d.Gone) != c.gone || !slices.Equal(d.Leaving, c.leaving) {
				t.Errorf("gone %v leaving %v; want %d, %v", d.Gone, d.Leaving, c.gone, c.leaving)
			}
		})
	}
}

// fakeKMS answers DescribeKey from a map; a missing key is KeyNotFound,
// a key in broken an AWS error.
type fakeKMS struct {
	keys   map[string]KeyFacts
	broken map[string]bool
	calls  []string
}

func (k *fakeKMS) Describe(_ context.Context, region, arn string) (*types.KeyMetadata, error) {
	k.calls = append(k.calls, region+" "+arn)
	if k.broken[arn] {
		return nil, errors.New("service unavailable")
	}
	f, ok := k.keys[arn]
	if !ok {
		return nil, flow.Errorf(flow.KeyNotFound, "KMS key %q not found", arn)
	}
	return &types.KeyMetadata{Arn: aws.String(arn), KeyState: types.KeyState(f.State), ValidTo: f.ValidTo,
		ExpirationModel: types.ExpirationModelType(f.ExpirationModel)}, nil
}

type fakeSNS struct {
	mu   sync.Mutex
	msgs []sns.PublishInput
	fail bool
}

func (s *fakeSNS) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return nil, errors.New("throttled")
	}
	s.msgs = append(s.msgs, *in)
	return &sns.PublishOutput{}, nil
}

func (s *fakeSNS) subjects() []string {
	var out []string
	for _, m := range s.msgs {
		out = append(out, aws.ToString(m.Subject))
	}
	slices.Sort(out)
	return out
}

type memMarks map[string]bool

func (m memMarks) Take(_ context.Context, kind, arn, day string) (bool, error) {
	k := kind + "#" + day + "#" + arn
	if m[k] {
		return false, nil
	}
	m[k] = true
	return true, nil
}

func (m memMarks) Give(_ context.Context, kind, arn, day string) error {
	delete(m, kind+"#"+day+"#"+arn)
	return nil
}

type memDropper struct{ f *fleet }

func (d memDropper) DropReplica(_ context.Context, keyARN string, _ int, replicaARN string) error {
	e := d.f.s.entries["KEY#"+keyARN]
	e.Replicas = slices.DeleteFunc(slices.Clone(e.Replicas), func(r registry.Replica) bool { return r.KeyARN == replicaARN })
	d.f.s.entries["KEY#"+keyARN] = e
	return nil
}

// TestPlanFromKMS: a run through the stage with KMS behind a fake: the
// due keys, FewestDaysLeft, KeysDrifted, KeysExpiringSoon, the
// notifications (once a day per key, a second key never hidden behind a
// first) and a gone replica taken out of the registry.
func TestPlanFromKMS(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	f.key(arn(1), f.days(60)) // agrees with KMS, not due
	f.key(arn(2), f.days(90)) // KMS: 1 hour (drift)
	f.key(arn(3), f.days(60)) // KMS: 3 days (drift, expiring soon)
	f.key(arn(4), f.days(5))  // KMS agrees: due, expiring soon
	f.key(primaryMRK, f.days(60))
	e := f.s.entries["KEY#"+primaryMRK]
	e.Replicas = []registry.Replica{{Region: "us-east-1", KeyARN: replicaUS, ValidTo: f.days(60)}, {Region: "eu-west-1", KeyARN: replicaEU, ValidTo: f.days(60)}}
	f.s.entries["KEY#"+primaryMRK] = e
	enabled := func(a string, v *time.Time) KeyFacts {
		return KeyFacts{KeyARN: a, State: "Enabled", ValidTo: v, ExpirationModel: "KEY_MATERIAL_EXPIRES"}
	}
	k := &fakeKMS{keys: map[string]KeyFacts{
		arn(1): enabled(arn(1), f.days(60)), arn(2): enabled(arn(2), f.days(1.0/24)), arn(3): enabled(arn(3), f.days(3)),
		arn(4): enabled(arn(4), f.days(5)), primaryMRK: enabled(primaryMRK, f.days(60)), replicaEU: enabled(replicaEU, f.days(60)),
	}} // replicaUS: gone
	s := &fakeSNS{}
	marks := memMarks{}
	p := &Stage{Registry: f.s, PageSize: 2, Now: func() time.Time { return now }, KMS: k,
		Notify: &Notifier{SNS: s, Topic: "arn:aws:sns:eu-west-2:111122223333:t", Marks: marks}, Replicas: memDropper{f}, AlarmDays: 7}
	out, items := planAll(t, p)
	if got, want := keys(items), []string{arn(2), arn(3), arn(4)}; !slices.Equal(got, want) {
		t.Errorf("planned %v, want %v", got, want)
	}
	st := out.Stats
	if st.Drifted != 2 || st.ExpiringSoon != 3 || st.ReplicasGone != 1 {
		t.Errorf("drifted %d expiringSoon %d replicasGone %d; want 2, 3, 1", st.Drifted, st.ExpiringSoon, st.ReplicasGone)
	}
	if st.FewestDaysLeft == nil || *st.FewestDaysLeft > 0.05 || st.FewestDaysLeftKey != arn(2) {
		t.Errorf("FewestDaysLeft %v %s, want about 0.04 for %s (KMS's one hour, not the registry's 90 days)", deref(st.FewestDaysLeft), st.FewestDaysLeftKey, arn(2))
	}
	if n := len(f.s.entries["KEY#"+primaryMRK].Replicas); n != 1 {
		t.Errorf("gone replica still in the registry: %d replicas", n)
	}
	want := []string{
		"kms-reimport: KMS expiry earlier than registry for " + shortKey(arn(2)),
		"kms-reimport: KMS expiry earlier than registry for " + shortKey(arn(3)),
		"kms-reimport: key material expires soon for " + shortKey(arn(2)),
		"kms-reimport: key material expires soon for " + shortKey(arn(3)),
		"kms-reimport: key material expires soon for " + shortKey(arn(4)),
		"kms-reimport: replica gone for " + shortKey(primaryMRK),
	}
	slices.Sort(want)
	if got := s.subjects(); !slices.Equal(got, want) {
		t.Errorf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, m := range s.msgs {
		if !strings.Contains(aws.ToString(m.Message), "What to do") {
			t.Errorf("notification without advice: %s", aws.ToString(m.Message))
		}
	}
	// A second run the same day: counted again, notified no more.
	s.msgs = nil
	out, _ = planAll(t, p)
	if out.Stats.ExpiringSoon != 3 || len(s.msgs) != 0 {
		t.Errorf("second run: expiringSoon %d, %d notifications; want 3, 0", out.Stats.ExpiringSoon, len(s.msgs))
	}
	// The next day: told again.
	later := now.Add(24 * time.Hour)
	p.Now = func() time.Time { return later }
	planAll(t, p)
	if len(s.msgs) < 3 {
		t.Errorf("next day: %d notifications, want every key near expiry told again", len(s.msgs))
	}
}

// TestNotifyFailureGivesMarkBack: a publish that fails fails the page
// (the fleet retries it) and leaves no mark, so the retry tells.
func TestNotifyFailureGivesMarkBack(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	f.key(arn(1), f.days(2))
	k := &fakeKMS{keys: map[string]KeyFacts{arn(1): {State: "Enabled", ValidTo: f.days(2)}}}
	s := &fakeSNS{fail: true}
	marks := memMarks{}
	p := &Stage{Registry: f.s, Now: func() time.Time { return now }, KMS: k, Notify: &Notifier{SNS: s, Topic: "t", Marks: marks}, AlarmDays: 7}
	if _, err := p.Plan(context.Background(), State{}); err == nil {
		t.Fatal("a failed publish did not fail the page")
	}
	if len(marks) != 0 {
		t.Fatalf("marks left after a failed publish: %v", marks)
	}
	s.fail = false
	if _, err := p.Plan(context.Background(), State{}); err != nil || len(s.msgs) != 1 {
		t.Fatalf("retry: %v, %d notifications; want 1", err, len(s.msgs))
	}
}

// TestUnreadKeyFallsBackToRegistry: a key KMS does not answer for is
// decided from the registry and counted as unread; the run goes on.
func TestUnreadKeyFallsBackToRegistry(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	f.key(arn(1), f.days(3))
	k := &fakeKMS{broken: map[string]bool{arn(1): true}}
	p := &Stage{Registry: f.s, Now: func() time.Time { return now }, KMS: k, AlarmDays: 7}
	out, items := planAll(t, p)
	if len(items) != 1 || out.Stats.Unread != 1 || out.Stats.ExpiringSoon != 1 {
		t.Fatalf("items %v, unread %d, expiringSoon %d; want the key planned from the registry", keys(items), out.Stats.Unread, out.Stats.ExpiringSoon)
	}
}

// TestPacerSpacesReads: n reads at rate r take (n-1)/r.
func TestPacerSpacesReads(t *testing.T) {
	var slept time.Duration
	clock := time.Now()
	p := &Pacer{Rate: 50, Now: func() time.Time { return clock },
		Sleep: func(_ context.Context, d time.Duration) error { slept += d; clock = clock.Add(d); return nil }}
	for range 11 {
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if slept < 150*time.Millisecond || slept > 220*time.Millisecond {
		t.Fatalf("11 reads at 50/s slept %s in all, want about 200ms (a read every 20ms)", slept)
	}
}

// TestPacerBudgetPerAccountAndRegion: KMS quotas are per account and
// Region; reads alternating between two accounts in one Region, and two
// Regions of one account, each wait only for their own budget's. Through
// Gather: a key of each of two accounts, read one after the other, don't
// wait; two reads in one budget do.
func TestPacerBudgetPerAccountAndRegion(t *testing.T) {
	const (
		a1 = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		a2 = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		r2 = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	)
	for _, tc := range []struct {
		name  string
		keys  []string
		slept time.Duration
	}{
		{"two accounts, one Region", []string{a1, a2, a1, a2}, 20 * time.Millisecond},
		{"one account, two Regions", []string{a1, r2, a1, r2}, 20 * time.Millisecond},
		{"one budget", []string{a1, a1, a1, a1}, 60 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var slept time.Duration
			clock := time.Now()
			p := &Pacer{Rate: 50, Now: func() time.Time { return clock },
				Sleep: func(_ context.Context, d time.Duration) error { slept += d; clock = clock.Add(d); return nil }}
			for _, k := range tc.keys {
				if _, err := Gather(context.Background(), nopReader{}, p, registry.Entry{KeyARN: k}); err != nil {
					t.Fatal(err)
				}
			}
			if slept != tc.slept {
				t.Errorf("slept %s, want %s (a read every 20ms per account and Region)", slept, tc.slept)
			}
		})
	}
}

type nopReader struct{}

func (nopReader) Describe(_ context.Context, _, arn string) (*types.KeyMetadata, error) {
	return &types.KeyMetadata{Arn: &arn, KeyState: types.KeyStateEnabled}, nil
}

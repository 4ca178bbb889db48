// Package planner decides, from the registry, which keys a scheduled run
// renews: those whose material is within its renew-before window, already
// expired, or never imported. It reads one page of the registry per call,
// so the fleet state machine can page through tens of thousands of keys,
// and it changes nothing.
package planner

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// State is the planner's input and output in the fleet state machine.
type State struct {
	// Next is the registry cursor; empty on the first call, and in the
	// output when the registry has been read to the end.
	Next string `json:"next,omitempty"`
	// Items are the rotation inputs of the keys due on this page, in page
	// order; in the state they travel only in Groups (groups.go).
	Items []Item `json:"-"`
	// Groups are Items by account and Region (GroupItems): the fleet's
	// outer Map runs one group per child execution, each under its own
	// MaxConcurrency.
	Groups []Group `json:"groups"`
	// MaxConcurrency bounds the rotations of one account and Region
	// running at once (each group's), sized to the KMS request quotas of
	// one account and Region.
	MaxConcurrency int   `json:"maxConcurrency"`
	Stats          Stats `json:"stats"`
	// Results are the previous page's rotations as the fleet's outer Map
	// returned them (its ResultPath): one list per group. The next call
	// counts them into Stats and drops them.
	Results [][]Result `json:"results,omitempty"`
}

// Result is one rotation of a fleet run as the fleet's Map returns it
// (infra/statemachine/fleet.asl.json: RotateKey's ResultSelector, or
// RotationFailed).
type Result struct {
	// Status is the child execution's: SUCCEEDED, or FAILED for any
	// other ending (the Catch).
	Status string `json:"status"`
	// Outcome is a succeeded execution's summary outcome: RENEWED or
	// ALREADY_IN_PROGRESS.
	Outcome string `json:"outcome,omitempty"`
	// KeyID and Error name a failed rotation's key and error.
	KeyID string `json:"keyId,omitempty"`
	Error string `json:"error,omitempty"`
}

// FailedKey is a key whose rotation failed in this fleet run.
type FailedKey struct {
	KeyID string `json:"keyId"`
	Error string `json:"error"`
}

// MaxFailedKeys bounds Stats.FailedKeys (the run's state stays small);
// Failed counts them all.
const MaxFailedKeys = 50

// Tally counts a page's rotations into the run's stats: a pure function
// of the results.
func (st *Stats) Tally(rs []Result) {
	if st.FailedKeys == nil {
		st.FailedKeys = []FailedKey{}
	}
	for _, r := range rs {
		switch {
		case r.Status == "SUCCEEDED" && r.Outcome == "RENEWED":
			st.Renewed++
		case r.Status == "SUCCEEDED":
			st.NotRenewed++ // another execution held the key
		default:
			st.Failed++
			if len(st.FailedKeys) < MaxFailedKeys {
				st.FailedKeys = append(st.FailedKeys, FailedKey{KeyID: r.KeyID, Error: r.Error})
			}
		}
	}
}

// Item is the execution input of one rotation (see the README): the
// registered policy (Regions: only these Regions of a multi-Region key
// are due) and a due rotation (docs/rotation.md).
type Item struct {
	KeyID    string `json:"keyId"`
	SecretID string `json:"secretId"`
	Rotate   bool   `json:"rotate,omitempty"`
	// RegistryVersion is the entry's version as planned: the renewal
	// writes no policy and never registers a key deregistered meanwhile.
	RegistryVersion *int64 `json:"registryVersion,omitempty"`
	// Regions: only these Regions of a multi-Region key are due (nil: the
	// primary and every replica).
	Regions []string `json:"regions,omitempty"`
	flow.Policy
}

// Stats add up over the pages of one run.
type Stats struct {
	Pages   int `json:"pages"`
	Scanned int `json:"scanned"`
	// Due counts the keys planned (blocked ones included); scanned = due
	// + notDue.
	Due    int `json:"due"`
	NotDue int `json:"notDue"`
	// Blocked counts the blocked keys (registry.Blocked): planned again
	// like any due key, and reported (metric KeysIneligible).
	Blocked int `json:"blocked"`
	// BlockedKeys says why each blocked key is blocked and how long it has
	// left: up to MaxBlockedKeys of them, causes clipped to MaxCauseLen,
	// in a fleet run (Stage.Report: all, whole causes).
	BlockedKeys []BlockedKey `json:"blockedKeys,omitempty"`
	// FewestDaysLeft is the least remaining validity across the fleet
	// (blocked keys and replicas included), FewestDaysLeftKey the KMS key
	// (primary or replica) it belongs to.
	FewestDaysLeft    *float64 `json:"fewestDaysLeft,omitempty"`
	FewestDaysLeftKey string   `json:"fewestDaysLeftKey,omitempty"`
	// Drifted counts the keys whose KMS expiry is earlier than the
	// registry expects (metric KeysDrifted); each is planned and notified.
	Drifted int `json:"drifted"`
	// ExpiringSoon counts the keys with fewer than ExpiryAlarmDays left,
	// as KMS says (metric KeysExpiringSoon; its alarm fires above 0).
	ExpiringSoon int `json:"expiringSoon"`
	// ReplicasGone counts registered replicas KMS no longer has (taken
	// out of the registry, notified); ReplicasLeaving those pending
	// deletion (not renewed, not counted).
	ReplicasGone    int `json:"replicasGone,omitempty"`
	ReplicasLeaving int `json:"replicasLeaving,omitempty"`
	// Unread counts the keys KMS could not be read for, KeysGone those KMS
	// does not have (the registry decided for both).
	Unread   int `json:"unread,omitempty"`
	KeysGone int `json:"keysGone,omitempty"`
	// PagesCut counts the registry pages cut short because the
	// invocation's deadline came near (Stage.Reserve).
	PagesCut int `json:"pagesCut,omitempty"`
	// RoleUnavailable counts the keys not planned because their account's
	// member role can't be assumed; UnavailableAccounts names each such
	// account once per run (and is how the run tells it once: the next
	// pages skip that account's KMS reads).
	RoleUnavailable     int                  `json:"roleUnavailable,omitempty"`
	UnavailableAccounts []UnavailableAccount `json:"unavailableAccounts,omitempty"`
	// ImportItems is how many imports renewing the keys due takes (see
	// ImportItems): each is rotation.CallsPerImport KMS requests.
	ImportItems int `json:"importItems"`
	// Accounts are the numbers of each account (up to MaxAccountStats),
	// emitted per account (accountstats.go).
	Accounts []AccountStats `json:"accounts,omitempty"`
	// Reasons counts the keys by why they are (not) due.
	Reasons map[string]int `json:"reasons,omitempty"`
	// The run's rotations, counted from the Map's results (Tally):
	// renewed, not renewed because another execution held the key, and
	// failed, with the failed keys named (up to MaxFailedKeys).
	Renewed    int         `json:"renewed"`
	NotRenewed int         `json:"notRenewed"`
	Failed     int         `json:"failed"`
	FailedKeys []FailedKey `json:"failedKeys"`
	// Discovery is what the run's discovery step found (discovery.go; nil:
	// no discovery, AdoptTag empty).
	Discovery *DiscoveryStats `json:"discovery,omitempty"`
}

// BlockedKey is one blocked key in Stats.
type BlockedKey struct {
	KeyARN string `json:"keyArn"`
	registry.Block
	// ValidTo is the key's earliest ValidTo (primary or replica), DaysLeft
	// the days until then (negative: expired); both absent for a key never
	// imported.
	ValidTo  *time.Time `json:"validTo,omitempty"`
	DaysLeft *float64   `json:"daysLeft,omitempty"`
}

// Limits of BlockedKeys in a fleet run: its state passes between the
// fleet's states, under Step Functions' 256 KiB payload limit, next to a
// page of items.
const (
	MaxBlockedKeys = 50
	MaxCauseLen    = 300
)

// MaxPageBytes bounds a page (the State the planner returns, JSON), half
// of Step Functions' 256 KiB payload limit for a state's input or output
// (SFN guide, "Service quotas"): a page over the limit fails the fleet run
// with States.DataLimitExceeded, which no Catch can catch ("States.ALL ...
// cannot catch States.DataLimitExceeded", SFN guide, "Handling errors").
// A page stops before the entry that would take it past MaxPageBytes and
// the next page starts at that entry; the half left over is headroom for
// what Step Functions adds (the Map's input is the page itself).
// statsSlack is room kept for the stats a page adds to (counts, reasons,
// the fewest-days key).
const (
	MaxPageBytes = 128 << 10
	statsSlack   = 4<<10 + MaxAccountStats*accountStatsBytes
)

// Registry is the part of the registry the planner reads: one page of
// entries after a cursor (registry.Store in the function, an in-memory
// fake in unit tests).
type Registry interface {
	List(ctx context.Context, next string, limit int32) (registry.Page, error)
}

// Stage plans one page.
type Stage struct {
	Registry       Registry
	PageSize       int32
	MaxConcurrency int
	Now            func() time.Time
	// Report lists every blocked key with its whole cause (the operator's
	// plan; not for the fleet run's state).
	Report bool
	// KMS reads each key's real state (reconcile.go); nil: the registry
	// decides alone. Pace spaces those reads.
	KMS  KeyReader
	Pace *Pacer
	// Notify sends the drift, expiry and replica-gone notifications, and
	// Replicas takes gone replicas out of the registry; nil: neither (the
	// operator's plan changes nothing).
	Notify   *Notifier
	Replicas ReplicaDropper
	// AlarmDays is ExpiryAlarmDays: a key with fewer days left is
	// counted in KeysExpiringSoon and notified once a day.
	AlarmDays float64
	// Discovery, when set, runs on a run's first page before the registry
	// is read (discovery.go); nil: no discovery call at all.
	Discovery *Discovery
	// Reserve is the end of an invocation kept for writing the page out:
	// KMS reads (throttled, retried with backoff) stop Reserve before the
	// invocation's deadline and the rest of the registry page goes to the
	// next invocation, instead of the whole page timing out (0: none).
	Reserve time.Duration
}

// Run is the planner's handler: its event is a previous State (the next
// page of the same run) or anything else (the schedule's envelope, {}),
// which starts a fresh run. The run's metrics are emitted with its last
// page.
func (p *Stage) Run(ctx context.Context, raw json.RawMessage) (State, error) {
	s := Decode(raw)
	if s.Stats.Pages > 0 && s.Next == "" {
		// The run has read the registry to its end (the fleet's
		// CountResults): count the last page's rotations, plan nothing.
		s.Stats.Tally(Flatten(s.Results))
		return State{Items: []Item{}, Groups: []Group{}, MaxConcurrency: s.MaxConcurrency, Stats: s.Stats}, nil
	}
	out, err := p.Plan(ctx, s)
	if err == nil && out.Next == "" {
		out.Stats.EmitMetrics()
		out.Stats.Discovery.EmitMetrics()
	}
	return out, err
}

// Plan reads the page after s.Next and returns the keys due on it.
func (p *Stage) Plan(ctx context.Context, s State) (State, error) {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if s.Stats.Pages == 0 && p.Discovery != nil {
		// First page: keys adopted now are in the pages this run reads.
		d, err := p.discover(ctx, now)
		if err != nil {
			return s, err
		}
		s.Stats.Discovery = d
	}
	size := p.PageSize
	if size <= 0 {
		size = 400
	}
	page, err := p.Registry.List(ctx, s.Next, size)
	if err != nil {
		return s, flow.FromAWS(err, flow.Internal, "reading the registry")
	}
	mc := p.MaxConcurrency
	if mc <= 0 {
		mc = 5
	}
	out := State{Next: page.Next, Items: []Item{}, Stats: s.Stats, MaxConcurrency: mc}
	st := &out.Stats
	st.Tally(Flatten(s.Results))
	st.Pages++
	if st.Reasons == nil {
		st.Reasons = map[string]int{}
	}
	log := telemetry.Logger(ctx)
	budget := newPageBudget(out)
	reads, cancel := p.readWindow(ctx)
	defer cancel()
	for i, e := range page.Entries {
		d, err := p.decide(reads, st, e, now)
		if err != nil && i > 0 && reads.Err() != nil {
			// The deadline is near (reads slowed by throttling): the rest
			// of the registry page goes to the next invocation.
			out.Next = page.Entries[i-1].SK
			st.PagesCut++
			log.Warn("registry page cut short: the invocation's deadline is near", "decided", i, "entries", len(page.Entries), "error", err.Error())
			break
		}
		if err != nil {
			return s, err
		}
		it := itemFor(e, d)
		if i > 0 && !p.Report && !budget.fits(entryBytes(e, d, it, now, p.Report, len(st.BlockedKeys))+budget.groupCost(d.Due, it)) {
			// The rest of the registry page goes to the next page (a
			// report is no state: it lists every blocked key whole).
			out.Next = page.Entries[i-1].SK
			break
		}
		st.Scanned++
		if err := p.tell(ctx, st, e, d, now); err != nil {
			return s, err
		}
		st.Reasons[d.Reason]++
		st.countAccount(e, d, now, p.AlarmDays)
		if !d.Due {
			st.NotDue++
			continue
		}
		st.Due++
		st.ImportItems += ImportItems(e, it)
		out.Items = append(out.Items, it)
		p.countBlocked(ctx, st, e, now)
	}
	out.Groups = GroupItems(out.Items, mc)
	logPlanned(log, out, len(page.Entries))
	return out, nil
}

// logPlanned logs a page planned and, on the last, the fleet's plan.
func logPlanned(log *slog.Logger, out State, entries int) {
	st := out.Stats
	log.Info("registry page planned", "page", st.Pages, "entries", entries, "due", len(out.Items), "groups", len(out.Groups), "more", out.Next != "")
	if out.Next == "" {
		// "ineligible" is the blocked count: the dashboard's query reads
		// that field.
		log.Info("fleet planned", "scanned", st.Scanned, "due", st.Due, "ineligible", st.Blocked, "importItems", st.ImportItems,
			"fewestDaysLeft", deref(st.FewestDaysLeft), "fewestDaysLeftKey", st.FewestDaysLeftKey,
			"drifted", st.Drifted, "expiringSoon", st.ExpiringSoon, "replicasGone", st.ReplicasGone, "unread", st.Unread, "pagesCut", st.PagesCut)
	}
}

// readWindow is the context of a page's KMS reads: the invocation's,
// ending Reserve before its deadline.
func (p *Stage) readWindow(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && p.Reserve > 0 {
		return context.WithDeadline(ctx, dl.Add(-p.Reserve))
	}
	return context.WithCancel(ctx)
}

// countBlocked counts and lists a due key that is blocked (planned again:
// a blocked key is retried, never skipped).
func (p *Stage) countBlocked(ctx context.Context, st *Stats, e registry.Entry, now time.Time) {
	b := e.Block()
	if b == nil {
		return
	}
	st.Blocked++
	bk := blockedKey(e, *b, now)
	telemetry.Logger(ctx).Warn("blocked key planned again", "keyArn", e.KeyARN, "error", b.Error, "cause", b.Cause, "daysLeft", deref(bk.DaysLeft))
	if listed(p.Report, len(st.BlockedKeys)) {
		if !p.Report {
			bk.Cause = clip(bk.Cause, MaxCauseLen)
		}
		st.BlockedKeys = append(st.BlockedKeys, bk)
	}
}

// blockedKey is how Stats lists blocked key e.
func blockedKey(e registry.Entry, b registry.Block, now time.Time) BlockedKey {
	bk := BlockedKey{KeyARN: e.KeyARN, Block: b}
	if first := e.Earliest(); first != nil {
		v, d := first.ValidTo, registry.DaysLeft(first.ValidTo, now)
		bk.ValidTo, bk.DaysLeft = &v, &d
	}
	return bk
}

// listed: a blocked key is listed in Stats.BlockedKeys (all of them in a
// report, up to MaxBlockedKeys in a fleet run).
func listed(report bool, already int) bool {
	return report || already < MaxBlockedKeys
}

// pageBudget counts the bytes of a page as it is built.
type pageBudget struct {
	used   int
	groups map[groupKey]bool // the page's groups so far (groupCost)
}

func newPageBudget(s State) *pageBudget {
	b, _ := json.Marshal(s)
	return &pageBudget{used: len(b) + statsSlack}
}

// fits adds n bytes unless they would take the page past MaxPageBytes.
func (b *pageBudget) fits(n int) bool {
	if b.used+n > MaxPageBytes {
		return false
	}
	b.used += n
	return true
}

// entryBytes is what planning e (decided d, item it) adds to a page,
// encoded: its item (and the comma before it) when it is due, and its
// entry in the blocked-key list when it is listed there.
func entryBytes(e registry.Entry, d Decision, it Item, now time.Time, report bool, blockedListed int) int {
	if !d.Due {
		return 0
	}
	j, _ := json.Marshal(it)
	n := len(j) + 1
	if b := e.Block(); b != nil && listed(report, blockedListed) {
		bk := blockedKey(e, *b, now)
		if !report {
			bk.Cause = clip(bk.Cause, MaxCauseLen)
		}
		j, _ := json.Marshal(bk)
		n += len(j) + 1
	}
	return n
}

// ImportItems is how many imports renewing e with it takes, counted as
// fetchparameters' plan of imports counts them: every material of the key
// (as many as the last success left, at least one) into every Region
// renewed (it.Regions, or the primary and every replica), and for a
// rotation the new material into every Region. Each import is one
// GetParametersForImport and one ImportKeyMaterial request (more when an
// import token has to be fetched again).
// ImportItems is how many imports renewing e with it takes
// (rotation.Imports): every material of the key (as many as the last
// success left, at least one) into every Region renewed (it.Regions, or the
// primary and every replica), and for a rotation the new material into
// every Region.
func ImportItems(e registry.Entry, it Item) int {
	return rotation.Imports(rotation.Shape{Materials: e.Materials, Replicas: len(e.Replicas), Regions: len(it.Regions), Rotate: it.Rotate})
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

// EmitMetrics writes the fleet's metrics (EMF) at the end of a run.
func (st Stats) EmitMetrics() {
	ms := []telemetry.Metric{
		{Name: "KeysDue", Value: float64(st.Due), Unit: telemetry.Count},
		// Blocked keys; the name is older than blocking (an alarm and the
		// dashboard use it).
		{Name: "KeysIneligible", Value: float64(st.Blocked), Unit: telemetry.Count},
		{Name: "KeysManaged", Value: float64(st.Scanned), Unit: telemetry.Count},
		// Heartbeat: FleetRunMissingAlarm fires when a day passes without.
		{Name: "FleetRuns", Value: 1, Unit: telemetry.Count},
	}
	if st.FewestDaysLeft != nil {
		ms = append(ms, telemetry.Metric{Name: "FewestDaysLeft", Value: *st.FewestDaysLeft, Unit: telemetry.None})
	}
	// From KMS (reconcile.go): KeysExpiringSoon's alarm fires above 0, so
	// a second key near expiry is never hidden behind a first.
	ms = append(ms,
		telemetry.Metric{Name: "KeysDrifted", Value: float64(st.Drifted), Unit: telemetry.Count},
		telemetry.Metric{Name: "KeysExpiringSoon", Value: float64(st.ExpiringSoon), Unit: telemetry.Count})
	telemetry.Emit(telemetry.Service, ms...)
	st.emitAccounts()
}

// ItemOf is the rotation input that renews e: its key, its secret and
// the policy the registry keeps.
func ItemOf(e registry.Entry) Item {
	v := e.Version
	return Item{KeyID: e.KeyARN, SecretID: e.SecretID, Policy: e.Policy.Kept(), RegistryVersion: &v}
}

// ItemAt is ItemOf for a run at now: a due rotation rotates (and renews
// everything); otherwise a multi-Region key whose Regions are not all due
// renews only those that are.
func ItemAt(e registry.Entry, now time.Time) Item {
	it := ItemOf(e)
	if e.RotationDue(now) {
		it.Rotate = true
		return it
	}
	if due, all := e.DueRegions(now); !all && len(due) > 0 && len(e.Replicas) > 0 {
		it.Regions = due
	}
	return it
}

// Decode reads the planner's event: a previous State, or anything else
// (the schedule's input), which starts a new run.
func Decode(raw json.RawMessage) State {
	var s State
	_ = json.Unmarshal(raw, &s)
	s.Items = nil
	return s
}

// deref logs a missing value as null rather than a pointer.
func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

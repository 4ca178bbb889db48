// Package planner decides, from the registry, which keys a scheduled run
// renews: those whose material is within its renew-before window, already
// expired, or never imported. It reads one page of the registry per call,
// so the fleet state machine can page through tens of thousands of keys,
// and it changes nothing.
package planner

import (
	"context"
	"encoding/json"
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
	// Items are the rotation inputs of the keys due on this page.
	Items []Item `json:"items"`
	// MaxConcurrency bounds the rotations running at once (the Map's
	// MaxConcurrencyPath), sized to the KMS request quotas.
	MaxConcurrency int   `json:"maxConcurrency"`
	Stats          Stats `json:"stats"`
}

// Item is the execution input of one rotation (see the README).
type Item struct {
	KeyID              string `json:"keyId"`
	SecretID           string `json:"secretId"`
	SecretVersionStage string `json:"secretVersionStage,omitempty"`
	ValidFor           string `json:"validFor,omitempty"`
	ExpirationModel    string `json:"expirationModel,omitempty"`
	RenewBefore        string `json:"renewBefore"`
	WrappingAlgorithm  string `json:"wrappingAlgorithm,omitempty"`
	WrappingKeySpec    string `json:"wrappingKeySpec,omitempty"`
	// Rotation policy and a due rotation (docs/rotation.md).
	RotateEvery      string `json:"rotateEvery,omitempty"`
	NewMaterialStage string `json:"newMaterialStage,omitempty"`
	GenerateMaterial bool   `json:"generateMaterial,omitempty"`
	Rotate           bool   `json:"rotate,omitempty"`
	// Regions: only these Regions of a multi-Region key are due.
	Regions []string `json:"regions,omitempty"`
	// RegistryVersion is the entry's version as planned: the renewal
	// writes no policy and never registers a key deregistered meanwhile.
	RegistryVersion *int64 `json:"registryVersion,omitempty"`
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
	// ImportItems is how many imports renewing the keys due takes (see
	// ImportItems): each is rotation.CallsPerImport KMS requests.
	ImportItems int `json:"importItems"`
	// Reasons counts the keys by why they are (not) due.
	Reasons map[string]int `json:"reasons,omitempty"`
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
	statsSlack   = 4 << 10
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
}

// Run is the planner's handler: its event is a previous State (the next
// page of the same run) or anything else (the schedule's envelope, {}),
// which starts a fresh run. The run's metrics are emitted with its last
// page.
func (p *Stage) Run(ctx context.Context, raw json.RawMessage) (State, error) {
	out, err := p.Plan(ctx, Decode(raw))
	if err == nil && out.Next == "" {
		out.Stats.EmitMetrics()
	}
	return out, err
}

// Plan reads the page after s.Next and returns the keys due on it.
func (p *Stage) Plan(ctx context.Context, s State) (State, error) {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
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
	st.Pages++
	if st.Reasons == nil {
		st.Reasons = map[string]int{}
	}
	log := telemetry.Logger(ctx)
	budget := newPageBudget(out)
	for i, e := range page.Entries {
		if i > 0 && !p.Report && !budget.fits(entryBytes(e, now, p.Report, len(st.BlockedKeys))) {
			// The rest of the registry page goes to the next page (a
			// report is no state: it lists every blocked key whole).
			out.Next = page.Entries[i-1].SK
			break
		}
		st.Scanned++
		first := e.Earliest()
		if first != nil {
			days := registry.DaysLeft(first.ValidTo, now)
			if st.FewestDaysLeft == nil || days < *st.FewestDaysLeft {
				st.FewestDaysLeft, st.FewestDaysLeftKey = &days, first.KeyARN
			}
		}
		due, why := e.IsDue(now)
		st.Reasons[why]++
		if !due {
			st.NotDue++
			continue
		}
		st.Due++
		it := ItemAt(e, now)
		st.ImportItems += ImportItems(e, it)
		out.Items = append(out.Items, it)
		if b := e.Block(); b != nil {
			st.Blocked++
			bk := blockedKey(e, *b, now)
			log.Warn("blocked key planned again", "keyArn", e.KeyARN, "error", b.Error, "cause", b.Cause, "daysLeft", deref(bk.DaysLeft))
			if listed(p.Report, len(st.BlockedKeys)) {
				if !p.Report {
					bk.Cause = clip(bk.Cause, MaxCauseLen)
				}
				st.BlockedKeys = append(st.BlockedKeys, bk)
			}
		}
	}
	log.Info("registry page planned", "page", st.Pages, "entries", len(page.Entries), "due", len(out.Items), "more", out.Next != "")
	if out.Next == "" {
		// "ineligible" is the blocked count: the dashboard's query reads
		// that field.
		log.Info("fleet planned", "scanned", st.Scanned, "due", st.Due, "ineligible", st.Blocked, "importItems", st.ImportItems,
			"fewestDaysLeft", deref(st.FewestDaysLeft), "fewestDaysLeftKey", st.FewestDaysLeftKey)
	}
	return out, nil
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
type pageBudget struct{ used int }

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

// entryBytes is what planning e adds to a page, encoded: its item (and
// the comma before it) when it is due, and its entry in the blocked-key
// list when it is listed there.
func entryBytes(e registry.Entry, now time.Time, report bool, blockedListed int) int {
	if due, _ := e.IsDue(now); !due {
		return 0
	}
	it, _ := json.Marshal(ItemAt(e, now))
	n := len(it) + 1
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
	telemetry.Emit(telemetry.Service, ms...)
}

// ItemOf is the rotation input that renews e.
func ItemOf(e registry.Entry) Item {
	it := Item{
		KeyID: e.KeyARN, SecretID: e.SecretID, SecretVersionStage: e.SecretVersionStage,
		RenewBefore: e.RenewBefore, WrappingAlgorithm: e.WrappingAlgorithm, WrappingKeySpec: e.WrappingKeySpec,
		RegistryVersion: &e.Version,
	}
	if e.RotateEvery != "" {
		it.RotateEvery, it.NewMaterialStage, it.GenerateMaterial = e.RotateEvery, e.NewMaterialStage, e.GenerateMaterial
	}
	if e.NoExpiry {
		it.ExpirationModel = flow.DoesNotExpire
	} else {
		it.ValidFor = e.ValidFor
	}
	return it
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

package planner

import (
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// KMS is the truth about expiry (docs/aws-behaviour.md rows 10, 36, 39):
// on every fleet run the planner reads each registered key's primary and
// replicas with DescribeKey and decides from what KMS says. The registry
// holds the policy (renewBefore, validFor, rotation) and what the product
// last saw; where the two disagree, KMS wins.

// Key states the decision reads (KMS guide, key-state.html).
const (
	statePendingImport          = "PendingImport"
	statePendingDeletion        = "PendingDeletion"
	statePendingReplicaDeletion = "PendingReplicaDeletion"
	doesNotExpire               = "KEY_MATERIAL_DOES_NOT_EXPIRE"
)

// driftSlack: a KMS ValidTo this much earlier than the registry's is
// drift (KMS keeps whole seconds; the registry may hold fractions).
const driftSlack = time.Second

// KeyFacts is what DescribeKey said about one KMS key (primary or
// replica).
type KeyFacts struct {
	KeyARN string `json:"keyArn"`
	Region string `json:"region"`
	// Read: KMS answered (the key's metadata, or NotFound).
	Read bool `json:"read"`
	// NotFound: KMS has no such key (a replica deleted).
	NotFound bool       `json:"notFound,omitempty"`
	State    string     `json:"state,omitempty"`
	ValidTo  *time.Time `json:"validTo,omitempty"`
	// ExpirationModel: KEY_MATERIAL_EXPIRES or
	// KEY_MATERIAL_DOES_NOT_EXPIRE (empty for a key with no material).
	ExpirationModel string `json:"expirationModel,omitempty"`
	// RoleUnavailable: the member role of the key's account could not be
	// assumed (flow.MemberRoleUnavailable); the cause, naming the account
	// and the role.
	RoleUnavailable string `json:"roleUnavailable,omitempty"`
}

// Facts are what KMS said about a registered key: its primary, and its
// registered replicas in the registry's order.
type Facts struct {
	Primary  KeyFacts
	Replicas []KeyFacts
}

// Drift is a KMS key whose material expires earlier than the registry
// expects (or is gone while the registry says it is valid).
type Drift struct {
	KeyARN   string     `json:"keyArn"`
	Region   string     `json:"region"`
	Expected *time.Time `json:"expected,omitempty"`
	// Actual is KMS's ValidTo (absent: PendingImport, no material).
	Actual *time.Time `json:"actual,omitempty"`
	State  string     `json:"state"`
}

// Expiry is the earliest expiry of a key across its live Regions.
type Expiry struct {
	KeyARN  string
	ValidTo time.Time
}

// Decision is what a run does with one registered key.
type Decision struct {
	Due    bool
	Reason string
	// Regions: renew only these (nil: the primary and every replica).
	Regions []string
	Rotate  bool
	// Drift lists the keys whose KMS expiry is earlier than the
	// registry's.
	Drift []Drift
	// Earliest is the earliest expiry among the key's live Regions, as
	// KMS says (nil: nothing expires).
	Earliest *Expiry
	// Gone lists the registered replicas KMS no longer has; Leaving those
	// pending deletion: neither is renewed or counted.
	Gone    []KeyFacts
	Leaving []string
	// FromRegistry: KMS could not be read; the registry decided.
	// PrimaryGone: KMS has no such key; the registry decided.
	FromRegistry, PrimaryGone bool
	// RoleUnavailable: the member role of the key's account can't be
	// assumed (its cause): the key is not planned, since every call of its
	// rotation would fail the same way; the run tells it once per account.
	RoleUnavailable string
}

// ReasonRoleUnavailable is the Reason of a key whose account's member role
// can't be assumed.
const ReasonRoleUnavailable = "memberRoleUnavailable"

// region is one Region of a key with what the registry expects there.
type region struct {
	kf       KeyFacts
	expected *time.Time
}

// Decide is the decision for registry entry e at now given what KMS says
// about it. It is pure: the stage gathers f.
func Decide(e registry.Entry, f Facts, now time.Time) Decision {
	if f.Primary.RoleUnavailable != "" {
		return roleUnavailable(e, f.Primary.RoleUnavailable, now)
	}
	if !f.Primary.Read {
		return fromRegistry(e, now)
	}
	if f.Primary.NotFound {
		// KMS has no such key: nothing to reconcile. The registry decides
		// (a due key's rotation records KeyNotFound and blocks it, row 13);
		// the run counts it (stats.keysGone).
		d := fromRegistry(e, now)
		d.FromRegistry, d.PrimaryGone = false, true
		return d
	}
	rb, _ := flow.ParseDuration(e.RenewBefore)
	d := Decision{}
	live := []region{{kf: f.Primary, expected: e.CurrentValidTo}}
	for i, rf := range f.Replicas {
		switch {
		case rf.Read && rf.NotFound:
			d.Gone = append(d.Gone, rf)
			continue
		case rf.State == statePendingDeletion || rf.State == statePendingReplicaDeletion:
			d.Leaving = append(d.Leaving, rf.Region)
			continue
		}
		var exp *time.Time
		if i < len(e.Replicas) {
			exp = e.Replicas[i].ValidTo
		}
		live = append(live, region{kf: rf, expected: exp})
	}
	var due []string
	reasons := map[string]bool{}
	for _, g := range live {
		isDue, why, drift := regionDue(e, g, rb, now)
		if drift != nil {
			d.Drift = append(d.Drift, *drift)
		}
		reasons[why] = true
		if isDue {
			due = append(due, g.kf.Region)
		}
		if v := expiryOf(e, g, now); v != nil && (d.Earliest == nil || v.Before(d.Earliest.ValidTo)) {
			d.Earliest = &Expiry{KeyARN: g.kf.KeyARN, ValidTo: *v}
		}
	}
	// A rotation renews every Region: not while a replica is leaving.
	rotate := e.RotationDue(now) && len(d.Leaving) == 0
	d.Due, d.Reason = reason(e, reasons, len(due) > 0, rotate)
	if !d.Due {
		return d
	}
	if rotate {
		d.Rotate = true
		return d
	}
	if len(due) == 0 { // blocked or rotation waiting: every live Region
		for _, g := range live {
			due = append(due, g.kf.Region)
		}
	}
	if len(e.Replicas) > 0 && len(due) < 1+len(e.Replicas) {
		d.Regions = due
	}
	return d
}

// regionDue says whether one Region is due, why, and whether KMS's expiry
// there is earlier than the registry's (drift).
func regionDue(e registry.Entry, g region, rb time.Duration, now time.Time) (bool, string, *Drift) {
	kf := g.kf
	if !kf.Read { // KMS did not answer for this Region: the registry decides
		if g.expected != nil && !g.expected.Add(-rb).After(now) {
			return true, "within renew-before window", nil
		}
		return false, "not due", nil
	}
	drift := &Drift{KeyARN: kf.KeyARN, Region: kf.Region, Expected: g.expected, Actual: kf.ValidTo, State: kf.State}
	// The registry thinks the key holds material that has not expired: a
	// ValidTo still ahead, or a success with no ValidTo recorded (read as
	// "no expiry").
	registryValid := (g.expected != nil && g.expected.After(now)) || (g.expected == nil && e.LastSuccess != nil && !e.NoExpiry())
	if kf.State == statePendingImport {
		switch {
		case registryValid:
			return true, "KMS expiry earlier than registry", drift
		case e.LastSuccess == nil:
			return true, "never imported", nil
		}
		return true, "expired", nil
	}
	if e.LastSuccess == nil && g.expected == nil {
		// Never imported by the product, whatever the state (Disabled,
		// PendingDeletion): planned, so the rotation blocks it or imports.
		return true, "never imported", nil
	}
	if kf.ValidTo == nil || kf.ExpirationModel == doesNotExpire {
		return false, "no expiry", nil
	}
	if registryValid && (g.expected == nil || kf.ValidTo.Before(g.expected.Add(-driftSlack))) {
		return true, "KMS expiry earlier than registry", drift
	}
	if !kf.ValidTo.Add(-rb).After(now) {
		return true, "within renew-before window", nil
	}
	return false, "not due", nil
}

// expiryOf is when a Region's material expires, as KMS says: a key in
// PendingImport that held material has expired (at the registry's
// ValidTo, or now); one never imported has no expiry yet.
func expiryOf(e registry.Entry, g region, now time.Time) *time.Time {
	if !g.kf.Read {
		return g.expected
	}
	if g.kf.State == statePendingImport {
		if e.LastSuccess == nil && g.expected == nil {
			return nil
		}
		t := now
		if g.expected != nil && g.expected.Before(now) {
			t = *g.expected
		}
		return &t
	}
	if g.kf.ExpirationModel == doesNotExpire {
		return nil
	}
	return g.kf.ValidTo
}

// reason orders why a key is due: blocked first, then what KMS says, then
// the rotation policy.
func reason(e registry.Entry, why map[string]bool, anyDue, rotate bool) (bool, string) {
	if b := e.Block(); b != nil {
		return true, "blocked: " + b.Error
	}
	for _, w := range []string{"never imported", "expired", "KMS expiry earlier than registry", "within renew-before window"} {
		if why[w] {
			return true, w
		}
	}
	switch {
	case rotate:
		return true, "rotation due"
	case anyDue:
		return true, "within renew-before window"
	case why["no expiry"] && !why["not due"]:
		return false, "no expiry"
	}
	return false, "not due"
}

// fromRegistry decides from the registry alone (KMS could not be read).
// roleUnavailable is the decision for a key of an account whose member
// role can't be assumed: not due (nothing could be done), the registry's
// expiry kept for the fleet's counts.
func roleUnavailable(e registry.Entry, cause string, now time.Time) Decision {
	d := fromRegistry(e, now)
	d.Due, d.Reason, d.Regions, d.Rotate, d.RoleUnavailable = false, ReasonRoleUnavailable, nil, false, cause
	return d
}

func fromRegistry(e registry.Entry, now time.Time) Decision {
	due, why := e.IsDue(now)
	d := Decision{Due: due, Reason: why, FromRegistry: true}
	if first := e.Earliest(); first != nil {
		d.Earliest = &Expiry{KeyARN: first.KeyARN, ValidTo: first.ValidTo}
	}
	if due {
		it := ItemAt(e, now)
		d.Regions, d.Rotate = it.Regions, it.Rotate
	}
	return d
}

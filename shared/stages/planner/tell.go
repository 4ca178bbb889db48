package planner

import (
	"context"
	"slices"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// decide gathers what KMS says about e (when the stage reads KMS) and
// decides.
func (p *Stage) decide(ctx context.Context, st *Stats, e registry.Entry, now time.Time) (Decision, error) {
	if p.KMS == nil {
		return fromRegistry(e, now), nil
	}
	if u := st.unavailable(e.Account()); u != nil {
		// Told already in this run: no AssumeRole again per key.
		return roleUnavailable(e, u.Cause, now), nil
	}
	f, err := Gather(ctx, p.KMS, p.Pace, e)
	if err != nil {
		return Decision{}, err
	}
	return Decide(e, f, now), nil
}

// itemFor is the rotation input of a decision.
func itemFor(e registry.Entry, d Decision) Item {
	it := ItemOf(e)
	it.Rotate, it.Regions = d.Rotate, d.Regions
	return it
}

// tell counts what the decision says about the fleet (FewestDaysLeft,
// drift, keys near expiry, replicas gone or leaving) and, in a fleet run,
// notifies and takes gone replicas out of the registry.
func (p *Stage) tell(ctx context.Context, st *Stats, e registry.Entry, d Decision, now time.Time) error {
	log := telemetry.Logger(ctx)
	day := now.UTC().Format(time.DateOnly)
	if d.FromRegistry && p.KMS != nil {
		st.Unread++
	}
	if d.RoleUnavailable != "" {
		if err := p.tellRole(ctx, st, e, d, day); err != nil {
			return err
		}
	}
	st.ReplicasLeaving += len(d.Leaving)
	if d.PrimaryGone {
		st.KeysGone++
		log.Warn("registered key not found in KMS", "keyArn", e.KeyARN)
	}
	if d.Earliest != nil {
		days := registry.DaysLeft(d.Earliest.ValidTo, now)
		if st.FewestDaysLeft == nil || days < *st.FewestDaysLeft {
			st.FewestDaysLeft, st.FewestDaysLeftKey = &days, d.Earliest.KeyARN
		}
		if days < p.AlarmDays {
			st.ExpiringSoon++
			log.Warn("key material expires soon", "keyArn", e.KeyARN, "expiringKeyArn", d.Earliest.KeyARN, "daysLeft", days)
			if _, err := p.Notify.Send(ctx, expiringNotice(e, *d.Earliest, days, p.AlarmDays), day); err != nil {
				return err
			}
		}
	}
	if len(d.Drift) > 0 {
		st.Drifted++
		log.Warn("KMS expiry earlier than the registry: renewing", "keyArn", e.KeyARN, "regions", len(d.Drift))
		if _, err := p.Notify.Send(ctx, driftNotice(e, d.Drift), day); err != nil {
			return err
		}
	}
	for _, g := range d.Gone {
		st.ReplicasGone++
		log.Warn("replica gone from KMS", "keyArn", e.KeyARN, "replicaArn", g.KeyARN)
		if p.Notify == nil || p.Replicas == nil {
			continue
		}
		if _, err := p.Notify.Send(ctx, goneNotice(e, g), day); err != nil {
			return err
		}
		at := slices.IndexFunc(e.Replicas, func(r registry.Replica) bool { return r.KeyARN == g.KeyARN })
		if err := p.Replicas.DropReplica(ctx, e.KeyARN, at, g.KeyARN); err != nil {
			return err
		}
	}
	return nil
}

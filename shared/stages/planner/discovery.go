package planner

// The fleet run's discovery step (optional: AdoptTag set). On the first
// page of a run, before the registry is read, each served account is
// searched in the deployment's Region (Discover): keys tagged for adoption
// are adopted (Adopt: checked as register checks them, registered with the
// registry's versioned write), so the same run's pages plan them; the
// tagged keys that fail are logged and notified once a day; EXTERNAL keys
// nobody manages whose material expires within ExpiryAlarmDays are
// counted (metric UnmanagedKeysExpiring), logged and notified once a day.
// With no Discovery the run makes no discovery call at all.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// DiscoveryStore is the part of the registry discovery uses: whether a key
// is registered, and the registration (*registry.Store).
type DiscoveryStore interface {
	AdoptStore
	Get(ctx context.Context, arn string) (*registry.Entry, error)
}

// Discovery is the discovery step's configuration and clients.
type Discovery struct {
	// Selector is AdoptTag (one KEY=VALUE); Rules map keys to secrets and
	// give the policy and what the deployment allows.
	Selector map[string]string
	Rules    AdoptRules
	// Accounts are the served accounts, Region the deployment's.
	Accounts []string
	Region   string
	// KMS gives the client of an account in a Region; Secrets reads the
	// secrets (routed to a member's account by the secret ARN).
	KMS     func(account, region string) DiscoveryAPI
	Secrets keymaterial.SecretReader
	Store   DiscoveryStore
	// Reserve is the time left to the page after discovery (the planner's
	// Lambda timeout): discovery stops, Incomplete, when the invocation's
	// deadline is nearer than this.
	Reserve time.Duration
}

// DiscoveryStats are what the discovery step found, in a run's Stats.
type DiscoveryStats struct {
	Accounts int `json:"accounts"`
	// Candidates counts the EXTERNAL keys seen, Tagged those tagged for
	// adoption.
	Candidates int `json:"candidates"`
	Tagged     int `json:"tagged"`
	Adopted    int `json:"adopted"`
	Skipped    int `json:"skipped"`
	Failed     int `json:"failed"`
	// UnmanagedExpiring counts EXTERNAL keys nobody manages expiring
	// within ExpiryAlarmDays; Unmanaged lists up to MaxUnmanagedKeys.
	UnmanagedExpiring int         `json:"unmanagedExpiring"`
	Unmanaged         []Unmanaged `json:"unmanaged,omitempty"`
	// Errors names the accounts whose discovery failed (the run goes on);
	// Incomplete: the time left ran out.
	Errors     []UnavailableAccount `json:"errors,omitempty"`
	Incomplete bool                 `json:"incomplete,omitempty"`
}

// MaxUnmanagedKeys bounds DiscoveryStats.Unmanaged (the run's state stays
// small); UnmanagedExpiring counts them all.
const MaxUnmanagedKeys = 20

// Notification kinds of discovery (one mark each per key per day).
const (
	KindAdoptSkipped      = "adoptSkipped"
	KindUnmanagedExpiring = "unmanagedExpiring"
)

// discover runs the discovery step of a run starting at now.
func (p *Stage) discover(ctx context.Context, now time.Time) (*DiscoveryStats, error) {
	d := p.Discovery
	st := &DiscoveryStats{}
	dctx, cancel := d.window(ctx)
	defer cancel()
	for _, account := range d.Accounts {
		st.Accounts++
		err := p.discoverIn(dctx, st, account, now)
		switch {
		case ctx.Err() != nil:
			return st, ctx.Err()
		case dctx.Err() != nil:
			st.Incomplete = true
			telemetry.Logger(ctx).Warn("discovery stopped: the planner's time ran out; the next run discovers again", "account", account, "region", d.Region)
			return st, nil
		case err != nil:
			st.Errors = append(st.Errors, UnavailableAccount{Account: account, Cause: clip(flow.Sanitize(err.Error()), MaxCauseLen)})
			telemetry.Logger(ctx).Error("discovery failed in an account; the run goes on", "account", account, "region", d.Region, "error", flow.Sanitize(err.Error()))
		}
	}
	telemetry.Logger(ctx).Info("discovery done", "accounts", st.Accounts, "candidates", st.Candidates, "tagged", st.Tagged, "adopted", st.Adopted,
		"skipped", st.Skipped, "failed", st.Failed, "unmanagedExpiring", st.UnmanagedExpiring)
	return st, nil
}

// window is the context of discovery: the invocation's, ending Reserve
// before its deadline.
func (d *Discovery) window(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && d.Reserve > 0 {
		return context.WithDeadline(ctx, dl.Add(-d.Reserve))
	}
	return context.WithCancel(ctx)
}

// discoverIn discovers, adopts and reports in one account.
func (p *Stage) discoverIn(ctx context.Context, st *DiscoveryStats, account string, now time.Time) error {
	d := p.Discovery
	budget := account + "/" + d.Region
	found, err := Discover(ctx, d.KMS(account, d.Region), p.Pace, budget, d.Selector)
	if err != nil {
		return err
	}
	for _, c := range found {
		st.Candidates++
		if err := p.discovered(ctx, st, c, now); err != nil {
			return err
		}
	}
	return nil
}

// discovered adopts a tagged candidate, or reports an unmanaged one
// expiring soon.
func (p *Stage) discovered(ctx context.Context, st *DiscoveryStats, c Candidate, now time.Time) error {
	d, log, day := p.Discovery, telemetry.Logger(ctx), now.UTC().Format(time.DateOnly)
	adopted := false
	if c.Tagged {
		st.Tagged++
		e, err := d.registered(ctx, c)
		if err != nil {
			return err
		}
		f := AdoptFacts{Candidate: c, Registered: e != nil}
		if e != nil {
			f.RegisteredSecret = e.SecretID
		}
		res := Adopt(ctx, d.Secrets, d.Store, d.Rules, f, now)
		adopted = res.Result == Adopted
		if err := p.tellAdopt(ctx, st, res, day); err != nil {
			return err
		}
		if res.Result == AlreadyRegistered {
			return nil
		}
	}
	if adopted {
		return nil
	}
	if _, soon := UnmanagedExpiring(c, false, now, p.AlarmDays); !soon {
		return nil
	}
	e, err := d.registered(ctx, c)
	if err != nil {
		return err
	}
	u, soon := UnmanagedExpiring(c, e != nil, now, p.AlarmDays)
	if !soon {
		return nil
	}
	st.UnmanagedExpiring++
	if len(st.Unmanaged) < MaxUnmanagedKeys {
		st.Unmanaged = append(st.Unmanaged, u)
	}
	log.Warn("unmanaged EXTERNAL key expires soon", "keyArn", u.KeyARN, "account", u.Account, "region", u.Region, "validTo", u.ValidTo, "daysLeft", u.DaysLeft)
	_, err = p.Notify.Send(ctx, unmanagedNotice(u, p.AlarmDays), day)
	return err
}

// registered returns the registry entry that manages candidate c: its own,
// or, for a multi-Region replica, its primary's (nil: none).
func (d *Discovery) registered(ctx context.Context, c Candidate) (*registry.Entry, error) {
	arn := aws.ToString(c.Key.Arn)
	if mr := c.Key.MultiRegionConfiguration; mr != nil && mr.MultiRegionKeyType == types.MultiRegionKeyTypeReplica && mr.PrimaryKey != nil {
		arn = aws.ToString(mr.PrimaryKey.Arn)
	}
	e, err := d.Store.Get(ctx, arn)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the registry entry of %s: %w", arn, err)
	}
	return e, nil
}

// tellAdopt counts and logs one adoption and notifies a key that could not
// be adopted (once a day per key).
func (p *Stage) tellAdopt(ctx context.Context, st *DiscoveryStats, res AdoptResult, day string) error {
	log := telemetry.Logger(ctx)
	switch res.Result {
	case Adopted:
		st.Adopted++
		log.Info("key adopted: registered, renewed when due", "keyArn", res.KeyARN, "secretId", res.SecretID)
		return nil
	case AlreadyRegistered:
		return nil
	case Failed:
		st.Failed++
	default:
		st.Skipped++
	}
	log.Warn("key tagged for adoption not adopted", "keyArn", res.KeyARN, "result", res.Result, "secretId", res.SecretID, "reason", flow.Sanitize(res.Reason))
	_, err := p.Notify.Send(ctx, adoptNotice(res), day)
	return err
}

// adoptNotice tells that a key tagged for adoption was not adopted.
func adoptNotice(res AdoptResult) Notice {
	body := fmt.Sprintf("A KMS key tagged for adoption (AdoptTag) was not registered by the fleet run's discovery.\n\nKey:        %s\nSecret:     %s\nResult:     %s\nReason:     %s\n\nWhat to do: fix what the reason names (the secret tag or naming rule, the secret's material, the managed tag), or run `kms-reimport adopt --dry-run` to check; the next fleet run tries again.\n",
		res.KeyARN, orNone(res.SecretID), res.Result, flow.Sanitize(res.Reason))
	return Notice{Kind: KindAdoptSkipped, KeyARN: res.KeyARN, Subject: snsSubject("kms-reimport: key not adopted " + shortKey(res.KeyARN)), Body: body}
}

// unmanagedNotice tells that an EXTERNAL key nobody manages expires soon.
func unmanagedNotice(u Unmanaged, alarmDays float64) Notice {
	body := fmt.Sprintf("An EXTERNAL KMS key that no one manages (not in the registry, not adopted) has material expiring within %g days (ExpiryAlarmDays).\n\nKey:        %s\nAccount:    %s\nRegion:     %s\nValidTo:    %s (%.2f days left)\n\nWhat to do: register it (kms-reimport register), tag it for adoption (AdoptTag), or reimport its material by hand before it expires.\n",
		alarmDays, u.KeyARN, u.Account, u.Region, u.ValidTo.Format(time.RFC3339), u.DaysLeft)
	return Notice{Kind: KindUnmanagedExpiring, KeyARN: u.KeyARN, Subject: snsSubject("kms-reimport: unmanaged key expires soon " + shortKey(u.KeyARN)), Body: body}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// EmitMetrics writes the discovery's metrics (EMF) at the end of a run:
// nothing when the run had no discovery step.
func (st *DiscoveryStats) EmitMetrics() {
	if st == nil {
		return
	}
	telemetry.Emit(telemetry.Service,
		telemetry.Metric{Name: "UnmanagedKeysExpiring", Value: float64(st.UnmanagedExpiring), Unit: telemetry.Count},
		telemetry.Metric{Name: "KeysAdopted", Value: float64(st.Adopted), Unit: telemetry.Count},
		telemetry.Metric{Name: "KeysNotAdopted", Value: float64(st.Skipped + st.Failed), Unit: telemetry.Count})
}

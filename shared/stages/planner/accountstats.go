package planner

import (
	"time"

	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// AccountStats are the fleet's numbers of one account, emitted with the
// dimensions [Service, Account] at the end of a run (EmitMetrics).
type AccountStats struct {
	Account string `json:"account"`
	Scanned int    `json:"scanned"`
	Due     int    `json:"due"`
	// FewestDaysLeft is the least remaining validity of the account's keys
	// (replicas included), as Stats.FewestDaysLeft is the fleet's.
	FewestDaysLeft *float64 `json:"fewestDaysLeft,omitempty"`
	Drifted        int      `json:"drifted"`
	ExpiringSoon   int      `json:"expiringSoon"`
}

// MaxAccountStats bounds Stats.Accounts (the run's state stays small): the
// keys of accounts past it are counted in the fleet's totals only.
// accountStatsBytes is the most one entry takes encoded, kept free on
// every page (statsSlack).
const (
	MaxAccountStats   = 100
	accountStatsBytes = 160
)

// countAccount counts scanned entry e, decided d, into its account's
// numbers: the same facts tell counts into the fleet's (a key's earliest
// ValidTo, drift, fewer than alarmDays left).
func (st *Stats) countAccount(e registry.Entry, d Decision, now time.Time, alarmDays float64) {
	a := st.account(e.Account())
	if a == nil {
		return
	}
	a.Scanned++
	if d.Due {
		a.Due++
	}
	if len(d.Drift) > 0 {
		a.Drifted++
	}
	if d.Earliest == nil {
		return
	}
	days := registry.DaysLeft(d.Earliest.ValidTo, now)
	if a.FewestDaysLeft == nil || days < *a.FewestDaysLeft {
		a.FewestDaysLeft = &days
	}
	if days < alarmDays {
		a.ExpiringSoon++
	}
}

// account is the run's entry for account, added if there is room; nil for
// a key ID that names no account, or past MaxAccountStats.
func (st *Stats) account(account string) *AccountStats {
	if account == "" {
		return nil
	}
	for i := range st.Accounts {
		if st.Accounts[i].Account == account {
			return &st.Accounts[i]
		}
	}
	if len(st.Accounts) >= MaxAccountStats {
		return nil
	}
	st.Accounts = append(st.Accounts, AccountStats{Account: account})
	return &st.Accounts[len(st.Accounts)-1]
}

// AccountDimensions are the dimension set of the per-account metrics.
var AccountDimensions = []string{"Service", "Account"}

// emitAccounts writes one EMF line per account, with the dimension set
// [Service, Account] only: the fleet's line keeps [Service] (the alarms'),
// and an account's values under [Service] too would mix into it (two
// accounts' KeysExpiringSoon read as their Maximum, not their total).
func (st Stats) emitAccounts() {
	for _, a := range st.Accounts {
		ms := []telemetry.Metric{
			{Name: "KeysManaged", Value: float64(a.Scanned), Unit: telemetry.Count},
			{Name: "KeysDue", Value: float64(a.Due), Unit: telemetry.Count},
			{Name: "KeysDrifted", Value: float64(a.Drifted), Unit: telemetry.Count},
			{Name: "KeysExpiringSoon", Value: float64(a.ExpiringSoon), Unit: telemetry.Count},
		}
		if a.FewestDaysLeft != nil {
			ms = append(ms, telemetry.Metric{Name: "FewestDaysLeft", Value: *a.FewestDaysLeft, Unit: telemetry.None})
		}
		dims := map[string]string{"Service": telemetry.Service["Service"], "Account": a.Account}
		telemetry.EmitSets(dims, [][]string{AccountDimensions}, ms...)
	}
}

package planner

import (
	"context"
	"fmt"

	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// UnavailableAccount is a member account whose role the run could not
// assume, with the cause (naming the role ARN).
type UnavailableAccount struct {
	Account string `json:"account"`
	Cause   string `json:"cause"`
}

// KindRoleUnavailable is the notification of a member account whose role
// can't be assumed.
const KindRoleUnavailable = "memberRoleUnavailable"

// unavailable returns the run's entry for account, or nil.
func (s *Stats) unavailable(account string) *UnavailableAccount {
	for i := range s.UnavailableAccounts {
		if s.UnavailableAccounts[i].Account == account {
			return &s.UnavailableAccounts[i]
		}
	}
	return nil
}

// tellRole counts a key not planned for its account's member role and, the
// first time in the run for that account, logs it and notifies (at most
// once a day per account, by the notification marks).
func (p *Stage) tellRole(ctx context.Context, st *Stats, e registry.Entry, d Decision, day string) error {
	st.RoleUnavailable++
	account := e.Account()
	if st.unavailable(account) != nil {
		return nil
	}
	st.UnavailableAccounts = append(st.UnavailableAccounts, UnavailableAccount{Account: account, Cause: clip(d.RoleUnavailable, MaxCauseLen)})
	telemetry.Logger(ctx).Error("member role unavailable: the account's keys are not renewed in this run", "account", account, "keyArn", e.KeyARN, "error", "MemberRoleUnavailable", "cause", d.RoleUnavailable)
	_, err := p.Notify.Send(ctx, roleNotice(account, d.RoleUnavailable), day)
	return err
}

// roleNotice tells that a member account's keys can't be renewed.
func roleNotice(account, cause string) Notice {
	body := fmt.Sprintf("The hub could not assume the member role of account %s, so none of that account's keys is renewed in this run; every other account goes on.\n\nAccount:    %s\nCause:      %s\n\nWhat to do: deploy infra/member/template.yaml in the account (StackSets) with this hub's account, stack name and ExternalId, and check that no SCP denies sts:AssumeRole (docs/deploy.md, \"Many accounts\"). The next fleet run renews the keys once the role can be assumed.\n", account, account, cause)
	return Notice{Kind: KindRoleUnavailable, KeyARN: "account/" + account, Subject: snsSubject("kms-reimport: member role unavailable in account " + account), Body: body}
}

package planner

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// memberKMS is fakeKMS with one member account whose role can't be
// assumed: every read of its keys is MemberRoleUnavailable.
type memberKMS struct {
	fakeKMS
	denied string
}

func (k *memberKMS) Describe(ctx context.Context, region, arn string) (*types.KeyMetadata, error) {
	if registry.AccountOf(arn) == k.denied {
		k.calls = append(k.calls, region+" "+arn)
		return nil, flow.Errorf(flow.MemberRoleUnavailable, "the member role arn:aws:iam::%s:role/kms-reimport-member of account %s can't be assumed", k.denied, k.denied)
	}
	return k.fakeKMS.Describe(ctx, region, arn)
}

// TestMemberRoleUnavailableToldOnce: a run over two accounts, the member's
// role missing: the hub's due keys are planned, the member's are not
// (their rotations could only fail), counted, and the account is told
// once in the run (one notification, one KMS read attempt for the whole
// account, across pages), whatever the number of its keys.
func TestMemberRoleUnavailableToldOnce(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	f := newFleet(t, now)
	const member = "444455556666"
	memberKey := func(i int) string { return strings.Replace(arn(i), "111122223333", member, 1) }
	k := &memberKMS{fakeKMS: fakeKMS{keys: map[string]KeyFacts{}}, denied: member}
	for i := 1; i <= 3; i++ {
		f.key(arn(i), f.days(5))
		f.key(memberKey(10+i), f.days(5))
		k.keys[arn(i)] = KeyFacts{KeyARN: arn(i), State: "Enabled", ValidTo: f.days(5), ExpirationModel: "KEY_MATERIAL_EXPIRES"}
	}
	s := &fakeSNS{}
	p := &Stage{Registry: f.s, PageSize: 2, Now: func() time.Time { return now }, KMS: k,
		Notify: &Notifier{SNS: s, Topic: "arn:aws:sns:eu-west-2:111122223333:t", Marks: memMarks{}}, AlarmDays: 7}
	out, items := planAll(t, p)
	if got, want := keys(items), []string{arn(1), arn(2), arn(3)}; !slices.Equal(got, want) {
		t.Errorf("planned %v, want the hub's keys only %v", got, want)
	}
	st := out.Stats
	if st.RoleUnavailable != 3 || len(st.UnavailableAccounts) != 1 || st.UnavailableAccounts[0].Account != member ||
		!strings.Contains(st.UnavailableAccounts[0].Cause, "role/kms-reimport-member") {
		t.Errorf("roleUnavailable %d, accounts %+v; want 3 keys of one account named with its role", st.RoleUnavailable, st.UnavailableAccounts)
	}
	if st.Reasons[ReasonRoleUnavailable] != 3 {
		t.Errorf("reasons %v", st.Reasons)
	}
	n := 0
	for _, c := range k.calls {
		if strings.Contains(c, member) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d reads of the member's keys, want 1: the account is known unavailable after the first", n)
	}
	told := 0
	for _, m := range s.msgs {
		if strings.Contains(*m.Subject, "member role unavailable") {
			told++
			if !strings.Contains(*m.Message, member) || !strings.Contains(*m.Message, "arn:aws:iam::"+member+":role/kms-reimport-member") {
				t.Errorf("notice %q does not name the account and the role", *m.Message)
			}
		}
	}
	if told != 1 {
		t.Errorf("told %d times, want once per run", told)
	}
}

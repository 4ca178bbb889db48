package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

const (
	memberA     = "444455556666"
	memberDown  = "777788889999"
	externalID  = "ext-id-do-not-print"
	memberKey   = "arn:aws:kms:eu-west-2:" + memberA + ":key/bbbbbbbb-12ab-34cd-56ef-1234567890ab"
	downKey     = "arn:aws:kms:eu-west-2:" + memberDown + ":key/cccccccc-12ab-34cd-56ef-1234567890ab"
	memberAlias = "arn:aws:kms:eu-west-2:" + memberA + ":alias/member-payments"
)

// fakeAssume records each AssumeRole asked (role ARN, ExternalId) and
// answers credentials, or an AccessDenied for the accounts in denied.
type fakeAssume struct {
	mu     sync.Mutex
	asked  []string
	denied map[string]bool
}

func (f *fakeAssume) assume(_ aws.Config, role, ext string) aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.asked = append(f.asked, role+" "+ext)
		if f.denied[kmsaccess.AccountOf(role)] {
			return aws.Credentials{}, errors.New("operation error STS: AssumeRole, api error AccessDenied: not authorized to perform sts:AssumeRole")
		}
		return aws.Credentials{AccessKeyID: "member-" + kmsaccess.AccountOf(role), SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(time.Hour)}, nil
	})
}

func withAssume(t *testing.T, denied ...string) *fakeAssume {
	f := &fakeAssume{denied: map[string]bool{}}
	for _, a := range denied {
		f.denied[a] = true
	}
	saved := assumeRole
	assumeRole = f.assume
	t.Cleanup(func() { assumeRole = saved })
	return f
}

// TestMemberAccess: flags win over the environment, the role name falls
// back to the templates' default; without an ExternalId members can't be
// reached; the members are the accounts of the keys other than the
// caller's, each once.
func TestMemberAccess(t *testing.T) {
	for _, c := range []struct {
		name            string
		flags           memberAccess
		envRole, envExt string
		role, ext, why  string
	}{
		{"flags", memberAccess{"r1", "e1"}, "r2", "e2", "r1", "e1", ""},
		{"environment", memberAccess{}, "r2", "e2", "r2", "e2", ""},
		{"default role, no ExternalId", memberAccess{}, "", "", defaultMemberRole, "", "pass --external-id or set MEMBER_EXTERNAL_ID"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(kmsaccess.MemberRoleVar, c.envRole)
			t.Setenv(kmsaccess.ExternalIDVar, c.envExt)
			got := c.flags.resolved()
			if got.role != c.role || got.externalID != c.ext || !strings.Contains(got.missing(), c.why) || (c.why == "") != (got.missing() == "") {
				t.Fatalf("%+v, missing %q; want role %q, ExternalId %q, missing naming %q", got, got.missing(), c.role, c.ext, c.why)
			}
		})
	}
	ms := membersOf(caller{account: adoptAccount, partition: "aws"}, memberAccess{role: "r", externalID: "e"},
		[]string{downKey, testKey, memberKey, memberAlias, "alias/own", "", "1234abcd-12ab-34cd-56ef-1234567890ab"})
	if ms.Own != adoptAccount || !slices.Equal(ms.Accounts, []string{memberA, memberDown}) || ms.RoleName != "r" || ms.ExternalID != "e" {
		t.Fatalf("members %+v", ms)
	}
}

// TestMemberSecrets: for a member account, a secret ARN of that account
// is read through the member role; a name, or an ARN of another account,
// through the hub's reader.
func TestMemberSecrets(t *testing.T) {
	inMember := "arn:aws:secretsmanager:eu-west-2:" + memberA + ":secret:kms-reimport/m-AbCdEf"
	inHub := "arn:aws:secretsmanager:eu-west-2:" + adoptAccount + ":secret:kms-reimport/h-AbCdEf"
	member := namedSecrets{binary: map[string][]byte{inMember: {1}}}
	hub := namedSecrets{binary: map[string][]byte{"kms-reimport/h": {2}, inHub: {3}}}
	s := accountReach{account: memberA, kmsCfg: &aws.Config{}, secrets: member}.secretsVia(hub)
	for id, want := range map[string]byte{inMember: 1, "kms-reimport/h": 2, inHub: 3} {
		out, err := s.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		if err != nil || out.SecretBinary[0] != want {
			t.Errorf("%s: %v, %v; want the secret of the account that holds it", id, out, err)
		}
	}
	if own := (accountReach{}).secretsVia(hub); own.(namedSecrets).binary == nil {
		t.Error("the caller's own account: want the hub's reader as given")
	}
}

// TestAdoptMemberAccount: --account of a member account discovers with
// the member role's credentials (role and ExternalId as given); without
// an ExternalId it is refused before any call (exit 2); a role that can't
// be assumed is an error naming the account and the role (exit 1), before
// any key is read. The ExternalId is never printed.
func TestAdoptMemberAccount(t *testing.T) {
	w := withAdoptFakes(t)
	t.Setenv(kmsaccess.MemberRoleVar, "")
	t.Setenv(kmsaccess.ExternalIDVar, "")
	fa := withAssume(t, memberDown)
	var creds []string
	adoptClients.kms = func(c aws.Config, account, region string) discoveryAPI {
		cr, err := c.Credentials.Retrieve(context.Background())
		creds = append(creds, fmt.Sprint(account, " ", cr.AccessKeyID, err))
		return w.kms
	}
	args := []string{"adopt", "--table", "t", "--tag", "a=b", "--valid-for", "90d", "--account"}
	var o, e bytes.Buffer
	if code := run(append(args, memberA), &o, &e); code != exitUsage || !strings.Contains(e.String(), "--external-id") || len(fa.asked) != 0 || len(creds) != 0 {
		t.Fatalf("no ExternalId: exit %d, stderr %q, assumed %v", code, e.String(), fa.asked)
	}
	e.Reset()
	if code := run(append(args, memberA, "--external-id", externalID, "--member-role", "byok-member"), &o, &e); code != exitOK {
		t.Fatalf("member: exit %d: %s", code, e.String())
	}
	if want := []string{memberA + " member-" + memberA + "<nil>"}; !slices.Equal(creds, want) {
		t.Errorf("KMS clients %v; want %v (the member role's credentials)", creds, want)
	}
	if len(fa.asked) == 0 || fa.asked[0] != "arn:aws:iam::"+memberA+":role/byok-member "+externalID {
		t.Errorf("AssumeRole asked %v", fa.asked)
	}
	e.Reset()
	creds = nil
	t.Setenv(kmsaccess.ExternalIDVar, externalID)
	code := run(append(args, memberDown), &o, &e)
	if code != exitFailure || !strings.Contains(e.String(), "account "+memberDown) || !strings.Contains(e.String(), "arn:aws:iam::"+memberDown+":role/kms-reimport-member") || len(creds) != 0 {
		t.Fatalf("role denied: exit %d, stderr %q, KMS clients %v", code, e.String(), creds)
	}
	if strings.Contains(o.String()+e.String(), externalID) {
		t.Error("the ExternalId was printed")
	}
}

// statusAccounts is a registry of the caller's key, a member's key and
// a key of a member whose role is denied.
func statusAccounts(t *testing.T) *fakes {
	f := withFakes(t)
	far := time.Now().Add(60 * 24 * time.Hour)
	for _, k := range []string{testKey, memberKey, downKey} {
		f.kms.addKey(k, &far)
		registerFake(t, f, registry.Entry{KeyARN: k, SecretID: "s", Status: registry.Active, CurrentValidTo: &far, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h"}})
	}
	f.kms.keys[memberAlias] = f.kms.keys[memberKey]
	return f
}

// TestStatusAccounts: every row names its account; a member's key is
// read from KMS; the keys of a member whose role can't be assumed are
// unreachable, naming the account and the role, and fail --check;
// --account filters; without an ExternalId every member is unreachable.
func TestStatusAccounts(t *testing.T) {
	statusAccounts(t)
	fa := withAssume(t, memberDown)
	t.Setenv(kmsaccess.ExternalIDVar, externalID)
	out, errOut, code := cliRun("status", "--table", "t", "--json", "--check", "--days", "1")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailure {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	rows := map[string]statusRow{}
	for _, r := range rep.Keys {
		rows[r.KeyARN] = r
	}
	if r := rows[memberKey]; r.Account != memberA || !r.FromKMS || r.Unreachable != "" {
		t.Errorf("member key: %+v; want account %s, read from KMS", r, memberA)
	}
	if r := rows[testKey]; r.Account != "111122223333" || !r.FromKMS {
		t.Errorf("own key: %+v", r)
	}
	if r := rows[downKey]; r.Account != memberDown || r.FromKMS || !strings.Contains(r.Unreachable, "account "+memberDown) || !strings.Contains(r.Unreachable, ":role/kms-reimport-member") {
		t.Errorf("denied member's key: %+v; want unreachable naming the account and the role", r)
	}
	if f := rep.Check.Findings; len(f) != 1 || f[0].Reason != findingUnreachable || f[0].Account != memberDown || f[0].KeyARN != downKey {
		t.Errorf("findings %+v; want the one unreachable key", f)
	}
	if n := strings.Count(strings.Join(fa.asked, "\n"), memberDown); n != 1 {
		t.Errorf("AssumeRole in %s asked %d times; want once per run (%v)", memberDown, n, fa.asked)
	}
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1")
	for _, w := range []string{"ACCOUNT", memberA, "unreachable: ", "unreachable account " + memberDown + ", " + downKey} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, externalID) || code != exitFailure {
		t.Errorf("exit %d, or the ExternalId printed:\n%s", code, out)
	}
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1", "--account", memberA)
	if code != exitOK || !strings.Contains(out, "1 keys") || strings.Contains(out, downKey) {
		t.Errorf("--account %s: exit %d:\n%s", memberA, code, out)
	}
	out, _, code = cliRun("status", "--table", "t", "--key", memberAlias, "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || len(rep.Keys) != 1 || rep.Keys[0].KeyARN != memberKey {
		t.Errorf("--key of a member's alias ARN: exit %d, %v:\n%s", code, err, out)
	}
	t.Setenv(kmsaccess.ExternalIDVar, "")
	out, _, code = cliRun("status", "--table", "t", "--check", "--days", "1")
	if code != exitFailure || strings.Count(out, "--external-id") < 2 {
		t.Errorf("no ExternalId: exit %d; want both members unreachable naming --external-id:\n%s", code, out)
	}
	if _, errOut, code := cliRun("status", "--table", "t", "--account", "4444"); code != exitUsage || !strings.Contains(errOut, "12-digit") {
		t.Errorf("--account 4444: exit %d %q", code, errOut)
	}
}

// TestHistoryMemberKey: history --key of a member's alias ARN resolves
// through the member role; the report carries the account; a member
// whose role can't be assumed is an error naming it.
func TestHistoryMemberKey(t *testing.T) {
	statusAccounts(t)
	withAssume(t, memberDown)
	t.Setenv(kmsaccess.ExternalIDVar, externalID)
	out, errOut, code := cliRun("history", "--table", "t", "--key", memberAlias, "--json")
	var rep historyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK || rep.KeyARN != memberKey || rep.Account != memberA {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	if out, _, _ := cliRun("history", "--table", "t", "--key", memberKey); !strings.Contains(out, "(account "+memberA+")") {
		t.Errorf("table lacks the account:\n%s", out)
	}
	downAlias := strings.Replace(memberAlias, memberA, memberDown, 1)
	if _, errOut, code := cliRun("history", "--table", "t", "--key", downAlias); code != exitFailure || !strings.Contains(errOut, "account "+memberDown) || strings.Contains(errOut, externalID) {
		t.Errorf("denied member: exit %d, %q", code, errOut)
	}
}

// TestAssumeRoleOverSTS: the member role is assumed with sts:AssumeRole
// (the stages' own code, kmsaccess.StsAssume) carrying the role ARN and
// the ExternalId; a denied AssumeRole names the account and the role.
func TestAssumeRoleOverSTS(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		asked = append(asked, r.Form.Get("Action")+" "+r.Form.Get("RoleArn")+" "+r.Form.Get("ExternalId"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		if strings.Contains(r.Form.Get("RoleArn"), memberDown) {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error><RequestId>1</RequestId></ErrorResponse>`)
			return
		}
		fmt.Fprintf(w, `<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIAMEMBER</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>%s</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::%s:assumed-role/r/kms-reimport-hub</Arn><AssumedRoleId>AROA:kms-reimport-hub</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339), memberA)
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "hub")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hub")
	ctx := context.Background()
	cfg, err := awsConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, m := caller{account: adoptAccount, partition: "aws"}, memberAccess{role: "kms-reimport-member", externalID: externalID}
	reach, code, err := reachAccount(ctx, cfg, c, memberA, m)
	if err != nil || code != exitOK {
		t.Fatalf("reach %s: %d, %v", memberA, code, err)
	}
	if cr, err := reach.kms(cfg).Credentials.Retrieve(ctx); err != nil || cr.AccessKeyID != "ASIAMEMBER" {
		t.Fatalf("member credentials %v, %v", cr.AccessKeyID, err)
	}
	if want := "AssumeRole arn:aws:iam::" + memberA + ":role/kms-reimport-member " + externalID; len(asked) == 0 || asked[0] != want {
		t.Fatalf("STS asked %v; want %q", asked, want)
	}
	_, code, err = reachAccount(ctx, cfg, c, memberDown, m)
	if code != exitFailure || flow.NameOf(err) != flow.MemberRoleUnavailable || !strings.Contains(err.Error(), "arn:aws:iam::"+memberDown+":role/kms-reimport-member") || strings.Contains(err.Error(), externalID) {
		t.Fatalf("denied: %d, %v", code, err)
	}
}

// pagedAliases answers ListAliases one alias a page (Marker: the index of
// the next), or fails with err.
type pagedAliases struct {
	aliases []kmstypes.AliasListEntry
	err     error
}

func (p pagedAliases) ListAliases(_ context.Context, in *kms.ListAliasesInput, _ ...func(*kms.Options)) (*kms.ListAliasesOutput, error) {
	if p.err != nil {
		return nil, p.err
	}
	i := 0
	if in.Marker != nil {
		fmt.Sscan(*in.Marker, &i)
	}
	out := &kms.ListAliasesOutput{}
	if i < len(p.aliases) {
		out.Aliases = p.aliases[i : i+1]
	}
	if i+1 < len(p.aliases) {
		out.Truncated, out.NextMarker = true, aws.String(fmt.Sprint(i+1))
	}
	return out, nil
}

func aliasTo(name, keyARN string) kmstypes.AliasListEntry {
	return kmstypes.AliasListEntry{AliasName: aws.String(name), TargetKeyId: aws.String(keyIDOf(keyARN))}
}

// TestStatusAliasesPerAccount: status lists aliases in each account and
// Region of the keys shown, through that account's clients (a member's
// with the member role's credentials), every page; a key shows the
// aliases of its own account and Region only (a multi-Region key has one
// id in every Region); a member that is down is not asked; an account
// whose listing fails is a warning naming the account and the Region,
// and the others still show theirs; --no-kms lists nothing.
func TestStatusAliasesPerAccount(t *testing.T) {
	f := statusAccounts(t)
	withAssume(t, memberDown)
	t.Setenv(kmsaccess.ExternalIDVar, externalID)
	const memberFail = "555566667777"
	centralKey := "arn:aws:kms:eu-central-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	westReplica := strings.Replace(centralKey, "eu-central-1", "eu-west-2", 1)
	failKey := "arn:aws:kms:eu-west-2:" + memberFail + ":key/eeeeeeee-12ab-34cd-56ef-1234567890ab"
	far := time.Now().Add(60 * 24 * time.Hour)
	for _, k := range []string{centralKey, failKey} {
		f.kms.addKey(k, &far)
		registerFake(t, f, registry.Entry{KeyARN: k, SecretID: "s", Status: registry.Active, CurrentValidTo: &far, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h"}})
	}
	lists := map[string]pagedAliases{
		"111122223333/eu-west-2":    {aliases: []kmstypes.AliasListEntry{aliasTo("alias/own", testKey), aliasTo("alias/west-replica", westReplica)}},
		"111122223333/eu-central-1": {aliases: []kmstypes.AliasListEntry{aliasTo("alias/central", centralKey)}},
		memberA + "/eu-west-2":      {aliases: []kmstypes.AliasListEntry{aliasTo("alias/member-b", memberKey), aliasTo("alias/member-a", memberKey), aliasTo("alias/other", otherKey)}},
		memberFail + "/eu-west-2":   {err: errors.New("api error AccessDeniedException: not authorized to perform kms:ListAliases")},
	}
	var asked []string
	clients.aliases = func(cs *kmsaccess.Clients, partition, account, region string) aliasAPI {
		cr, err := cs.AccountConfig(partition, account).Credentials.Retrieve(context.Background())
		asked = append(asked, fmt.Sprint(account, "/", region, " ", cr.AccessKeyID, err))
		return lists[account+"/"+region]
	}
	out, errOut, code := cliRun("status", "--table", "t", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v: %s%s", code, err, out, errOut)
	}
	got := map[string]string{}
	for _, r := range rep.Keys {
		got[r.KeyARN] = strings.Join(r.Aliases, ",")
	}
	for k, want := range map[string]string{testKey: "alias/own", centralKey: "alias/central", memberKey: "alias/member-a,alias/member-b", failKey: "", downKey: ""} {
		if got[k] != want {
			t.Errorf("aliases of %s: %q; want %q", k, got[k], want)
		}
	}
	slices.Sort(asked)
	want := []string{"111122223333/eu-central-1 test<nil>", "111122223333/eu-west-2 test<nil>",
		memberA + "/eu-west-2 member-" + memberA + "<nil>", memberFail + "/eu-west-2 member-" + memberFail + "<nil>"}
	if !slices.Equal(asked, want) {
		t.Errorf("ListAliases asked of %v; want %v (each account and Region once, with its own credentials; %s down, not asked)", asked, want, memberDown)
	}
	if !strings.Contains(errOut, "aliases of account "+memberFail+" in eu-west-2 not shown") || !strings.Contains(errOut, "AccessDenied") || strings.Count(errOut, "aliases of account") != 1 {
		t.Errorf("stderr %q; want one warning naming account %s and eu-west-2", errOut, memberFail)
	}
	if strings.Contains(out+errOut, externalID) {
		t.Error("the ExternalId was printed")
	}
	table, _, code := cliRun("status", "--table", "t")
	if code != exitOK || !strings.Contains(table, "alias/member-a,alias/member-b") || !strings.Contains(table, "alias/central") {
		t.Errorf("table (exit %d) lacks the member's or the second Region's aliases:\n%s", code, table)
	}
	asked = nil
	if _, errOut, code := cliRun("status", "--table", "t", "--no-kms"); code != exitOK || len(asked) != 0 || errOut != "" {
		t.Errorf("--no-kms: exit %d, ListAliases asked of %v, stderr %q; want nothing read", code, asked, errOut)
	}
}

// TestAliasesPaced: each ListAliases page waits in the budget of the
// account and Region (registry.Budget), the one the DescribeKey reads of
// the same keys take; another account's budget does not wait for it.
func TestAliasesPaced(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var waits []time.Duration
	pace := &planner.Pacer{Rate: 1, Now: func() time.Time { return clock },
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	ctx := context.Background()
	if err := pace.WaitIn(ctx, registry.Budget(testKey, "")); err != nil { // the key's DescribeKey
		t.Fatal(err)
	}
	saved := clients.aliases
	t.Cleanup(func() { clients.aliases = saved })
	clients.aliases = func(_ *kmsaccess.Clients, _, account, _ string) aliasAPI {
		if account == memberA {
			return pagedAliases{aliases: []kmstypes.AliasListEntry{aliasTo("alias/m", memberKey)}}
		}
		return pagedAliases{aliases: []kmstypes.AliasListEntry{aliasTo("alias/a", testKey), aliasTo("alias/b", testKey)}}
	}
	rows := []statusRow{{KeyARN: testKey}, {KeyARN: memberKey}}
	var stderr bytes.Buffer
	addAliases(ctx, keyAccounts{}, pace, rows, &stderr)
	if want := []time.Duration{time.Second, 2 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("waits %v; want %v (two pages after the key's read in its budget; the member's own budget free)", waits, want)
	}
	if strings.Join(rows[0].Aliases, ",") != "alias/a,alias/b" || strings.Join(rows[1].Aliases, ",") != "alias/m" || stderr.Len() != 0 {
		t.Errorf("rows %+v, stderr %q", rows, stderr.String())
	}
}

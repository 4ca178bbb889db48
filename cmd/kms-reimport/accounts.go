package main

// Member accounts (docs/deploy.md, "Many accounts"): the operator's
// commands reach a member account's keys as the stages do, through the
// member role, with the clients of shared/kmsaccess (sts:AssumeRole with
// the ExternalId, cached per account). The caller's own account
// (sts:GetCallerIdentity) is read with the caller's own credentials; any
// other account a key ARN names is a member.
//
// The role name and the ExternalId come from the flags --member-role and
// --external-id, else the environment variables the functions read
// (MEMBER_ROLE_NAME, MEMBER_EXTERNAL_ID), else (the role name only) the
// templates' default, kms-reimport-member. Not from the stack: the hub's
// MemberExternalId is NoEcho, which DescribeStacks answers as ****. The
// ExternalId is never printed: not in --help (its default is empty), not
// in an error, not in the output.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// defaultMemberRole is infra/member/template.yaml's MemberRoleName default.
const defaultMemberRole = "kms-reimport-member"

// assumeRole gives a member role's credentials (kmsaccess.StsAssume, the
// stages' own); the tests replace it.
var assumeRole kmsaccess.AssumeFunc = kmsaccess.StsAssume

// memberAccess is how the command reaches member accounts: the member
// role's name and its ExternalId, as given (flags) then resolved.
type memberAccess struct {
	role, externalID string
}

// memberFlags adds --member-role and --external-id to fs.
func memberFlags(fs *flag.FlagSet) *memberAccess {
	m := &memberAccess{}
	fs.StringVar(&m.role, "member-role", "", "member accounts: the member role's `name` (default: $MEMBER_ROLE_NAME, else "+defaultMemberRole+")")
	fs.StringVar(&m.externalID, "external-id", "", "member accounts: the member role's ExternalId (default: $MEMBER_EXTERNAL_ID, which keeps it out of the process list); never printed")
	return m
}

// resolved is m with the environment's values, then the defaults, where
// a flag was not given.
func (m memberAccess) resolved() memberAccess {
	if m.role == "" {
		m.role = strings.TrimSpace(os.Getenv(kmsaccess.MemberRoleVar))
	}
	if m.role == "" {
		m.role = defaultMemberRole
	}
	if m.externalID == "" {
		m.externalID = os.Getenv(kmsaccess.ExternalIDVar)
	}
	return m
}

// missing says why member accounts can't be reached with m (resolved),
// or "" when they can be tried: a pure check before any STS call.
func (m memberAccess) missing() string {
	if m.externalID == "" {
		return "no ExternalId for the member role: pass --external-id or set " + kmsaccess.ExternalIDVar
	}
	return ""
}

// caller is who runs the command: the account and partition of the
// credentials (sts:GetCallerIdentity).
type caller struct{ account, partition string }

func callerOf(ctx context.Context, api callerAPI) (caller, error) {
	out, err := api.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return caller{}, fmt.Errorf("GetCallerIdentity (the account of the credentials): %w", err)
	}
	c := caller{account: aws.ToString(out.Account), partition: "aws"}
	if p := strings.SplitN(aws.ToString(out.Arn), ":", 3); len(p) == 3 && p[0] == "arn" {
		c.partition = p[1]
	}
	return c, nil
}

// membersOf is whom the command serves: the caller's own account, and
// every other account of keys (ARNs) as a member reached through m.
func membersOf(c caller, m memberAccess, keys []string) kmsaccess.Members {
	ms := kmsaccess.Members{Own: c.account, RoleName: m.role, ExternalID: m.externalID}
	for _, k := range keys {
		if a := kmsaccess.AccountOf(k); a != "" && a != c.account && !slices.Contains(ms.Accounts, a) {
			ms.Accounts = append(ms.Accounts, a)
		}
	}
	slices.Sort(ms.Accounts)
	return ms
}

// memberClients builds the clients of the members' accounts (and the
// caller's own) with kmsaccess, KMS_ENDPOINTS_BY_REGION as the functions
// read it.
func memberClients(cfg aws.Config, ms kmsaccess.Members) (*kmsaccess.Clients, error) {
	eps, err := kmsaccess.EndpointsFromEnv()
	if err != nil {
		return nil, err
	}
	return kmsaccess.NewAccounts(cfg, eps, ms, assumeRole)
}

// probe assumes the member role of each member account once: the
// accounts it fails for, with the cause (flow.MemberRoleUnavailable, or
// AWSTransient, naming the account and the role; never the ExternalId).
// Without an ExternalId every member is down, with that reason.
func probe(ctx context.Context, cs *kmsaccess.Clients, ms kmsaccess.Members, partition string, m memberAccess) map[string]error {
	down := map[string]error{}
	for _, a := range ms.Accounts {
		role := ms.RoleARN(partition, a)
		if why := m.missing(); why != "" {
			down[a] = flow.Errorf(flow.MemberRoleUnavailable, "the member role %s of account %s can't be assumed: %s", role, a, why)
			continue
		}
		if _, err := cs.AccountConfig(partition, a).Credentials.Retrieve(ctx); err != nil {
			down[a] = flow.MemberRole(err, a, role)
		}
	}
	return down
}

// accountsReader reads keys through each key's account (inner), except
// the keys of an account whose member role can't be assumed: those fail
// at once with that account's cause (planner.Gather makes it the key's
// RoleUnavailable).
type accountsReader struct {
	inner planner.KeyReader
	down  map[string]error
}

func (r accountsReader) Describe(ctx context.Context, region, keyID string) (*kmstypes.KeyMetadata, error) {
	if err := r.down[kmsaccess.AccountOf(keyID)]; err != nil {
		return nil, err
	}
	return r.inner.Describe(ctx, region, keyID)
}

// keyAccounts is how status and history reach the accounts of the keys
// they show: whom the command serves (the caller's own account and the
// members), the kmsaccess clients of each (a member's through the member
// role, assumed once by probe and cached) and the members whose role
// can't be assumed (down).
type keyAccounts struct {
	partition string
	members   kmsaccess.Members
	clients   *kmsaccess.Clients
	down      map[string]error
}

// reachAccounts builds the clients of the accounts of keys (ARNs) and
// probes the member role of each member account.
func reachAccounts(ctx context.Context, cfg aws.Config, c caller, m memberAccess, keys []string) (keyAccounts, error) {
	ms := membersOf(c, m, keys)
	cs, err := memberClients(cfg, ms)
	if err != nil {
		return keyAccounts{}, err
	}
	return keyAccounts{partition: c.partition, members: ms, clients: cs, down: probe(ctx, cs, ms, c.partition, m)}, nil
}

// reader is the KeyReader of the accounts: each key read through its own
// account's clients (clients.reader), the keys of a member that is down
// failing at once with its cause.
func (a keyAccounts) reader(cfg aws.Config) (planner.KeyReader, error) {
	kr, err := clients.reader(cfg, a.members)
	if err != nil || len(a.down) == 0 {
		return kr, err
	}
	return accountsReader{inner: kr, down: a.down}, nil
}

// accountReader is the KeyReader of status and history: each key read
// through its own account's clients, a member whose role can't be assumed
// told once per account (probe).
func accountReader(ctx context.Context, cfg aws.Config, c caller, m memberAccess, keys []string) (planner.KeyReader, error) {
	a, err := reachAccounts(ctx, cfg, c, m, keys)
	if err != nil {
		return nil, err
	}
	return a.reader(cfg)
}

// accountReach is how adopt reaches the account of --account: the zero
// value is the caller's own (its configuration as given); a member's
// KMS configuration signs with the member role, and a secret ARN of the
// member account is read there (kmsaccess.Secrets), any other secret
// with the hub's reader.
type accountReach struct {
	account string
	kmsCfg  *aws.Config
	secrets secretReader
}

// reachAccount decides adopt's --account against the caller: the caller's
// own account (or none given) is the caller's credentials; another is a
// member, reached through the member role, which is assumed once here so
// that a role that can't be assumed is told before any key is read.
func reachAccount(ctx context.Context, cfg aws.Config, c caller, account string, m memberAccess) (accountReach, int, error) {
	if account == "" || account == c.account {
		return accountReach{}, exitOK, nil
	}
	if kmsaccess.AccountOf("arn:aws:kms:-:"+account+":key/-") == "" {
		return accountReach{}, exitUsage, fmt.Errorf("flag --account is %q: want a 12-digit account id", account)
	}
	if why := m.missing(); why != "" {
		return accountReach{}, exitUsage, fmt.Errorf("flag --account is %s, a member account (the credentials are of %s): %s", account, c.account, why)
	}
	ms := membersOf(c, m, []string{"arn:" + c.partition + ":kms:-:" + account + ":key/-"})
	cs, err := memberClients(cfg, ms)
	if err != nil {
		return accountReach{}, exitUsage, err
	}
	if err := probe(ctx, cs, ms, c.partition, m)[account]; err != nil {
		return accountReach{}, exitFailure, err
	}
	kc := cs.AccountConfig(c.partition, account)
	return accountReach{account: account, kmsCfg: &kc, secrets: cs.Secrets()}, exitOK, nil
}

// kms is the configuration of the KMS clients of the account.
func (r accountReach) kms(cfg aws.Config) aws.Config {
	if r.kmsCfg == nil {
		return cfg
	}
	return *r.kmsCfg
}

// secretsVia is the secret reader of the account: hub as given for the
// own account; for a member, a secret ARN of the member account read
// through the member role, anything else through hub.
func (r accountReach) secretsVia(hub secretReader) secretReader {
	if r.kmsCfg == nil {
		return hub
	}
	return memberSecrets{account: r.account, member: r.secrets, hub: hub}
}

// memberSecrets routes a read by the secret's account (docs/deploy.md,
// "Where the material lives").
type memberSecrets struct {
	account string
	member  secretReader
	hub     secretReader
}

func (s memberSecrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	if kmsaccess.AccountOf(aws.ToString(in.SecretId)) == s.account {
		return s.member.GetSecretValue(ctx, in, o...)
	}
	return s.hub.GetSecretValue(ctx, in, o...)
}

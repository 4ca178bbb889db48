// Many accounts (docs/deploy.md, "Many accounts"): one deployment, the hub,
// renews keys in member accounts through a role it assumes in each
// (infra/member/template.yaml). A key ARN names its account; the clients
// of a member account sign with that role's temporary credentials
// (sts:AssumeRole with the ExternalId), cached per account and refreshed
// before they expire (aws.CredentialsCache). The hub's own account uses
// the function's own credentials, as with no member accounts at all.

package kmsaccess

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// The environment variables of MembersFromEnv (template.yaml sets them).
const (
	HubAccountVar     = "ACCOUNT_ID"
	MemberAccountsVar = "MEMBER_ACCOUNTS"
	MemberRoleVar     = "MEMBER_ROLE_NAME"
	ExternalIDVar     = "MEMBER_EXTERNAL_ID"
)

// SessionName is the role session name of the hub in member accounts: it
// appears in the member account's CloudTrail as the caller.
const SessionName = "kms-reimport-hub"

// Members is whom a deployment serves and how it reaches member accounts.
type Members struct {
	// Own is the hub's account ("" = not known: every key is reached
	// with the function's own credentials and no account is refused).
	Own string
	// Accounts are the member accounts, RoleName the role assumed in
	// each, ExternalID the ExternalId passed to sts:AssumeRole.
	Accounts   []string
	RoleName   string
	ExternalID string
}

var accountRe = regexp.MustCompile(`^\d{12}$`)

// MembersFromEnv reads ACCOUNT_ID, MEMBER_ACCOUNTS (comma separated),
// MEMBER_ROLE_NAME and MEMBER_EXTERNAL_ID; all optional, but member
// accounts need the role name and the ExternalId.
func MembersFromEnv() (Members, error) {
	m := Members{
		Own:        strings.TrimSpace(os.Getenv(HubAccountVar)),
		RoleName:   strings.TrimSpace(os.Getenv(MemberRoleVar)),
		ExternalID: os.Getenv(ExternalIDVar),
	}
	if m.Own != "" && !accountRe.MatchString(m.Own) {
		return m, fmt.Errorf("environment variable %s is %q; want a 12-digit account id", HubAccountVar, m.Own)
	}
	for _, a := range strings.Split(os.Getenv(MemberAccountsVar), ",") {
		if a = strings.TrimSpace(a); a == "" || a == m.Own || slices.Contains(m.Accounts, a) {
			continue
		}
		if !accountRe.MatchString(a) {
			return m, fmt.Errorf("environment variable %s names %q; want 12-digit account ids, comma separated", MemberAccountsVar, a)
		}
		m.Accounts = append(m.Accounts, a)
	}
	if len(m.Accounts) > 0 && (m.RoleName == "" || m.ExternalID == "") {
		return m, fmt.Errorf("environment variable %s names member accounts, so %s and %s must be set (the member role and its ExternalId)", MemberAccountsVar, MemberRoleVar, ExternalIDVar)
	}
	return m, nil
}

// Served lists the accounts whose keys the deployment renews: its own and
// the members. Empty when the own account is not known (no check).
func (m Members) Served() []string {
	if m.Own == "" {
		return nil
	}
	s := append([]string{m.Own}, m.Accounts...)
	slices.Sort(s)
	return s
}

// Member says whether account is one of the member accounts (reached
// through the member role), not the hub's own.
func (m Members) Member(account string) bool {
	return account != "" && account != m.Own && slices.Contains(m.Accounts, account)
}

// PartitionOfRegion is the partition of a Region, by the Region name
// prefixes of the SDK's partitions.json (aws-cn: cn-; aws-us-gov: us-gov-;
// the isolated ones; aws otherwise): what an ARN built for a Region (a
// member role, a key of discovery) must carry.
func PartitionOfRegion(region string) string {
	for _, p := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"}, {"us-gov-", "aws-us-gov"}, {"us-isob-", "aws-iso-b"}, {"us-isof-", "aws-iso-f"},
		{"us-iso-", "aws-iso"}, {"eu-isoe-", "aws-iso-e"}, {"eusc-", "aws-eusc"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}

// RoleARN is the member role's ARN in account.
func (m Members) RoleARN(partition, account string) string {
	if partition == "" {
		partition = "aws"
	}
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", partition, account, m.RoleName)
}

// AccountOf returns the account of an ARN (a key, an alias, a secret), or
// "" for anything else (a key id, an alias name, a secret name).
func AccountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" || !accountRe.MatchString(parts[4]) {
		return ""
	}
	return parts[4]
}

func partitionOf(arn string) string {
	if parts := strings.SplitN(arn, ":", 3); len(parts) == 3 && parts[0] == "arn" {
		return parts[1]
	}
	return ""
}

// AssumeFunc gives the credentials of roleARN assumed with externalID,
// from the hub's configuration cfg. StsAssume is the real one; tests give
// another.
type AssumeFunc func(cfg aws.Config, roleARN, externalID string) aws.CredentialsProvider

// Session is the member role's session: one hour, STS's own default and
// the most role chaining allows (a Lambda function's credentials are a
// role session already); the SDK's stscreds would ask for 15 minutes.
// RefreshBefore is how long before they expire cached credentials are
// renewed (aws.CredentialsCache's ExpiryWindow, which is 0 unless set:
// without it a call could be signed with credentials about to expire).
const (
	Session       = time.Hour
	RefreshBefore = 5 * time.Minute
)

// StsAssume is sts:AssumeRole through the SDK's stscreds provider, in the
// hub's Region (AWS_ENDPOINT_URL_STS applies), with the ExternalId.
func StsAssume(cfg aws.Config, roleARN, externalID string) aws.CredentialsProvider {
	return stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.ExternalID = aws.String(externalID)
		o.RoleSessionName = SessionName
		o.Duration = Session
	})
}

// cacheOptions renew credentials RefreshBefore (less up to half of it, at
// random, so instances don't all call STS at once) before they expire.
func cacheOptions(o *aws.CredentialsCacheOptions) {
	o.ExpiryWindow = RefreshBefore
	o.ExpiryWindowJitterFrac = 0.5
}

// memberCreds names what getting a member role's credentials fails with
// (flow.MemberRole): the account and the role, MemberRoleUnavailable.
type memberCreds struct {
	p             aws.CredentialsProvider
	account, role string
}

func (m memberCreds) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.p.Retrieve(ctx)
	return c, flow.MemberRole(err, m.account, m.role)
}

// configOf returns the configuration of account's clients: the hub's own
// for its account (or any account not a member), else one with the member
// role's credentials, built once per account and cached. partition is the
// key's (for the role ARN).
func (c *Clients) configOf(partition, account string) aws.Config {
	if !c.members.Member(account) {
		return c.cfg
	}
	if cfg, ok := c.memberCfg[account]; ok {
		return cfg
	}
	cfg := c.cfg.Copy()
	role := c.members.RoleARN(partition, account)
	cfg.Credentials = aws.NewCredentialsCache(memberCreds{p: c.assume(c.cfg, role, c.members.ExternalID), account: account, role: role}, cacheOptions)
	c.memberCfg[account] = cfg
	return cfg
}

// AccountConfig is the configuration of account's clients (the hub's
// own for an account that is not a member; the member role's, cached,
// for a member): for clients of other services in that account, such as
// the operator's discovery (ListKeys) in a member account. partition is
// the hub's ("" = aws), for the role ARN.
func (c *Clients) AccountConfig(partition, account string) aws.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.configOf(partition, account)
}

// KeyIn returns the KMS client of a key's account (an ARN; a key id or an
// alias is the own account's) in region ("" = the ARN's Region, else the
// function's). A multi-Region key's replicas are in its account.
func (c *Clients) KeyIn(arn, region string) API {
	if region == "" {
		region = RegionOf(arn)
	}
	return c.forAccount(partitionOf(arn), AccountOf(arn), region)
}

// AccountIn returns the KMS client of account (a member's with the
// member role; any other account's is the own) in region ("" = the
// function's): for the calls of a whole account and Region that API does
// not list, such as the operator's ListAliases.
func (c *Clients) AccountIn(partition, account, region string) *kms.Client {
	return c.forAccount(partition, account, region)
}

// Members returns whom these clients serve.
func (c *Clients) Members() Members { return c.members }

// Accounted is a Regional that reaches member accounts: KeyIn gives the
// client of a key's own account in a Region. *Clients is one.
type Accounted interface {
	Regional
	KeyIn(arn, region string) API
}

// ForKey returns the client of the key's account and Region (a key id or
// alias: the own account's, the function's Region).
func ForKey(r Regional, arn string) API { return ForKeyIn(r, arn, RegionOf(arn)) }

// ForKeyIn returns the client of the key's account in region (a replica's
// Region): through Accounted when r is one, else r's client of region (a
// single account).
func ForKeyIn(r Regional, arn, region string) API {
	if a, ok := r.(Accounted); ok {
		return a.KeyIn(arn, region)
	}
	return r.In(region)
}

// SecretsAPI is the part of Secrets Manager the stages call.
type SecretsAPI interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(context.Context, *secretsmanager.PutSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// Secrets routes each Secrets Manager call by its SecretId: a secret ARN
// of a member account goes to that account (and the ARN's Region) with
// the member role; a secret name, or an ARN of the hub's account, to the
// hub's own client. Where the material lives is thus said by the
// registered secretId itself (docs/deploy.md, "Where the material lives").
type Secrets struct{ c *Clients }

// Secrets returns the router of Secrets Manager calls.
func (c *Clients) Secrets() Secrets { return Secrets{c: c} }

// GetSecretValue reads in the secret's account.
func (s Secrets) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	return s.c.secretsOf(aws.ToString(in.SecretId)).GetSecretValue(ctx, in, o...)
}

// PutSecretValue writes in the secret's account.
func (s Secrets) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	return s.c.secretsOf(aws.ToString(in.SecretId)).PutSecretValue(ctx, in, o...)
}

// secretsOf returns the Secrets Manager client for secretID, built once
// per account and Region.
func (c *Clients) secretsOf(secretID string) *secretsmanager.Client {
	account, region := AccountOf(secretID), ""
	if c.members.Member(account) {
		region = strings.SplitN(secretID, ":", 5)[3]
	} else {
		account = ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := account + "/" + region
	if sm, ok := c.secrets[k]; ok {
		return sm
	}
	cfg := c.configOf(partitionOf(secretID), account)
	sm := secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		if region != "" {
			o.Region = region
		}
	})
	c.secrets[k] = sm
	return sm
}

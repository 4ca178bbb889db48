package kmsaccess

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

const (
	hub    = "111122223333"
	member = "444455556666"
	other  = "777788889999"
)

func TestMembersFromEnv(t *testing.T) {
	cases := []struct {
		name                          string
		own, accounts, role, external string
		served                        string
		err                           string
	}{
		{name: "nothing set: one account, no check"},
		{name: "own only", own: hub, served: hub},
		{name: "members", own: hub, accounts: member + ", " + other + "," + hub, role: "r", external: "x", served: hub + "," + member + "," + other},
		{name: "bad own", own: "12", err: HubAccountVar},
		{name: "bad member", own: hub, accounts: "abc", role: "r", external: "x", err: `"abc"`},
		{name: "members without role", own: hub, accounts: member, external: "x", err: MemberRoleVar},
		{name: "members without external id", own: hub, accounts: member, role: "r", err: ExternalIDVar},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(HubAccountVar, c.own)
			t.Setenv(MemberAccountsVar, c.accounts)
			t.Setenv(MemberRoleVar, c.role)
			t.Setenv(ExternalIDVar, c.external)
			m, err := MembersFromEnv()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(m.Served(), ","); got != c.served {
				t.Errorf("served %q, want %q", got, c.served)
			}
		})
	}
}

func TestAccountOf(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:kms:eu-west-1:444455556666:key/mrk-1":              member,
		"arn:aws:secretsmanager:eu-west-1:444455556666:secret:s-ab": member,
		"alias/x":                              "",
		"1234abcd-12ab-34cd-56ef-1234567890ab": "",
		"kms-reimport/secret":                  "",
	} {
		if got := AccountOf(arn); got != want {
			t.Errorf("AccountOf(%q) = %q, want %q", arn, got, want)
		}
	}
}

// recorder is a KMS and Secrets Manager endpoint that records the access
// key each request was signed with, and answers DescribeKey.
type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	auth := req.Header.Get("Authorization")
	cred := ""
	if i := strings.Index(auth, "Credential="); i >= 0 {
		cred = strings.SplitN(auth[i+len("Credential="):], "/", 2)[0]
	}
	r.mu.Lock()
	r.keys = append(r.keys, cred)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if strings.HasSuffix(req.Header.Get("X-Amz-Target"), "DescribeKey") {
		_, _ = w.Write([]byte(`{"KeyMetadata":{"KeyId":"k","Arn":"arn:aws:kms:eu-west-1:444455556666:key/k","KeyState":"Enabled","Origin":"EXTERNAL"}}`))
		return
	}
	_, _ = w.Write([]byte(`{"ARN":"arn:aws:secretsmanager:eu-west-1:444455556666:secret:s","Name":"s","VersionId":"v","SecretString":"x"}`))
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[len(r.keys)-1]
}

// countingAssume hands out static credentials of AKID<account> and counts
// the providers built and the retrievals made per role.
type countingAssume struct {
	built, retrieved atomic.Int32
	fail             error
	roles            sync.Map
	externalIDs      sync.Map
}

func (a *countingAssume) assume(_ aws.Config, role, externalID string) aws.CredentialsProvider {
	a.built.Add(1)
	a.roles.Store(role, true)
	a.externalIDs.Store(externalID, true)
	account := strings.Split(role, ":")[4]
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		a.retrieved.Add(1)
		if a.fail != nil {
			return aws.Credentials{}, a.fail
		}
		return aws.Credentials{AccessKeyID: "AKID" + account, SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: time.Now().Add(time.Hour)}, nil
	})
}

func newTestClients(t *testing.T, a *countingAssume) (*Clients, *recorder) {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	cfg := aws.Config{Region: "eu-west-2", BaseEndpoint: aws.String(srv.URL), Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDHUB", SecretAccessKey: "s"}, nil
		}))}
	c, err := NewAccounts(cfg, nil, Members{Own: hub, Accounts: []string{member}, RoleName: "kms-reimport-member", ExternalID: "ext-1"}, a.assume)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// TestClientsPerAccount: a member's key is reached with the member role's
// credentials (assumed once per account, with the ExternalId, whatever the
// Region), the hub's own key, a key id and a key of an account that is not
// a member with the function's own; clients are built once per account
// and Region.
func TestClientsPerAccount(t *testing.T) {
	a := &countingAssume{}
	c, rec := newTestClients(t, a)
	ctx := context.Background()
	memberKey := "arn:aws:kms:eu-west-1:" + member + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tc := range []struct{ key, region, wantAKID string }{
		{memberKey, "", "AKID" + member},
		{memberKey, "us-east-1", "AKID" + member},
		{"arn:aws:kms:eu-west-1:" + hub + ":key/1234abcd-12ab-34cd-56ef-1234567890ab", "", "AKIDHUB"},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", "", "AKIDHUB"},
		{"arn:aws:kms:eu-west-1:" + other + ":key/1234abcd-12ab-34cd-56ef-1234567890ab", "", "AKIDHUB"},
	} {
		if _, err := Describe(ctx, ForKeyIn(c, tc.key, tc.region), tc.key); err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if got := rec.last(); got != tc.wantAKID {
			t.Errorf("%s in %q: signed with %s, want %s", tc.key, tc.region, got, tc.wantAKID)
		}
	}
	if c.KeyIn(memberKey, "") != c.KeyIn(memberKey, "eu-west-1") || c.KeyIn(memberKey, "") == c.KeyIn(memberKey, "us-east-1") {
		t.Error("clients are not one per account and Region")
	}
	if c.KeyIn(memberKey, "eu-west-1") == c.For("eu-west-1") {
		t.Error("the member's client is the hub's")
	}
	if c.AccountIn("aws", member, "eu-west-1") != c.KeyIn(memberKey, "") || c.AccountIn("aws", hub, "eu-west-1") != c.For("eu-west-1") || c.AccountIn("", other, "") != c.For("") {
		t.Error("AccountIn is not the client of the account (a member's, else the own) and Region KeyIn gives")
	}
	if n := a.built.Load(); n != 1 {
		t.Errorf("member credentials built %d times, want once per account", n)
	}
	if n := a.retrieved.Load(); n != 1 {
		t.Errorf("AssumeRole made %d times for valid credentials, want 1 (cached until near expiry)", n)
	}
	if _, ok := a.roles.Load("arn:aws:iam::" + member + ":role/kms-reimport-member"); !ok {
		t.Error("the role assumed is not the member role of the key's account")
	}
	if _, ok := a.externalIDs.Load("ext-1"); !ok {
		t.Error("the ExternalId is not passed")
	}
}

// TestSecretsPerAccount: a secret ARN of a member account is read with the
// member role; a secret name (the hub's account) with the own credentials.
func TestSecretsPerAccount(t *testing.T) {
	c, rec := newTestClients(t, &countingAssume{})
	s := c.Secrets()
	for id, want := range map[string]string{
		"arn:aws:secretsmanager:eu-west-1:" + member + ":secret:kms-reimport/a-AbCdEf": "AKID" + member,
		"kms-reimport/a": "AKIDHUB",
		"arn:aws:secretsmanager:eu-west-2:" + hub + ":secret:kms-reimport/a-AbCdEf": "AKIDHUB",
	} {
		if _, err := s.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got := rec.last(); got != want {
			t.Errorf("%s: signed with %s, want %s", id, got, want)
		}
	}
}

// TestMemberRoleUnavailable: a role that can't be assumed fails the call
// with MemberRoleUnavailable naming the account and the role ARN; the hub's
// own keys go on; throttled STS stays AWSTransient.
func TestMemberRoleUnavailable(t *testing.T) {
	memberKey := "arn:aws:kms:eu-west-1:" + member + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tc := range []struct {
		code, want string
	}{
		{"AccessDenied", flow.MemberRoleUnavailable},
		{"Throttling", flow.AWSTransient},
	} {
		t.Run(tc.code, func(t *testing.T) {
			a := &countingAssume{fail: &smithy.GenericAPIError{Code: tc.code, Message: "not authorized to perform sts:AssumeRole"}}
			c, _ := newTestClients(t, a)
			_, err := Describe(context.Background(), ForKey(c, memberKey), memberKey)
			if got := flow.NameOf(err); got != tc.want {
				t.Fatalf("error %v named %s, want %s", err, got, tc.want)
			}
			if tc.want == flow.MemberRoleUnavailable && (!strings.Contains(err.Error(), member) || !strings.Contains(err.Error(), "arn:aws:iam::"+member+":role/kms-reimport-member")) {
				t.Errorf("%q does not name the account and the role ARN", err)
			}
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Errorf("STS's answer is lost from the chain: %v", err)
			}
			own := "arn:aws:kms:eu-west-1:" + hub + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
			if _, err := Describe(context.Background(), ForKey(c, own), own); err != nil {
				t.Errorf("the hub's own key fails too: %v", err)
			}
		})
	}
}

// TestForKeySingleAccount: a Regional that knows no accounts (tests, the
// command on one endpoint) is asked for the key's Region.
func TestForKeySingleAccount(t *testing.T) {
	var asked []string
	r := regionalFunc(func(region string) API { asked = append(asked, region); return nil })
	ForKey(r, "arn:aws:kms:eu-west-1:"+member+":key/k")
	ForKeyIn(r, "arn:aws:kms:eu-west-1:"+member+":key/k", "us-east-1")
	if strings.Join(asked, ",") != "eu-west-1,us-east-1" {
		t.Errorf("asked for %v", asked)
	}
}

type regionalFunc func(string) API

func (f regionalFunc) In(region string) API { return f(region) }

// TestCredentialsRenewedBeforeExpiry: member credentials that expire within
// RefreshBefore are renewed on the next call (AssumeRole again), those
// with longer left are reused.
func TestCredentialsRenewedBeforeExpiry(t *testing.T) {
	for _, tc := range []struct {
		left      time.Duration
		retrieved int32
	}{
		{time.Hour, 1},
		{RefreshBefore / 4, 2},
	} {
		var n atomic.Int32
		assume := func(aws.Config, string, string) aws.CredentialsProvider {
			return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				n.Add(1)
				return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(tc.left)}, nil
			})
		}
		c, err := NewAccounts(aws.Config{Region: "eu-west-2"}, nil, Members{Own: hub, Accounts: []string{member}, RoleName: "r", ExternalID: "x"}, assume)
		if err != nil {
			t.Fatal(err)
		}
		cfg := c.configOf("aws", member)
		for range 2 {
			if _, err := cfg.Credentials.Retrieve(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got := n.Load(); got != tc.retrieved {
			t.Errorf("credentials with %s left: AssumeRole %d times for two calls, want %d", tc.left, got, tc.retrieved)
		}
	}
}

// TestStsAssumeAsksAnHour: the real provider asks STS for a one-hour
// session with the ExternalId and the session name.
func TestStsAssumeAsksAnHour(t *testing.T) {
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		body = r.Form.Encode()
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write([]byte(`<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>AKIDM</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>` +
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>`))
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "eu-west-2", BaseEndpoint: aws.String(srv.URL), Credentials: aws.AnonymousCredentials{}}
	cr, err := StsAssume(cfg, "arn:aws:iam::"+member+":role/r", "ext-1").Retrieve(context.Background())
	if err != nil || cr.AccessKeyID != "AKIDM" {
		t.Fatalf("%v %v", cr, err)
	}
	for _, want := range []string{"DurationSeconds=3600", "ExternalId=ext-1", "RoleSessionName=" + SessionName} {
		if !strings.Contains(body, want) {
			t.Errorf("AssumeRole request %q has no %s", body, want)
		}
	}
}

func TestPartitionOfRegion(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-2": "aws", "us-east-1": "aws", "cn-north-1": "aws-cn", "cn-northwest-1": "aws-cn",
		"us-gov-west-1": "aws-us-gov", "us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b",
		"eu-isoe-west-1": "aws-iso-e", "us-isof-south-1": "aws-iso-f", "eusc-de-east-1": "aws-eusc", "": "aws",
	} {
		if got := PartitionOfRegion(region); got != want {
			t.Errorf("PartitionOfRegion(%q) = %q, want %q", region, got, want)
		}
	}
}

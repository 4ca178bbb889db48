// Package accounts tests many accounts (issue 19) through the product's
// real clients (shared/kmsaccess) against two KMS stand-ins, one per
// account, and an STS that answers AssumeRole as AWS does: the account a
// KMS request reaches is the one its credentials belong to (routed by the
// access key, as AWS does), the member's credentials come only from
// AssumeRole of the member role with the ExternalId, and an account whose
// role is missing gets AccessDenied from STS.
//
// What this does not do yet (docs/deploy.md, "Many accounts"): run the
// stages on the local stack (moto's STS, the IAM gate evaluating the member
// role's policies for the assumed credentials). Here the calls are those
// the stages make, through the same clients.
package accounts

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
)

const (
	hub        = "111122223333"
	member     = "444455556666"
	noRole     = "777788889999" // a member account with no member role
	roleName   = "kms-reimport-member"
	externalID = "ext-7f3a"
	hubKey     = "AKIDHUB0000000000000"
)

// sts answers AssumeRole for the member roles that exist, with the
// ExternalId their trust asks for; anything else is AccessDenied, as STS
// answers a role that is missing or whose trust refuses the caller.
type sts struct {
	mu    sync.Mutex
	roles map[string]string // role ARN -> ExternalId
	keys  map[string]string // access key issued -> account
	calls int
}

func (s *sts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	role := r.Form.Get("RoleArn")
	want, ok := s.roles[role]
	if r.Form.Get("Action") != "AssumeRole" || !ok || r.Form.Get("ExternalId") != want {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::%s:assumed-role/hub is not authorized to perform: sts:AssumeRole on resource: %s</Message></Error></ErrorResponse>`, hub, role)
		return
	}
	account := strings.Split(role, ":")[4]
	key := fmt.Sprintf("ASIA%s%04d", account, s.calls)
	s.keys[key] = account
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>`, key)
}

// accountOf is the account of an access key: the hub's own, or one STS
// issued.
func (s *sts) accountOf(key string) string {
	if key == hubKey {
		return hub
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[key]
}

// kmsRouter sends each KMS request to the stand-in of the account its
// credentials belong to.
func kmsRouter(t *testing.T, s *sts, byAccount map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		key := ""
		if i := strings.Index(auth, "Credential="); i >= 0 {
			key = strings.SplitN(auth[i+len("Credential="):], "/", 2)[0]
		}
		target, ok := byAccount[s.accountOf(key)]
		if !ok {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}`)
			return
		}
		u, _ := url.Parse(target)
		httputil.NewSingleHostReverseProxy(u).ServeHTTP(w, r)
	})
}

type world struct {
	clients       *kmsaccess.Clients
	hubKMS, memKM *kmsstandin.Server
	sts           *sts
	hubKeyARN     string
	memberKeyARN  string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	opts := func(account string) kmsstandin.Options {
		return kmsstandin.Options{Account: account, StaleReadWindow: kmsstandin.Off, ReplicaSyncDelay: kmsstandin.Off, RotationDelay: kmsstandin.Off}
	}
	hubS, hubC := kmsstandin.Serve(t, opts(hub))
	memS, memC := kmsstandin.Serve(t, opts(member))
	hubSrv := httptest.NewServer(hubS)
	t.Cleanup(hubSrv.Close)
	memSrv := httptest.NewServer(memS)
	t.Cleanup(memSrv.Close)
	st := &sts{roles: map[string]string{"arn:aws:iam::" + member + ":role/" + roleName: externalID}, keys: map[string]string{}}
	stsSrv := httptest.NewServer(st)
	t.Cleanup(stsSrv.Close)
	router := httptest.NewServer(kmsRouter(t, st, map[string]string{hub: hubSrv.URL, member: memSrv.URL}))
	t.Cleanup(router.Close)

	cfg := aws.Config{Region: "eu-west-2", BaseEndpoint: aws.String(stsSrv.URL), RetryMaxAttempts: 1,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: hubKey, SecretAccessKey: "s"}, nil
		}))}
	c, err := kmsaccess.NewAccounts(cfg, map[string]string{"eu-west-2": router.URL},
		kmsaccess.Members{Own: hub, Accounts: []string{member, noRole}, RoleName: roleName, ExternalID: externalID}, kmsaccess.StsAssume)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{clients: c, hubKMS: hubS, memKM: memS, sts: st}
	w.hubKeyARN = createExternal(t, hubC)
	w.memberKeyARN = createExternal(t, memC)
	return w
}

func createExternal(t *testing.T, c *kms.Client) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// TestTwoAccounts: the hub's key and the member's key are each reached in
// their own account (the member's with the member role's credentials, the
// hub's with the function's own): DescribeKey, the checks of the fetch
// stage and GetParametersForImport land in the stand-in of the key's
// account; the role is assumed once for every call.
func TestTwoAccounts(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if kmsaccess.AccountOf(w.memberKeyARN) != member || kmsaccess.AccountOf(w.hubKeyARN) != hub {
		t.Fatalf("the stand-ins' ARNs don't name their accounts: %s, %s", w.hubKeyARN, w.memberKeyARN)
	}
	for _, tc := range []struct {
		arn   string
		in    *kmsstandin.Server
		other *kmsstandin.Server
	}{{w.hubKeyARN, w.hubKMS, w.memKM}, {w.memberKeyARN, w.memKM, w.hubKMS}} {
		api := kmsaccess.ForKey(w.clients, tc.arn)
		md, err := kmsaccess.Describe(ctx, api, tc.arn)
		if err != nil {
			t.Fatalf("%s: %v", tc.arn, err)
		}
		if err := kmsaccess.CheckImportable(md); err != nil {
			t.Fatalf("%s: %v", tc.arn, err)
		}
		if _, err := api.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(tc.arn),
			WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa4096}); err != nil {
			t.Fatalf("%s: %v", tc.arn, err)
		}
		if ops := tc.in.OperationsFor(tc.arn); len(ops) < 2 {
			t.Errorf("%s: operations in its account's KMS %v", tc.arn, ops)
		}
		if ops := tc.other.OperationsFor(tc.arn); len(ops) != 0 {
			t.Errorf("%s reached the other account's KMS: %v", tc.arn, ops)
		}
	}
	if w.sts.calls != 1 {
		t.Errorf("AssumeRole called %d times, want once (cached credentials)", w.sts.calls)
	}
}

// TestMissingMemberRole: a member account with no member role fails its
// own keys with MemberRoleUnavailable naming the account and the role ARN;
// the hub's and the other member's keys go on.
func TestMissingMemberRole(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	lost := "arn:aws:kms:eu-west-2:" + noRole + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
	_, err := kmsaccess.Describe(ctx, kmsaccess.ForKey(w.clients, lost), lost)
	if flow.NameOf(err) != flow.MemberRoleUnavailable {
		t.Fatalf("%v (%s), want MemberRoleUnavailable", err, flow.NameOf(err))
	}
	for _, want := range []string{noRole, "arn:aws:iam::" + noRole + ":role/" + roleName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %s", err, want)
		}
	}
	for _, arn := range []string{w.hubKeyARN, w.memberKeyARN} {
		if _, err := kmsaccess.Describe(ctx, kmsaccess.ForKey(w.clients, arn), arn); err != nil {
			t.Errorf("%s fails too: %v", arn, err)
		}
	}
}

// TestWrongExternalId: the member role's trust asks for the ExternalId; a
// hub configured with another one can't assume it.
func TestWrongExternalId(t *testing.T) {
	w := newWorld(t)
	w.sts.roles["arn:aws:iam::"+member+":role/"+roleName] = "another"
	_, err := kmsaccess.Describe(context.Background(), kmsaccess.ForKey(w.clients, w.memberKeyARN), w.memberKeyARN)
	if flow.NameOf(err) != flow.MemberRoleUnavailable {
		t.Fatalf("%v, want MemberRoleUnavailable", err)
	}
}

package stack

// Many accounts on the local stack (issue 19; docs/deploy.md, "Many
// accounts"): member accounts with a KMS of their own, the member role of
// infra/member/template.yaml resolved for each (the IAM gate decides
// sts:AssumeRole with its trust and the member's calls with its
// policies), moto serving every account (it attributes a request to the
// account of its access key: one IAM user's key per account, and the
// credentials its STS issues for a member role), and the hub's
// MemberAccounts, MemberRoleName and MemberExternalId parameters set.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// The local stack's member accounts: the member role's name (the member
// template's and the hub's default) and the ExternalId both are given.
const (
	MemberAccount    = "444455556666"
	MemberRoleName   = "kms-reimport-member"
	MemberExternalID = "kms-reimport-local-external-id"
	// OperatorRole is the operator's role in the local stack (the
	// operator's entry of the IAM gate, Stack.Operator): a role of the hub's
	// stack, whose name the member trust admits (<HubStackName>-*).
	OperatorRole = "Operator"
)

// AccessKey is an IAM user's access key in moto, for one account.
type AccessKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// hubParameters sets the hub's member parameters from the options (an
// explicit Options.Parameters value wins).
func hubParameters(o *Options) {
	listed := append(append([]string{}, o.MemberAccounts...), o.RolelessAccounts...)
	if len(listed) == 0 {
		return
	}
	p := map[string]string{"MemberAccounts": strings.Join(listed, ","), "MemberRoleName": MemberRoleName, "MemberExternalId": MemberExternalID}
	for k, v := range o.Parameters {
		p[k] = v
	}
	o.Parameters = p
}

// startMemberKMS starts one KMS per member account (what Options.KMS
// chose), in the stack's Region, on port.
func (st *Stack) startMemberKMS(ctx context.Context, o Options, account string, port int) error {
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	name := "kms-" + account
	if o.KMS == KMSStandIn {
		bin := filepath.Join(o.Dir, "build", KMSStandIn, KMSStandIn)
		if err := goBuild(ctx, o.Root, bin, "./tests/support/kmsstandin/cmd/kms-standin", nil); err != nil {
			return err
		}
		if err := st.start(name, nil, o.StandInEnv, bin, "--addr", strings.TrimPrefix(u, "http://"), "--region", Region, "--account", account); err != nil {
			return err
		}
	} else {
		data := filepath.Join(o.Dir, "kms-data-"+account)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return err
		}
		if err := st.start(name, nil, []string{"PORT=" + fmt.Sprint(port), "KMS_REGION=" + Region, "KMS_ACCOUNT_ID=" + account, "KMS_DATA_PATH=" + data},
			filepath.Join(Tools(o.Root), "bin/local-kms")); err != nil {
			return err
		}
	}
	if st.MemberKMS == nil {
		st.MemberKMS = map[string]string{}
	}
	st.MemberKMS[account] = u
	if err := WaitTCP(ctx, strings.TrimPrefix(u, "http://"), 30*time.Second); err != nil {
		return fmt.Errorf("KMS of account %s: %w (see %s)", account, err, st.logPath(name))
	}
	return nil
}

var (
	xmlAccessKeyID = regexp.MustCompile(`<AccessKeyId>([^<]+)</AccessKeyId>`)
	xmlSecretKey   = regexp.MustCompile(`<SecretAccessKey>([^<]+)</SecretAccessKey>`)
)

// createAccessKeys makes an IAM user with an access key in moto in each
// account (the hub's and the members'): moto attributes a request to the
// account whose IAM holds its access key (with no MOTO_ACCOUNT_ID).
func (st *Stack) createAccessKeys(ctx context.Context, accounts []string) error {
	st.Keys = map[string]AccessKey{}
	for _, a := range accounts {
		var out string
		for _, form := range []url.Values{
			{"Action": {"CreateUser"}, "UserName": {"local"}, "Version": {"2010-05-08"}},
			{"Action": {"CreateAccessKey"}, "UserName": {"local"}, "Version": {"2010-05-08"}},
		} {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.Secrets+"/", strings.NewReader(form.Encode()))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
			req.Header.Set("x-moto-account-id", a)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("moto IAM %s in %s: %w", form.Get("Action"), a, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("moto IAM %s in %s: HTTP %d: %s", form.Get("Action"), a, resp.StatusCode, b)
			}
			out = string(b)
		}
		id, secret := xmlAccessKeyID.FindStringSubmatch(out), xmlSecretKey.FindStringSubmatch(out)
		if id == nil || secret == nil {
			return fmt.Errorf("moto IAM CreateAccessKey in %s: no key in %s", a, out)
		}
		st.Keys[a] = AccessKey{ID: id[1], Secret: secret[1]}
	}
	return nil
}

// AccountConfig is an SDK configuration signed with account's access key
// (Stack.Keys): moto answers it in that account. KMS endpoints are the
// caller's to set (Stack.MemberKMS for a member account).
func (st *Stack) AccountConfig(ctx context.Context, account string) (aws.Config, error) {
	k, ok := st.Keys[account]
	if !ok {
		return aws.Config{}, fmt.Errorf("no access key for account %s in this stack (Options.MemberAccounts)", account)
	}
	if _, err := st.AWSConfig(ctx); err != nil { // the endpoint variables
		return aws.Config{}, err
	}
	return config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(2), config.WithRegion(st.Region),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(k.ID, k.Secret, "")))
}

// MemberRole is the member role of one account, as infra/member/template.yaml
// creates it for the local stack's hub.
type MemberRole struct {
	Account  string        `json:"account"`
	ARN      string        `json:"arn"`
	Trust    any           `json:"trust"`
	Policies []NamedPolicy `json:"policies"`
}

// LoadMemberRole resolves the member template for account, its parameters
// pointing at the local hub (HubAccountId the stack's account, HubStackName
// the local deployment's stack name) with params' values winning.
func LoadMemberRole(path, account string, params map[string]string) (MemberRole, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return MemberRole{}, err
	}
	p := map[string]string{"HubAccountId": Account, "HubStackName": LocalDeployment(nil, nil).StackName, "ExternalId": MemberExternalID, "MemberRoleName": MemberRoleName}
	for k, v := range params {
		p[k] = v
	}
	_, js, err := Resolve(data, Deployment{Partition: "aws", Region: Region, Account: account, StackName: "kms-reimport-member", Params: p})
	if err != nil {
		return MemberRole{}, fmt.Errorf("processing %s: %w", path, err)
	}
	var doc struct {
		Resources map[string]resource `json:"Resources"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return MemberRole{}, err
	}
	res, ok := doc.Resources["MemberRole"]
	if !ok {
		return MemberRole{}, fmt.Errorf("%s has no MemberRole", path)
	}
	out := MemberRole{Account: account, ARN: fmt.Sprintf("arn:aws:iam::%s:role/%s", account, p["MemberRoleName"]), Trust: prune(res.Properties["AssumeRolePolicyDocument"])}
	pols, _ := res.Properties["Policies"].([]any)
	for _, pol := range prune(pols).([]any) {
		m, _ := pol.(map[string]any)
		d := m["PolicyDocument"]
		if s, ok := d.(string); ok {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return out, fmt.Errorf("member role policy %v: the resolved document is not JSON: %w", m["PolicyName"], err)
			}
			d = v
		}
		out.Policies = append(out.Policies, NamedPolicy{Name: fmt.Sprint(m["PolicyName"]), Policy: prune(d)})
	}
	return out, nil
}

// memberEnv is what the operator (the CLI) needs to reach member accounts.
func (st *Stack) memberEnv() []string {
	if len(st.Members) == 0 {
		return nil
	}
	return []string{"ACCOUNT_ID=" + Account, "MEMBER_ACCOUNTS=" + strings.Join(st.Members, ","), "MEMBER_ROLE_NAME=" + MemberRoleName, "MEMBER_EXTERNAL_ID=" + MemberExternalID}
}

// OperatorEnv is ClientEnv for an operator's shell (the env file): with
// member accounts, every endpoint is the operator's entry of the IAM gate,
// which routes by the credentials' account (a member role's session
// reaches its account's KMS) and checks member roles as for the functions.
func (st *Stack) OperatorEnv() []string {
	env := st.ClientEnv()
	if st.Operator == "" {
		return env
	}
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains([]string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_STS"}, k) {
			env[i] = k + "=" + st.Operator
		}
	}
	return append(env, st.memberEnv()...)
}

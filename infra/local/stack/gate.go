package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/kms-reimport/kms-reimport/infra/local/iamgate"
)

// IAMGate is the process name of the IAM gate, IAMEvaluator the one of
// its evaluator (their logs: LogPath).
const (
	IAMGate      = "iam-gate"
	IAMEvaluator = "iam-evaluator"
)

// startGate starts the IAM evaluator (Node, @cloud-copilot/iam-simulate)
// and the gate in front of the emulators, one port per function, with
// each function's role from policyTemplate resolved for this deployment
// (Options.Parameters). It returns each function's gate URL.
func (st *Stack) startGate(ctx context.Context, o Options, policyTemplate string, fns []Function) (map[string]string, error) {
	tools := Tools(o.Root)
	node := filepath.Join(tools, "node22", "bin", "node")
	iamDir := filepath.Join(o.Root, "infra", "local", "iam")
	for _, p := range []string{node, filepath.Join(iamDir, "node_modules", "@cloud-copilot", "iam-simulate")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("the IAM gate needs %s: run `make tools`", p)
		}
	}
	roles, err := LoadRoles(policyTemplate, LocalDeployment(o.Parameters, map[string]string{"RotationTable": st.Table, "NotificationTopic": st.Topic}))
	if err != nil {
		return nil, fmt.Errorf("roles of %s: %w", policyTemplate, err)
	}
	ports, err := FreePorts(2 + len(fns))
	if err != nil {
		return nil, err
	}
	evalAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	if err := st.start(IAMEvaluator, nil, nil, node, filepath.Join(iamDir, "evaluator.mjs"), "--port", fmt.Sprint(ports[0])); err != nil {
		return nil, err
	}
	cfg := iamgate.Config{
		Evaluator: "http://" + evalAddr + "/decide", Partition: "aws", Region: st.Region, Account: Account, HashKey: "pk",
		KMS: map[string]string{st.Region: st.KMS}, DynamoDB: st.DynamoDB, SecretsManager: st.Secrets, SNS: st.Secrets, STS: st.Secrets,
	}
	if err := st.gateMembers(o, &cfg, fmt.Sprintf("127.0.0.1:%d", ports[1+len(fns)])); err != nil {
		return nil, err
	}
	for r, u := range st.RegionKMS {
		cfg.KMS[r] = u
	}
	urls := map[string]string{}
	for i, f := range fns {
		gf := iamgate.Function{Name: f.LogicalID, Addr: fmt.Sprintf("127.0.0.1:%d", ports[1+i])}
		for _, r := range roles {
			if r.Function == f.LogicalID {
				gf.RoleARN, gf.Session = r.ARN, r.Session
				for _, p := range r.Policies {
					b, _ := json.Marshal(p)
					gf.Policies = append(gf.Policies, b)
				}
			}
		}
		if gf.Session == "" {
			return nil, fmt.Errorf("function %s has no role in %s", f.LogicalID, policyTemplate)
		}
		cfg.Functions = append(cfg.Functions, gf)
		urls[f.LogicalID] = "http://" + gf.Addr
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	path := filepath.Join(st.Dir, "iam-gate.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	bin := filepath.Join(st.Dir, "build", IAMGate, IAMGate)
	if err := goBuild(ctx, o.Root, bin, "./infra/local/iamgate/cmd/iam-gate", nil); err != nil {
		return nil, err
	}
	if err := st.start(IAMGate, nil, nil, bin, "--config", path); err != nil {
		return nil, err
	}
	for _, a := range append([]string{evalAddr}, strings.TrimPrefix(urls[fns[0].LogicalID], "http://")) {
		if err := WaitTCP(ctx, a, 30*time.Second); err != nil {
			return nil, fmt.Errorf("IAM gate %s: %w (see %s, %s)", a, err, st.logPath(IAMEvaluator), st.logPath(IAMGate))
		}
	}
	return urls, nil
}

// gatedEndpoints points a function's AWS endpoints at its gate.
func (st *Stack) gatedEndpoints(m map[string]string, gate string) {
	for _, k := range []string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_STS"} {
		m[k] = gate
	}
	if len(st.RegionKMS) > 0 {
		byRegion := map[string]string{}
		for r := range st.RegionKMS {
			byRegion[r] = gate
		}
		b, _ := json.Marshal(byRegion)
		m["KMS_ENDPOINTS_BY_REGION"] = string(b)
	}
}

// ManagedKeyTags are the tags that make a key one the functions may use
// under the template's default ManagedKeyTagKey/ManagedKeyTagValue: every
// key a local stack or its tests create carries them (the IAM gate denies
// the others, as AWS would).
func ManagedKeyTags() []kmstypes.Tag {
	return []kmstypes.Tag{{TagKey: aws.String("kms-reimport:managed"), TagValue: aws.String("true")}}
}

// gateMembers adds the member accounts to the gate's configuration: each
// member role of infra/member/template.yaml with its account's KMS, and the
// operator's entry on addr (an administrator of the hub's account, as a
// role of the hub's stack: Stack.Operator, OperatorEnv).
func (st *Stack) gateMembers(o Options, cfg *iamgate.Config, addr string) error {
	if len(st.Members) == 0 {
		return nil
	}
	path := filepath.Join(o.Root, "infra", "member", "template.yaml")
	for _, a := range o.MemberAccounts {
		r, err := LoadMemberRole(path, a, nil)
		if err != nil {
			return fmt.Errorf("member role of %s: %w", a, err)
		}
		m := iamgate.Member{Account: a, RoleARN: r.ARN, KMS: map[string]string{st.Region: st.MemberKMS[a]}}
		m.Trust, _ = json.Marshal(r.Trust)
		for _, p := range r.Policies {
			b, _ := json.Marshal(p)
			m.Policies = append(m.Policies, b)
		}
		cfg.Members = append(cfg.Members, m)
	}
	d := LocalDeployment(nil, nil)
	role := d.StackName + "-" + OperatorRole
	admin, _ := json.Marshal(NamedPolicy{Name: "AdministratorAccess", Policy: map[string]any{"Version": "2012-10-17",
		"Statement": []any{map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*"}}}})
	cfg.Functions = append(cfg.Functions, iamgate.Function{Name: "operator", Addr: addr,
		RoleARN:  fmt.Sprintf("arn:aws:iam::%s:role/%s", Account, role),
		Session:  fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/operator", Account, role),
		Policies: []json.RawMessage{admin}})
	st.Operator = "http://" + addr
	return nil
}

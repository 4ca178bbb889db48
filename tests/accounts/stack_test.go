package accounts

// End to end on the local stack with member accounts (issue 19): the hub's
// functions under the IAM gate, the member account 444455556666 with its own
// KMS and its member role (infra/member/template.yaml, trust and policies
// enforced by the gate), moto's STS issuing the member role's credentials
// and moto's Secrets Manager serving each account, and 777788889999 listed
// in MemberAccounts with no member stack. One fleet run (planner and Step
// Functions, as tests/fleet runs it) renews the keys of both accounts.

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
	"github.com/kms-reimport/kms-reimport/tests/support/keybuild"
	"github.com/kms-reimport/kms-reimport/tests/support/suite"
)

var (
	kit       *fleetkit.Kit
	memberKit fleetkit.Clients // the member account's KMS and Secrets Manager
)

func TestMain(m *testing.M) {
	os.Exit(suite.Run(m, "accounts", stack.Options{
		MemberAccounts: []string{stack.MemberAccount}, RolelessAccounts: []string{noRole},
		FunctionEnv: map[string]map[string]string{"PlannerFunction": {"MAX_CONCURRENCY": "4", "KMS_REQUEST_RATE": "1000", "KMS_READ_RATE": "1000"}},
	}, func(s *suite.Suite) error {
		ctx := context.Background()
		var err error
		if kit, err = fleetkit.New(ctx, s.Root, s.Stack); err != nil {
			return err
		}
		cfg, err := s.Stack.AccountConfig(ctx, stack.MemberAccount)
		if err != nil {
			return err
		}
		memberKit = fleetkit.Clients{
			KMS:       kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(s.Stack.MemberKMS[stack.MemberAccount]) }),
			Secrets:   secretsmanager.NewFromConfig(cfg),
			Registry:  kit.Registry,
			SecretARN: true,
		}
		return nil
	}))
}

// TestOneFleetRunRenewsBothAccounts: hub keys with their material in the
// hub, member keys with their material in the member account (registered
// by the secret's ARN), and keys of an account with no member role; one
// fleet run.
func TestOneFleetRunRenewsBothAccounts(t *testing.T) {
	if member != stack.MemberAccount {
		t.Fatalf("the local stack's member account %s is not this package's %s", stack.MemberAccount, member)
	}
	ctx := context.Background()
	hubKeys, err := fleetkit.ManagedKeys(ctx, kit.Clients, 2, "hub")
	if err != nil {
		t.Fatal(err)
	}
	memberKeys, err := fleetkit.ManagedKeys(ctx, memberKit, 2, "member")
	if err != nil {
		t.Fatal(err)
	}
	// The hub has a secret of the same name as a member key's, holding
	// other material: reading the hub's would import the wrong material.
	memberEntry, err := kit.Registry.Get(ctx, memberKeys[0])
	if err != nil {
		t.Fatal(err)
	}
	decoyName := memberEntry.SecretID[strings.Index(memberEntry.SecretID, ":secret:")+len(":secret:") : strings.LastIndex(memberEntry.SecretID, "-")]
	decoy, err := kit.Secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &decoyName, SecretBinary: keybuild.Random(32)})
	if err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, id := range []string{"0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002"} {
		arn := "arn:aws:kms:" + stack.Region + ":" + noRole + ":key/" + id
		lost = append(lost, arn)
		if err := kit.Registry.Put(ctx, registry.Entry{KeyARN: arn, SecretID: "arn:aws:secretsmanager:" + stack.Region + ":" + noRole + ":secret:kms-reimport/lost-AbCdEf",
			Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h", WrappingKeySpec: "RSA_2048"}}); err != nil {
			t.Fatal(err)
		}
	}

	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	ex, err := kit.FleetRun(rctx, "0.01")
	if err != nil {
		t.Fatal(err)
	}
	var stats planner.Stats
	if err := json.Unmarshal(ex.Output, &stats); err != nil {
		t.Fatalf("fleet output: %v: %s", err, ex.Output)
	}
	t.Logf("fleet run: %s", ex.Output)

	t.Run("keys of both accounts renewed", func(t *testing.T) {
		if stats.Renewed != 4 || stats.Failed != 0 {
			t.Errorf("renewed %d, failed %d %+v; want the 4 keys of the hub and the member renewed, none failed", stats.Renewed, stats.Failed, stats.FailedKeys)
		}
		for _, k := range []struct {
			c    *kms.Client
			arns []string
		}{{kit.KMS, hubKeys}, {memberKit.KMS, memberKeys}} {
			for _, arn := range k.arns {
				renewedIn(t, k.c, arn)
			}
		}
		// The member's keys live only in the member's KMS.
		if _, err := kit.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &memberKeys[0]}); err == nil {
			t.Errorf("the hub's KMS knows the member's key %s", memberKeys[0])
		}
	})

	t.Run("an account without the member role fails only its own keys, told once", func(t *testing.T) {
		role := "arn:aws:iam::" + noRole + ":role/" + stack.MemberRoleName
		if stats.RoleUnavailable != len(lost) || len(stats.UnavailableAccounts) != 1 {
			t.Fatalf("roleUnavailable %d, unavailableAccounts %+v; want %d keys and the account once", stats.RoleUnavailable, stats.UnavailableAccounts, len(lost))
		}
		if u := stats.UnavailableAccounts[0]; u.Account != noRole || !strings.Contains(u.Cause, role) {
			t.Errorf("unavailable account %+v: want %s named with the role %s", u, noRole, role)
		}
		// STS (the IAM gate) refused the role that does not exist, and
		// allowed the member's, whose trust admits the hub's stage roles.
		gate, _ := os.ReadFile(kit.Stack.LogPath(stack.IAMGate))
		for resource, decision := range map[string]string{role: "NoSuchRole", "arn:aws:iam::" + member + ":role/" + stack.MemberRoleName: "Allowed"} {
			if !strings.Contains(string(gate), `"action":"sts:AssumeRole","resource":"`+resource+`","decision":"`+decision+`"`) {
				t.Errorf("the IAM gate's log has no sts:AssumeRole of %s decided %s", resource, decision)
			}
		}
		for _, arn := range lost {
			if _, err := kit.Registry.Get(ctx, arn); err != nil {
				t.Errorf("%s left the registry: %v", arn, err)
			}
			if recs, _ := kit.Audit.List(ctx, arn); len(recs) != 0 {
				t.Errorf("%s: %d import records; its rotation could only fail, so it is not started", arn, len(recs))
			}
		}
		b, err := os.ReadFile(kit.Stack.LogPath("PlannerFunction"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), `"msg":"member role unavailable`); n != 1 {
			t.Errorf("the planner logged the unavailable role %d times, want once per run", n)
		}
	})

	t.Run("each account's rotations ran in its own group", func(t *testing.T) {
		// The planner groups a page's due keys by account and Region, each
		// group with its own concurrency (planner.GroupItems, the fleet's
		// RenewGroup map): the hub's and the member's keys are two groups.
		b, err := os.ReadFile(kit.Stack.LogPath("PlannerFunction"))
		if err != nil {
			t.Fatal(err)
		}
		most := 0
		for _, line := range strings.Split(string(b), "\n") {
			var l struct {
				Msg    string `json:"msg"`
				Groups int    `json:"groups"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "registry page planned" {
				most = max(most, l.Groups)
			}
		}
		if most < 2 {
			t.Errorf("the planner planned at most %d group(s) in a page; want the hub's and the member's as two", most)
		}
	})

	t.Run("the member's material is read in the member account", func(t *testing.T) {
		sv, err := memberKit.Secrets.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: &memberEntry.SecretID})
		if err != nil {
			t.Fatal(err)
		}
		current := ""
		for v, stages := range sv.VersionIdsToStages {
			for _, s := range stages {
				if s == "AWSCURRENT" {
					current = v
				}
			}
		}
		recs, err := kit.Audit.List(ctx, memberKeys[0])
		if err != nil || len(recs) != 1 {
			t.Fatalf("%d import records (%v)", len(recs), err)
		}
		if r := recs[0]; r.SecretID != memberEntry.SecretID || r.SecretVersionID != current || r.SecretVersionID == aws.ToString(decoy.VersionId) {
			t.Errorf("import record read secret %s version %s; want the member's %s version %s (the hub's decoy is %s)", r.SecretID, r.SecretVersionID, memberEntry.SecretID, current, aws.ToString(decoy.VersionId))
		}
		gate, _ := os.ReadFile(kit.Stack.LogPath(stack.IAMGate))
		session := "arn:aws:sts::" + member + ":assumed-role/" + stack.MemberRoleName + "/"
		if !strings.Contains(string(gate), `"principal":"`+session) || !strings.Contains(string(gate), `"action":"secretsmanager:GetSecretValue","resource":"`+memberEntry.SecretID+`","decision":"Allowed"`) {
			t.Errorf("the IAM gate's log shows no GetSecretValue of %s allowed to the member role's session", memberEntry.SecretID)
		}
	})
}

// renewedIn: the key is Enabled in its account's KMS with ValidTo 2160h
// ahead, one successful import record, and the registry agrees with KMS.
func renewedIn(t *testing.T, c *kms.Client, arn string) {
	t.Helper()
	ctx := context.Background()
	md, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		t.Fatalf("%s: %v", arn, err)
	}
	if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil {
		t.Fatalf("%s: %s, ValidTo %v", arn, md.KeyMetadata.KeyState, md.KeyMetadata.ValidTo)
	}
	if d := time.Until(*md.KeyMetadata.ValidTo); d < 2150*time.Hour || d > 2161*time.Hour {
		t.Errorf("%s: ValidTo %v is not 2160h ahead", arn, md.KeyMetadata.ValidTo)
	}
	recs, err := kit.Audit.List(ctx, arn)
	if err != nil || len(recs) != 1 || recs[0].Outcome != records.ImportSucceeded {
		t.Errorf("%s: import records %+v (%v), want exactly one success", arn, recs, err)
	}
	e, err := kit.Registry.Get(ctx, arn)
	if err != nil {
		t.Fatal(err)
	}
	if e.CurrentValidTo == nil || !e.CurrentValidTo.Equal(*md.KeyMetadata.ValidTo) || e.LastSuccess == nil {
		t.Errorf("%s: registry not updated: %+v", arn, e)
	}
}

// TestOperatorReachesTheMember: the env file's endpoint (the operator's
// entry of the IAM gate) lets the operator assume the member role with the
// ExternalId (not without it, nor one of an account with no role), and
// the member role's policies still apply to what the operator does with
// those credentials: a managed key is described in the member's KMS, an
// untagged one is denied.
func TestOperatorReachesTheMember(t *testing.T) {
	ctx := context.Background()
	st := kit.Stack
	env := map[string]string{}
	for _, kv := range st.OperatorEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, want := range map[string]string{"AWS_ENDPOINT_URL_KMS": st.Operator, "AWS_ENDPOINT_URL_STS": st.Operator, "AWS_ENDPOINT_URL_SECRETS_MANAGER": st.Operator,
		"MEMBER_ACCOUNTS": member + "," + noRole, "MEMBER_ROLE_NAME": stack.MemberRoleName, "MEMBER_EXTERNAL_ID": stack.MemberExternalID, "ACCOUNT_ID": hub} {
		if env[k] != want || want == "" {
			t.Errorf("operator env %s=%q, want %q", k, env[k], want)
		}
	}
	hubCfg, err := st.AccountConfig(ctx, hub)
	if err != nil {
		t.Fatal(err)
	}
	members := func(external string) *kmsaccess.Clients {
		cfg := hubCfg.Copy()
		// Only the operator's endpoint (the environment's service
		// endpoints would win over BaseEndpoint).
		cfg.ConfigSources, cfg.BaseEndpoint = nil, aws.String(st.Operator)
		c, err := kmsaccess.NewAccounts(cfg, map[string]string{st.Region: st.Operator},
			kmsaccess.Members{Own: hub, Accounts: []string{member, noRole}, RoleName: stack.MemberRoleName, ExternalID: external}, kmsaccess.StsAssume)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	managed, err := fleetkit.ManagedKeys(ctx, memberKit, 1, "operator")
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := memberKit.KMS.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	good := members(stack.MemberExternalID)
	if _, err := kmsaccess.Describe(ctx, kmsaccess.ForKey(good, managed[0]), managed[0]); err != nil {
		t.Fatalf("the operator can't describe the member's managed key: %v", err)
	}
	untaggedARN := aws.ToString(untagged.KeyMetadata.Arn)
	// The member role reads any key's metadata (member-discovery, for
	// adopt) but uses only the managed ones.
	if _, err := kmsaccess.ForKey(good, untaggedARN).GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &untaggedARN,
		WrappingAlgorithm: kmstypes.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: kmstypes.WrappingKeySpecRsa2048}); flow.AWSCode(err) != "AccessDeniedException" {
		t.Errorf("GetParametersForImport of the member's untagged key as the member role: %v, want AccessDeniedException (the member role's policy)", err)
	}
	lost := "arn:aws:kms:" + stack.Region + ":" + noRole + ":key/0a1b2c3d-0000-4000-8000-000000000009"
	for name, c := range map[string]struct {
		clients *kmsaccess.Clients
		arn     string
	}{"wrong ExternalId": {members("not-the-external-id"), managed[0]}, "no member role": {good, lost}} {
		_, err := kmsaccess.Describe(ctx, kmsaccess.ForKey(c.clients, c.arn), c.arn)
		if flow.NameOf(err) != flow.MemberRoleUnavailable || !strings.Contains(err.Error(), "AccessDenied") {
			t.Errorf("%s: %v, want MemberRoleUnavailable from STS's AccessDenied", name, err)
		}
	}
}

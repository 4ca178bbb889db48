package accounts

// The operator's command across two accounts on the local stack (issue 19,
// "Done when"): the built kms-reimport, with the environment `make
// stack-up MEMBERS=...` writes (the gate's operator entry, the member
// settings), adopts a member account's tagged keys through the member role
// (discovery by the member-discovery policy, the material read from the
// member's Secrets Manager), and `status` shows the keys of both accounts,
// each read from its own account's KMS.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
	"github.com/kms-reimport/kms-reimport/tests/support/keybuild"
)

// operatorCLI builds the command once per test and runs it as an operator
// whose shell sourced .local/stack/env: its stdout (stderr is logged) and
// exit code.
func operatorCLI(t *testing.T) func(args ...string) (string, int) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kms-reimport")
	build := exec.Command("go", "build", "-o", bin, "github.com/kms-reimport/kms-reimport/cmd/kms-reimport")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kms-reimport: %v\n%s", err, out)
	}
	env := append(os.Environ(), kit.Stack.OperatorEnv()...)
	return func(args ...string) (string, int) {
		t.Helper()
		var out, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &stderr
		err := cmd.Run()
		t.Logf("$ kms-reimport %s\n%s%s", strings.Join(args, " "), out.String(), stderr.String())
		var exit *exec.ExitError
		switch {
		case err == nil:
			return out.String(), 0
		case errors.As(err, &exit):
			return out.String(), exit.ExitCode()
		}
		t.Fatalf("running kms-reimport: %v", err)
		return "", -1
	}
}

// memberKey creates an EXTERNAL key in the member account tagged for
// adoption, its secret tag naming secretARN.
func memberKey(t *testing.T, team, secretARN string) string {
	t.Helper()
	tags := append(stack.ManagedKeyTags(), kmstypes.Tag{TagKey: aws.String("team"), TagValue: aws.String(team)})
	if secretARN != "" {
		tags = append(tags, kmstypes.Tag{TagKey: aws.String("kms-reimport:secret"), TagValue: aws.String(secretARN)})
	}
	k, err := memberKit.KMS.CreateKey(context.Background(), &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(k.KeyMetadata.Arn)
}

func TestAdoptAndStatusAcrossAccounts(t *testing.T) {
	ctx := context.Background()
	cli := operatorCLI(t)
	team := fmt.Sprintf("payments-%d", time.Now().UnixNano()%1e9)
	var good []string
	for i := 0; i < 2; i++ {
		name := "kms-reimport/" + team + "-" + string(rune('a'+i))
		sec, err := memberKit.Secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretBinary: keybuild.Random(32)})
		if err != nil {
			t.Fatal(err)
		}
		good = append(good, memberKey(t, team, aws.ToString(sec.ARN)))
	}
	missing := "arn:aws:secretsmanager:" + stack.Region + ":" + member + ":secret:kms-reimport/" + team + "-gone-AbCdEf"
	noSecret := memberKey(t, team, missing)
	untagged := memberKey(t, "someone-else", "")
	hubKeys, err := fleetkit.ManagedKeys(ctx, kit.Clients, 1, "hub-cli")
	if err != nil {
		t.Fatal(err)
	}

	adopt := []string{"adopt", "--account", member, "--tag", "team=" + team, "--valid-for", "90d", "--wrapping-key-spec", "RSA_2048"}
	t.Run("adopt --dry-run registers nothing", func(t *testing.T) {
		out, code := cli(append(adopt, "--dry-run", "--json")...)
		rep := adoptJSON(t, out)
		if code != 1 || rep[good[0]] != "would-adopt" || rep[good[1]] != "would-adopt" || rep[noSecret] != "skipped" {
			t.Errorf("exit %d, results %v: want exit 1 (one key skipped), the two keys with material would-adopt, the one without skipped", code, rep)
		}
		if _, seen := rep[untagged]; seen {
			t.Errorf("the key without the tag was reported: %v", rep)
		}
		for _, arn := range good {
			if e, err := kit.Registry.Get(ctx, arn); err == nil && e.KeyARN != "" {
				t.Errorf("--dry-run registered %s", arn)
			}
		}
	})
	t.Run("adopt registers the keys that pass, skips the rest with the reason", func(t *testing.T) {
		out, code := cli(adopt...)
		if code != 1 || strings.Count(out, " adopted ") < 2 || !strings.Contains(out, "skipped") || !strings.Contains(out, "kms-reimport/"+team+"-gone") {
			t.Errorf("exit %d: want 1, two adopted, the key without material skipped naming its secret:\n%s", code, out)
		}
		for _, arn := range good {
			e, err := kit.Registry.Get(ctx, arn)
			if err != nil || e.KeyARN != arn || !strings.Contains(e.SecretID, ":"+member+":secret:") {
				t.Errorf("registry entry of %s: %+v, %v; want it registered with the member's secret ARN", arn, e, err)
			}
		}
		if e, err := kit.Registry.Get(ctx, noSecret); err == nil && e.KeyARN != "" {
			t.Errorf("the key without material was registered: %+v", e)
		}
	})
	t.Run("status shows both accounts from their own KMS, aliases included", func(t *testing.T) {
		// An alias in the member account, made there directly: status
		// lists it through the member role (ListAliases, the member
		// template's member-discovery policy).
		alias := "alias/" + team
		if _, err := memberKit.KMS.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &good[0]}); err != nil {
			t.Fatal(err)
		}
		out, code := cli("status", "--json")
		if code != 0 {
			t.Fatalf("status exit %d", code)
		}
		var rep struct {
			Keys []struct {
				KeyARN  string   `json:"keyArn"`
				Account string   `json:"account"`
				Aliases []string `json:"aliases"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json: %v", err)
		}
		accounts, aliases := map[string]string{}, map[string][]string{}
		for _, k := range rep.Keys {
			accounts[k.KeyARN], aliases[k.KeyARN] = k.Account, k.Aliases
		}
		for arn, want := range map[string]string{good[0]: member, good[1]: member, hubKeys[0]: hub} {
			if accounts[arn] != want {
				t.Errorf("status: %s in account %q, want %s", arn, accounts[arn], want)
			}
		}
		if got := aliases[good[0]]; len(got) != 1 || got[0] != alias {
			t.Errorf("status: aliases of the member's key %s are %v, want [%s] (listed in the member account)", good[0], got, alias)
		}
		if got := aliases[good[1]]; len(got) != 0 {
			t.Errorf("status: aliases of the member's key %s are %v, want none", good[1], got)
		}
		table, code := cli("status", "--account", member)
		if code != 0 || !strings.Contains(table, good[0]) || strings.Contains(table, hubKeys[0]) {
			t.Errorf("status --account %s (exit %d) lists the hub's key or not the member's:\n%s", member, code, table)
		}
	})
	t.Run("after a fleet run, status reads each account's expiry from its own KMS", func(t *testing.T) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		ex, err := kit.FleetRun(rctx, "0.01")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("fleet run: %s", ex.Output)
		out, code := cli("status", "--json")
		var rep struct {
			Keys []struct {
				KeyARN  string     `json:"keyArn"`
				Account string     `json:"account"`
				ValidTo *time.Time `json:"validTo"`
				FromKMS bool       `json:"fromKms"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
			t.Fatalf("status --json (exit %d): %v", code, err)
		}
		valid := map[string]bool{}
		for _, k := range rep.Keys {
			valid[k.KeyARN] = k.FromKMS && k.ValidTo != nil && k.ValidTo.After(time.Now().Add(80*24*time.Hour))
		}
		for _, arn := range append([]string{hubKeys[0]}, good...) {
			if !valid[arn] {
				t.Errorf("status after the fleet run: %s has no ValidTo about 90 days out read from KMS", arn)
			}
		}
		_, _ = cli("status")
	})
}

// adoptJSON reads `adopt --json`: each key's result.
func adoptJSON(t *testing.T, out string) map[string]string {
	t.Helper()
	var rep struct {
		Keys []struct {
			KeyARN string `json:"keyArn"`
			Result string `json:"result"`
		} `json:"keys"`
	}
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &rep) != nil {
		t.Fatalf("adopt --json printed no report:\n%s", out)
	}
	m := map[string]string{}
	for _, k := range rep.Keys {
		m[k.KeyARN] = k.Result
	}
	return m
}

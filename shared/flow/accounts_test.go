package flow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

// TestServedAccounts: a key or secret ARN of an account the deployment does
// not serve is InvalidInput naming the field, the value and the accounts
// served; names, ids and aliases are the own account's; no list, no check.
func TestServedAccounts(t *testing.T) {
	served := RequestOptions{DefaultValidFor: 24 * time.Hour, DefaultRenewBefore: time.Hour, Accounts: []string{"111122223333", "444455556666"}}
	key := func(account string) string {
		return "arn:aws:kms:eu-west-1:" + account + ":key/1234abcd-12ab-34cd-56ef-1234567890ab"
	}
	cases := []struct {
		name, in string
		opt      RequestOptions
		field    string
	}{
		{"member key", `{"keyId":"` + key("444455556666") + `","secretId":"arn:aws:secretsmanager:eu-west-1:444455556666:secret:kms-reimport/a-AbCdEf"}`, served, ""},
		{"own key, secret name", `{"keyId":"` + key("111122223333") + `","secretId":"kms-reimport/a"}`, served, ""},
		{"alias", `{"keyId":"alias/a","secretId":"s"}`, served, ""},
		{"key of another account", `{"keyId":"` + key("777788889999") + `","secretId":"s"}`, served, "keyId"},
		{"alias ARN of another account", `{"keyId":"arn:aws:kms:eu-west-1:777788889999:alias/a","secretId":"s"}`, served, "keyId"},
		{"secret of another account", `{"keyId":"alias/a","secretId":"arn:aws:secretsmanager:eu-west-1:777788889999:secret:kms-reimport/a-AbCdEf"}`, served, "secretId"},
		{"no list: no check", `{"keyId":"` + key("777788889999") + `","secretId":"s"}`, RequestOptions{DefaultValidFor: 24 * time.Hour, DefaultRenewBefore: time.Hour}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRequest([]byte(c.in), time.Now(), c.opt)
			if c.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if NameOf(err) != InvalidInput {
				t.Fatalf("%v, want InvalidInput", err)
			}
			for _, want := range []string{`"` + c.field + `"`, "777788889999", "111122223333, 444455556666"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not name %s", err, want)
				}
			}
		})
	}
}

// TestMemberRole: what getting a member role's credentials fails with.
func TestMemberRole(t *testing.T) {
	role := "arn:aws:iam::444455556666:role/kms-reimport-member"
	for code, want := range map[string]string{
		"AccessDenied":         MemberRoleUnavailable,
		"InvalidIdentityToken": MemberRoleUnavailable,
		"Throttling":           AWSTransient,
	} {
		err := MemberRole(&smithy.GenericAPIError{Code: code}, "444455556666", role)
		if NameOf(err) != want || (want == MemberRoleUnavailable && !strings.Contains(err.Error(), role)) {
			t.Errorf("%s: %v (%s), want %s naming the role", code, err, NameOf(err), want)
		}
		// What a stage then makes of the failed call keeps the name.
		if got := NameOf(FromAWS(err, Internal, "DescribeKey")); got != want {
			t.Errorf("%s through FromAWS: %s, want %s", code, got, want)
		}
	}
	if MemberRole(nil, "a", role) != nil {
		t.Error("nil is not nil")
	}
	named := Errorf(AWSTransient, "x")
	if !errors.Is(MemberRole(named, "a", role), named) {
		t.Error("an already named error is renamed")
	}
}

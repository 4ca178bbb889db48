package settings

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	t.Setenv("TABLE_NAME", "t")
	t.Setenv("MIN_TOKEN_VALIDITY", "15m")
	t.Setenv("MAX_TOKEN_FETCHES", "5")
	t.Setenv("DEFAULT_VALID_FOR", "30d")
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if s.NoRotation || s.NoGeneratedMaterial || s.NoMaterialProofs {
		t.Fatalf("unset switches must allow (deployments before the parameters): %+v", s)
	}
	t.Setenv("ROTATE_ON_DEMAND", "false")
	t.Setenv("GENERATED_MATERIAL", "true")
	t.Setenv("MATERIAL_PROOFS", "false")
	if s, err = FromEnv(); err != nil || !s.NoRotation || s.NoGeneratedMaterial || !s.NoMaterialProofs {
		t.Fatalf("switches: %+v %v", s, err)
	}
	if s.Table != "t" || s.MinTokenValidity != 15*time.Minute || s.MaxTokenFetches != 5 || s.DefaultValidFor != 30*24*time.Hour || s.TokenRetention != 30*24*time.Hour {
		t.Fatalf("%+v", s)
	}
}

func TestFromEnvErrors(t *testing.T) {
	cases := []struct{ k, v, want string }{
		{"TABLE_NAME", "", "TABLE_NAME"},
		{"MIN_TOKEN_VALIDITY", "ten", "MIN_TOKEN_VALIDITY"},
		{"MAX_TOKEN_FETCHES", "0", "MAX_TOKEN_FETCHES"},
		{"MAX_TOKEN_FETCHES", "x", "MAX_TOKEN_FETCHES"},
		{"DEFAULT_VALID_FOR", "-1h", "DEFAULT_VALID_FOR"},
		{"DEFAULT_VALID_FOR", "30m", "at least 1h"},
		{"LEASE_DURATION", "0s", "at least 30m"},
		{"LEASE_DURATION", "29m", "at least 30m"},
		{"MIN_TOKEN_VALIDITY", "24h", "less than 24h"},
		{"MIN_TOKEN_VALIDITY", "0s", "MIN_TOKEN_VALIDITY"},
		{"PLANNER_PAGE_SIZE", "many", "PLANNER_PAGE_SIZE"},
		{"PLANNER_PAGE_SIZE", "0", "from 1 to 1000"},
		{"MAX_CONCURRENCY", "-2", "MAX_CONCURRENCY"},
		{"VERIFY_MAX_CHECKS", "0", "VERIFY_MAX_CHECKS"},
		{"ROTATE_ON_DEMAND", "yes", "true or false"},
		{"GENERATED_MATERIAL", "1", "true or false"},
		{"MATERIAL_PROOFS", "False", "true or false"},
	}
	for _, c := range cases {
		t.Run(c.k+"="+c.v, func(t *testing.T) {
			t.Setenv("TABLE_NAME", "t")
			t.Setenv(c.k, c.v)
			_, err := FromEnv()
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.k) || (c.v != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", c.v))) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestServedAccounts: the request options carry the accounts served (the
// own one and the members); member accounts without the role name or the
// ExternalId fail the init, naming the variable.
func TestServedAccounts(t *testing.T) {
	t.Setenv("TABLE_NAME", "t")
	t.Setenv("ACCOUNT_ID", "111122223333")
	t.Setenv("MEMBER_ACCOUNTS", "444455556666")
	t.Setenv("MEMBER_ROLE_NAME", "kms-reimport-member")
	t.Setenv("MEMBER_EXTERNAL_ID", "ext-1")
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.RequestOptions().Accounts; len(got) != 2 || got[0] != "111122223333" || got[1] != "444455556666" {
		t.Errorf("accounts served %v", got)
	}
	t.Setenv("MEMBER_EXTERNAL_ID", "")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MEMBER_EXTERNAL_ID") {
		t.Errorf("no ExternalId: %v", err)
	}
}

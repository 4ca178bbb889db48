package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRegisterPolicyFlags: register sets every field of the registry
// policy, rotation included, and checks them as an execution input is
// checked, before any call to AWS.
func TestRegisterPolicyFlags(t *testing.T) {
	key := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	base := []string{"register", "--table", "t", "--key", key, "--secret", "s", "--valid-for", "90d"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"rotateEvery too short", []string{"--rotate-every", "30d", "--generate-material"}, `field "rotateEvery" is "30d"`},
		{"rotateEvery without new material", []string{"--rotate-every", "180d"}, `field "rotateEvery" needs "newMaterialStage" or "generateMaterial"`},
		{"new material without a rotation policy", []string{"--new-material-stage", "AWSPENDING"}, `apply to a rotation`},
		{"new material stage in use", []string{"--rotate-every", "180d", "--new-material-stage", "AWSCURRENT"}, `field "newMaterialStage" is AWSCURRENT`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o, e bytes.Buffer
			code := run(append(append([]string{}, base...), c.args...), &o, &e)
			if code != exitUsage || !strings.Contains(e.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, e.String(), exitUsage, c.want)
			}
		})
	}
}

package settings

import (
	"strings"
	"testing"
)

// TestDiscoveryFromEnv: ADOPT_TAG empty is off (nothing else read);
// set, the selector, the secret mapping, the wrapping key spec and what
// the deployment allows are read, and a malformed value names its
// variable.
func TestDiscoveryFromEnv(t *testing.T) {
	set := func(kv map[string]string) {
		for _, k := range []string{AdoptTagVar, AdoptSecretTagVar, AdoptSecretPatternVar, ManagedTagKeyVar, ManagedTagValueVar, SecretPrefixVar, AdoptWrappingKeySpecVar} {
			t.Setenv(k, kv[k])
		}
	}
	set(map[string]string{AdoptSecretPatternVar: "{bad}"})
	if d, err := DiscoveryFromEnv(); err != nil || d.On {
		t.Fatalf("ADOPT_TAG unset: %+v, %v; want off", d, err)
	}
	set(map[string]string{AdoptTagVar: "team=payments", ManagedTagKeyVar: "kms-reimport:managed", ManagedTagValueVar: "true", SecretPrefixVar: "kms-reimport/",
		AdoptSecretPatternVar: "kms-reimport/{alias}", AdoptWrappingKeySpecVar: "RSA_2048"})
	d, err := DiscoveryFromEnv()
	if err != nil || !d.On || d.Selector["team"] != "payments" || d.SecretTag != "kms-reimport:secret" || d.Pattern != "kms-reimport/{alias}" ||
		d.Deployment.TagKey != "kms-reimport:managed" || d.Deployment.TagValue != "true" || d.Deployment.SecretPrefix != "kms-reimport/" || d.Policy.WrappingKeySpec != "RSA_2048" {
		t.Fatalf("%+v, %v", d, err)
	}
	for _, c := range []struct{ v map[string]string }{
		{map[string]string{AdoptTagVar: "team"}},
		{map[string]string{AdoptTagVar: "a=b", AdoptSecretPatternVar: "k/{name}"}},
		{map[string]string{AdoptTagVar: "a=b", AdoptWrappingKeySpecVar: "RSA_1024"}},
		{map[string]string{AdoptTagVar: "a=b", ManagedTagValueVar: "true"}},
	} {
		set(c.v)
		_, err := DiscoveryFromEnv()
		if err == nil || !strings.Contains(err.Error(), "environment variable") {
			t.Errorf("%v: %v; want an error naming the variable", c.v, err)
		}
	}
}

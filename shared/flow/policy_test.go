package flow

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
)

// TestRequestKept: the policy a request asks the registry to keep is its
// policy as checked, less what the registry doesn't keep; nil when it asks
// not to be registered.
func TestRequestKept(t *testing.T) {
	in := RequestInput{KeyID: "alias/k", SecretID: "s", Choices: Choices{AllowLegacyWrapping: true}, Policy: Policy{ValidFor: "90d", RenewBefore: "14d", RotateEvery: "180d", GenerateMaterial: true, WrappingKeySpec: "RSA_3072"}}
	r, err := ValidateRequest(in, time.Now(), RequestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k := r.Kept()
	if k == nil || k.ValidFor != "90d" || k.RenewBefore != "14d" || k.RotateEvery != "180d" || !k.GenerateMaterial || k.NewMaterialStage != DefaultGeneratedStage ||
		k.WrappingKeySpec != "RSA_3072" || k.SecretVersionStage != "AWSCURRENT" || k.NoExpiry() || k.ExpirationModel != "" {
		t.Fatalf("kept %+v", k)
	}
	if err := k.ValidateKept(); err != nil {
		t.Fatalf("the kept policy of a valid request does not validate: %v", err)
	}
	r.WrappingAlgorithm, r.WrappingKeySpec = "", ""
	if k := r.Kept(); k.WrappingAlgorithm != "" || k.WrappingKeySpec != "" {
		t.Errorf("a request that names no wrapping gives the registry one: %+v", k)
	}
	no := false
	in.Register, in.RotateEvery, in.GenerateMaterial = &no, "", false
	if r, err = ValidateRequest(in, time.Now(), RequestOptions{}); err != nil || r.Kept() != nil {
		t.Fatalf("register false: %v, %+v", err, r.Kept())
	}
	in.Register, in.ValidFor, in.ExpirationModel = nil, "", DoesNotExpire
	if r, err = ValidateRequest(in, time.Now(), RequestOptions{}); err != nil {
		t.Fatal(err)
	}
	if k := r.Kept(); k == nil || !k.NoExpiry() || k.ValidFor != "" {
		t.Fatalf("no expiry: %+v", k)
	}
}

// TestValidateKept: what the registry refuses to keep, naming the field.
func TestValidateKept(t *testing.T) {
	ok := Policy{ValidFor: "90d", RenewBefore: "14d"}
	cases := map[string]struct {
		change func(*Policy)
		want   string
	}{
		"valid":                   {func(*Policy) {}, ""},
		"no expiry":               {func(p *Policy) { p.ValidFor, p.ExpirationModel = "", DoesNotExpire }, ""},
		"no renewBefore":          {func(p *Policy) { p.RenewBefore = "" }, `field "renewBefore" is ""`},
		"renewBefore not shorter": {func(p *Policy) { p.RenewBefore = "90d" }, "must be shorter than validFor"},
		"validFor over a year":    {func(p *Policy) { p.ValidFor = "366d" }, `field "validFor" is "366d"`},
		"validFor with no expiry": {func(p *Policy) { p.ExpirationModel = DoesNotExpire }, "conflicts with no expiry"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := ok
			c.change(&p)
			err := p.ValidateKept()
			if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Fatalf("ValidateKept: %v; want %q", err, c.want)
			}
		})
	}
}

// TestPolicyAttributes: the policy keeps the DynamoDB attribute names the
// registry always had (noExpiry a boolean, absent when the material
// expires), and keeps no attribute for the fields the registry doesn't
// keep; a stored item reads back as the same policy.
func TestPolicyAttributes(t *testing.T) {
	p := Policy{SecretVersionStage: "AWSCURRENT", ExpirationModel: DoesNotExpire, RenewBefore: "14d", WrappingAlgorithm: "RSAES_OAEP_SHA_256",
		WrappingKeySpec: "RSA_4096", RotateEvery: "180d", NewMaterialStage: "AWSPENDING", GenerateMaterial: true}
	item, err := attributevalue.MarshalMap(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range item {
		names = append(names, n)
	}
	want := []string{"generateMaterial", "newMaterialStage", "noExpiry", "renewBefore", "rotateEvery", "secretVersionStage", "wrappingAlgorithm", "wrappingKeySpec"}
	if !sameSet(names, want) {
		t.Fatalf("attributes %v; want %v", names, want)
	}
	var back Policy
	if err := attributevalue.UnmarshalMap(item, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p.Kept()) {
		t.Fatalf("read back %+v; want %+v", back, p.Kept())
	}
	p.ExpirationModel, p.ValidFor = "", "90d"
	item, _ = attributevalue.MarshalMap(p)
	if _, ok := item["noExpiry"]; ok {
		t.Fatalf("material that expires stored with noExpiry: %v", item)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}

package kmsaccess

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// TestCheckImportableFacts: each refusal names the check that failed and
// carries DescribeKey's values, the facts the registry decides by.
func TestCheckImportableFacts(t *testing.T) {
	const arn = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	md := func(origin types.OriginType, spec types.KeySpec, state types.KeyState, store string) *types.KeyMetadata {
		m := &types.KeyMetadata{Arn: aws.String(arn), Origin: origin, KeySpec: spec, KeyState: state}
		if store != "" {
			m.CustomKeyStoreId = aws.String(store)
		}
		return m
	}
	ext, sym := types.OriginTypeExternal, types.KeySpecSymmetricDefault
	cases := []struct {
		name      string
		md        *types.KeyMetadata
		wantName  string
		wantCheck flow.Check
	}{
		{"importable", md(ext, sym, types.KeyStatePendingImport, ""), "", ""},
		{"renewable", md(ext, sym, types.KeyStateEnabled, ""), "", ""},
		{"origin first, whatever the state", md(types.OriginTypeAwsKms, sym, types.KeyStateCreating, ""), flow.KeyNotEligible, flow.CheckOrigin},
		{"custom key store", md(ext, sym, types.KeyStateUnavailable, "cks-1234567890abcdef0"), flow.KeyNotEligible, flow.CheckCustomKeyStore},
		{"passing state", md(ext, sym, types.KeyStateUpdating, ""), flow.KeyNotReady, flow.CheckKeyState},
		{"disabled", md(ext, sym, types.KeyStateDisabled, ""), flow.KeyNotEligible, flow.CheckKeyState},
		{"unsupported spec", md(ext, types.KeySpecSm2, types.KeyStateEnabled, ""), flow.KeyNotEligible, flow.CheckKeySpec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckImportable(c.md)
			if c.wantName == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			f := flow.FactsOf(err)
			if flow.NameOf(err) != c.wantName || f == nil || f.Check != c.wantCheck {
				t.Fatalf("%s %+v, want %s with check %s", flow.NameOf(err), f, c.wantName, c.wantCheck)
			}
			want := flow.Facts{Check: c.wantCheck, KeyARN: arn, Region: "eu-west-2", KeyState: string(c.md.KeyState), Origin: string(c.md.Origin),
				KeySpec: string(c.md.KeySpec), CustomKeyStoreID: aws.ToString(c.md.CustomKeyStoreId)}
			if *f != want {
				t.Fatalf("facts %+v, want %+v", *f, want)
			}
		})
	}
}

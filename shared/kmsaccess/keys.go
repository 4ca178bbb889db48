// Package kmsaccess is the one place the product reaches KMS from: per-Region
// clients (regions.go), describing a key and checking it can take an import,
// and listing its key materials.
//
// Describe reads a KMS key's metadata and decides whether it can take
// imported key material.
package kmsaccess

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// Describer is the part of KMS this package uses.
type Describer interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

// Describe returns the key's metadata; a missing key is KeyNotFound.
func Describe(ctx context.Context, api Describer, keyID string) (*types.KeyMetadata, error) {
	out, err := api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID})
	if err != nil {
		var nf *types.NotFoundException
		if errors.As(err, &nf) {
			return nil, flow.Wrap(flow.KeyNotFound, err, "KMS key %q not found", keyID)
		}
		return nil, flow.FromAWS(err, flow.Internal, "DescribeKey %q", keyID)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.Arn == nil {
		return nil, flow.Errorf(flow.Internal, "DescribeKey %q returned no metadata", keyID)
	}
	return out.KeyMetadata, nil
}

// ImportableStates are the key states this product imports into: a key
// waiting for its first (or expired) material, or a live key being renewed.
var ImportableStates = []types.KeyState{types.KeyStatePendingImport, types.KeyStateEnabled}

// SupportedSpecs are the key specs whose material this product imports.
var SupportedSpecs = []types.KeySpec{
	types.KeySpecSymmetricDefault,
	types.KeySpecHmac224, types.KeySpecHmac256, types.KeySpecHmac384, types.KeySpecHmac512,
	types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096,
	types.KeySpecEccNistP256, types.KeySpecEccNistP384, types.KeySpecEccNistP521, types.KeySpecEccSecgP256k1,
}

// CheckImportable refuses keys that cannot take an import, naming why.
func CheckImportable(md *types.KeyMetadata) error {
	arn := *md.Arn
	if md.Origin != types.OriginTypeExternal {
		return flow.Errorf(flow.KeyNotEligible, "key %s has origin %s; only keys with origin EXTERNAL take imported key material", arn, md.Origin)
	}
	if md.CustomKeyStoreId != nil {
		return flow.Errorf(flow.KeyNotEligible, "key %s is in custom key store %s; KMS cannot import material into a custom key store", arn, *md.CustomKeyStoreId)
	}
	ok := false
	for _, s := range ImportableStates {
		ok = ok || md.KeyState == s
	}
	if !ok {
		return flow.Errorf(flow.KeyNotEligible, "key %s is in state %s; an import is done only in states %s (enable a Disabled key, cancel a pending deletion first)", arn, md.KeyState, joinStates(ImportableStates))
	}
	spec := md.KeySpec
	ok = false
	for _, s := range SupportedSpecs {
		ok = ok || spec == s
	}
	if !ok {
		return flow.Errorf(flow.KeyNotEligible, "key %s has key spec %s; supported: %s", arn, spec, joinSpecs(SupportedSpecs))
	}
	return nil
}

func joinStates(s []types.KeyState) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

func joinSpecs(s []types.KeySpec) string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

// Package kmsaccess is the one place the product reaches KMS from: per-Region
// clients (regions.go), describing a key and checking it can take an import,
// and listing its key materials.
//
// Stages declare the part of API they call; settings builds the Clients
// (the one Regional) once per process.
package kmsaccess

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
)

// API is every KMS operation the product calls; *kms.Client has them all.
type API interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	GetParametersForImport(context.Context, *kms.GetParametersForImportInput, ...func(*kms.Options)) (*kms.GetParametersForImportOutput, error)
	ImportKeyMaterial(context.Context, *kms.ImportKeyMaterialInput, ...func(*kms.Options)) (*kms.ImportKeyMaterialOutput, error)
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
	RotateKeyOnDemand(context.Context, *kms.RotateKeyOnDemandInput, ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error)
	GetKeyRotationStatus(context.Context, *kms.GetKeyRotationStatusInput, ...func(*kms.Options)) (*kms.GetKeyRotationStatusOutput, error)
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	GenerateMac(context.Context, *kms.GenerateMacInput, ...func(*kms.Options)) (*kms.GenerateMacOutput, error)
	Sign(context.Context, *kms.SignInput, ...func(*kms.Options)) (*kms.SignOutput, error)
}

// Regional is the one interface the stages reach KMS through: the client
// of a Region ("" is the function's own). A multi-Region key's replicas
// live in other Regions; RegionOf(arn) names the Region of any key.
type Regional interface {
	In(region string) API
}

// Single serves every Region from one client: the operator command and
// tests that talk to one endpoint.
type Single struct{ API }

// In returns the one client.
func (s Single) In(string) API { return s.API }

// Describer is the part of API that Describe uses.
type Describer interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

// Lister is the part of API that ListMaterials uses.
type Lister interface {
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
}

// ListMaterials returns every key material of a symmetric key
// (ListKeyRotations with IncludeKeyMaterial ALL_KEY_MATERIAL, all pages).
func ListMaterials(ctx context.Context, api Lister, arn string) ([]types.RotationsListEntry, error) {
	var out []types.RotationsListEntry
	p := kms.NewListKeyRotationsPaginator(api, &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, flow.FromAWS(err, flow.Internal, "ListKeyRotations for %s", arn)
		}
		out = append(out, page.Rotations...)
	}
	return out, nil
}

// ListsMaterials says whether KMS tracks the key's materials by
// KeyMaterialId (ListKeyRotations answers for it): a symmetric key that
// holds material reports its CurrentKeyMaterialId; HMAC and asymmetric
// keys hold one material for life and have none.
func ListsMaterials(md *types.KeyMetadata) bool {
	return md.KeySpec == types.KeySpecSymmetricDefault && md.CurrentKeyMaterialId != nil
}

// Describe returns the key's metadata; a missing key is KeyNotFound.
func Describe(ctx context.Context, api Describer, keyID string) (*types.KeyMetadata, error) {
	out, err := api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID})
	if err != nil {
		var nf *types.NotFoundException
		if errors.As(err, &nf) {
			f := flow.Facts{Check: flow.CheckNotFound, KeyARN: keyID, Region: RegionOf(keyID)}
			return nil, f.Wrap(flow.KeyNotFound, err, "KMS key %q not found", keyID)
		}
		return nil, flow.FromAWS(err, flow.Internal, "DescribeKey %q", keyID)
	}
	if out.KeyMetadata == nil || out.KeyMetadata.Arn == nil {
		return nil, flow.Errorf(flow.Internal, "DescribeKey %q returned no metadata", keyID)
	}
	return out.KeyMetadata, nil
}

// Describing describes keys through the per-Region clients of a Regional:
// the form a stage that only reads a key's metadata declares.
type Describing struct{ Regional }

// Describe is Describe through the client of region ("" is the
// function's own).
func (d Describing) Describe(ctx context.Context, region, keyID string) (*types.KeyMetadata, error) {
	return Describe(ctx, ForKeyIn(d.Regional, keyID, region), keyID)
}

// PassingStates are key states KMS leaves by itself: a key in one is
// tried again, never blocked.
var PassingStates = []types.KeyState{types.KeyStateCreating, types.KeyStateUpdating, types.KeyStateUnavailable}

// ImportableStates are the key states this product imports into: a key
// waiting for its first (or expired) material, or a live key being renewed.
var ImportableStates = []types.KeyState{types.KeyStatePendingImport, types.KeyStateEnabled}

// CheckImportable refuses keys that cannot take an import, naming why in
// words and in facts (flow.Facts: the check that failed and DescribeKey's
// values), which decide whether the key is blocked.
func CheckImportable(md *types.KeyMetadata) error {
	arn := *md.Arn
	f := factsOf(md)
	switch {
	case md.Origin != types.OriginTypeExternal:
		f.Check = flow.CheckOrigin
		return f.Errorf(flow.KeyNotEligible, "key %s has origin %s; only keys with origin EXTERNAL take imported key material", arn, md.Origin)
	case md.CustomKeyStoreId != nil:
		f.Check = flow.CheckCustomKeyStore
		return f.Errorf(flow.KeyNotEligible, "key %s is in custom key store %s; KMS cannot import material into a custom key store", arn, *md.CustomKeyStoreId)
	case slices.Contains(PassingStates, md.KeyState):
		f.Check = flow.CheckKeyState
		return f.Errorf(flow.KeyNotReady, "key %s is in state %s, which passes; an import is done in states %s", arn, md.KeyState, joinStates(ImportableStates))
	case !slices.Contains(ImportableStates, md.KeyState):
		f.Check = flow.CheckKeyState
		return f.Errorf(flow.KeyNotEligible, "key %s is in state %s; an import is done only in states %s (enable a Disabled key, cancel a pending deletion first)", arn, md.KeyState, joinStates(ImportableStates))
	}
	if supported := keymaterial.SupportedKeySpecs(); !slices.Contains(supported, md.KeySpec) {
		f.Check = flow.CheckKeySpec
		return f.Errorf(flow.KeyNotEligible, "key %s has key spec %s; supported: %s", arn, md.KeySpec, joinSpecs(supported))
	}
	return nil
}

// CheckReplica refuses a replica of primary that cannot take an import: a
// passing state is KeyNotReady; another origin than EXTERNAL or a state
// outside ImportableStates is KeyNotEligible. A replica has its primary's
// key spec; origin and state are its own.
func CheckReplica(md *types.KeyMetadata, primary string) error {
	arn := *md.Arn
	f := factsOf(md)
	f.PrimaryKeyARN = primary
	switch {
	case md.Origin != types.OriginTypeExternal:
		f.Check = flow.CheckOrigin
	case slices.Contains(PassingStates, md.KeyState):
		f.Check = flow.CheckKeyState
		return f.Errorf(flow.KeyNotReady, "replica %s of %s is in state %s, which passes", arn, primary, md.KeyState)
	case !slices.Contains(ImportableStates, md.KeyState):
		f.Check = flow.CheckKeyState
	default:
		return nil
	}
	return f.Errorf(flow.KeyNotEligible, "replica %s of %s has origin %s and state %s; an import needs origin EXTERNAL and state %s", arn, primary, md.Origin, md.KeyState, joinStates(ImportableStates))
}

// NotPrimary refuses a key that is a multi-Region replica: the product
// renews a primary, and its replicas with it.
func NotPrimary(md *types.KeyMetadata, primary string) error {
	f := factsOf(md)
	f.Check, f.PrimaryKeyARN = flow.CheckReplicaNotPrimary, primary
	return f.Errorf(flow.KeyNotEligible, "key %s is a multi-Region replica: run kms-reimport on its primary key %s, which imports into every replica", *md.Arn, primary)
}

// Refused names KMS's refusal of an import call (op) on the key arn, by
// the type of KMS's exception: NotFoundException is the check notFound;
// KMSInvalidStateException and UnsupportedOperationException are
// kmsRefused with the exception's code (record-failure then asks
// DescribeKey for the key's state). All are KeyNotEligible. Any other
// error is nil: the caller names it.
func Refused(op, arn string, err error) error {
	var (
		nf *types.NotFoundException
		is *types.KMSInvalidStateException
		uo *types.UnsupportedOperationException
	)
	f := flow.Facts{Check: flow.CheckKMSRefused, KeyARN: arn, Region: RegionOf(arn), Operation: op}
	switch {
	case errors.As(err, &nf):
		f.Check, f.KMSError = flow.CheckNotFound, nf.ErrorCode()
	case errors.As(err, &is):
		f.KMSError = is.ErrorCode()
	case errors.As(err, &uo):
		f.KMSError = uo.ErrorCode()
	default:
		return nil
	}
	return f.Wrap(flow.KeyNotEligible, err, "%s for %s", op, arn)
}

// factsOf is what DescribeKey's metadata says about the key.
func factsOf(md *types.KeyMetadata) flow.Facts {
	arn := aws.ToString(md.Arn)
	return flow.Facts{KeyARN: arn, Region: RegionOf(arn), KeyState: string(md.KeyState), Origin: string(md.Origin),
		KeySpec: string(md.KeySpec), CustomKeyStoreID: aws.ToString(md.CustomKeyStoreId)}
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

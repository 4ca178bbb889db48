package wrapping

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// materialClass groups key specs by what the KMS developer guide's "Select
// a wrapping algorithm" table allows for them.
type materialClass int

const (
	classUnknown   materialClass = iota
	classSymmetric               // SYMMETRIC_DEFAULT
	classHMAC                    // HMAC_*
	classRSA                     // RSA private keys
	classECC                     // ECC private keys
)

func classify(keySpec types.KeySpec) materialClass {
	switch keySpec {
	case types.KeySpecSymmetricDefault:
		return classSymmetric
	case types.KeySpecHmac224, types.KeySpecHmac256, types.KeySpecHmac384, types.KeySpecHmac512:
		return classHMAC
	case types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096:
		return classRSA
	case types.KeySpecEccNistP256, types.KeySpecEccNistP384, types.KeySpecEccNistP521, types.KeySpecEccSecgP256k1:
		return classECC
	}
	return classUnknown
}

// Allowed returns the wrapping algorithms KMS accepts for key material of
// keySpec, in the guide's order of preference (RSAES_PKCS1_V1_5 and the
// China-only SM2PKE excluded). It is empty for a key spec whose material
// cannot be imported.
func Allowed(keySpec types.KeySpec) []types.AlgorithmSpec {
	switch classify(keySpec) {
	case classSymmetric, classHMAC:
		return []types.AlgorithmSpec{types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1}
	case classRSA:
		return []types.AlgorithmSpec{types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1}
	case classECC:
		return []types.AlgorithmSpec{types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1,
			types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1}
	}
	return nil
}

func joinAlgs(algs []types.AlgorithmSpec) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// Defaults returns the wrapping algorithm and wrapping key spec to ask
// GetParametersForImport for when the caller names none: RSA_4096 always
// (the guide prefers the longest wrapping key), RSAES_OAEP_SHA_256 for
// SYMMETRIC_DEFAULT and HMAC_* material, RSA_AES_KEY_WRAP_SHA_256 for
// asymmetric (RSA, ECC) material.
func Defaults(keySpec types.KeySpec) (types.AlgorithmSpec, types.WrappingKeySpec) {
	switch classify(keySpec) {
	case classRSA, classECC:
		return types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096
	}
	if s := string(keySpec); strings.HasPrefix(s, "RSA_") || strings.HasPrefix(s, "ECC_") || keySpec == types.KeySpecSm2 || strings.HasPrefix(s, "ML_") {
		// Asymmetric key specs this package does not import: Check says why.
		return types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096
	}
	return types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096
}

// Check enforces, before any request to KMS, the rules of the KMS developer
// guide ("Select a wrapping algorithm", "Select a wrapping public key spec")
// for importing materialLen bytes of keySpec material wrapped with alg
// under a spec wrapping key:
//
//   - wrapping key specs RSA_2048, RSA_3072, RSA_4096 (SM2: China Regions
//     only, not supported);
//   - SYMMETRIC_DEFAULT and HMAC_* material: RSAES_OAEP_SHA_256 or
//     RSAES_OAEP_SHA_1;
//   - RSA private keys: RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1;
//   - ECC private keys: those four, except RSAES_OAEP_* with RSA_2048 for
//     ECC_NIST_P521 material;
//   - RSAES_OAEP_* encrypts at most k - 2*hLen - 2 bytes (k the modulus
//     size in bytes, hLen the hash size): longer material is refused;
//   - RSAES_PKCS1_V1_5: KMS stopped accepting it on 2023-10-10: refused
//     unless allowLegacy, and then for SYMMETRIC_DEFAULT material only;
//   - SM2PKE and SM2 key material: China Regions only, not supported.
//
// Every error wraps ErrUnsupported and names the field (keySpec,
// wrappingAlgorithm, wrappingKeySpec), the value and what is allowed.
func Check(keySpec types.KeySpec, alg types.AlgorithmSpec, spec types.WrappingKeySpec, materialLen int, allowLegacy bool) error {
	class := classify(keySpec)
	if class == classUnknown {
		switch {
		case keySpec == types.KeySpecSm2:
			return fmt.Errorf("%w: keySpec SM2: SM2 key material is imported in China Regions only, which is not supported", ErrUnsupported)
		case strings.HasPrefix(string(keySpec), "ML_DSA_"), strings.HasPrefix(string(keySpec), "ML_KEM_"):
			return fmt.Errorf("%w: keySpec %s: KMS does not support importing its key material", ErrUnsupported, keySpec)
		}
		return fmt.Errorf("%w: keySpec %q cannot be imported; allowed: SYMMETRIC_DEFAULT, HMAC_224, HMAC_256, HMAC_384, HMAC_512, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1", ErrUnsupported, keySpec)
	}
	bits, ok := keyBits[spec]
	if !ok {
		return specError(spec)
	}
	if materialLen <= 0 {
		return fmt.Errorf("%w: the %s key material is empty", ErrUnsupported, keySpec)
	}
	allowed := Allowed(keySpec)
	k := bits / 8

	switch alg {
	case types.AlgorithmSpecRsaesPkcs1V15:
		if !allowLegacy {
			return legacyError()
		}
		if class != classSymmetric {
			return fmt.Errorf("%w: wrappingAlgorithm RSAES_PKCS1_V1_5 (legacy) is allowed for SYMMETRIC_DEFAULT material only, not %s; allowed for %s: %s", ErrUnsupported, keySpec, keySpec, joinAlgs(allowed))
		}
		if max := k - 11; materialLen > max {
			return fmt.Errorf("%w: wrappingAlgorithm RSAES_PKCS1_V1_5 with wrappingKeySpec %s encrypts at most %d bytes; the %s material is %d bytes", ErrUnsupported, spec, max, keySpec, materialLen)
		}
		return nil
	case types.AlgorithmSpecSm2pke:
		return fmt.Errorf("%w: wrappingAlgorithm SM2PKE is not supported (China Regions only); allowed for %s: %s", ErrUnsupported, keySpec, joinAlgs(allowed))
	case types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1,
		types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1:
	default:
		return fmt.Errorf("%w: wrappingAlgorithm %q is not a KMS wrapping algorithm; allowed for %s: %s", ErrUnsupported, alg, keySpec, joinAlgs(allowed))
	}

	permitted := false
	for _, a := range allowed {
		permitted = permitted || a == alg
	}
	if !permitted {
		why := ""
		switch class {
		case classRSA:
			why = " (RSA private keys are too long to encrypt directly: an RSA_AES wrapping algorithm is required)"
		case classSymmetric, classHMAC:
			why = " (KMS takes RSA_AES wrapping for RSA and ECC private keys only)"
		}
		return fmt.Errorf("%w: wrappingAlgorithm %s is not supported for %s key material%s; allowed: %s", ErrUnsupported, alg, keySpec, why, joinAlgs(allowed))
	}

	switch alg {
	case types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1:
		if keySpec == types.KeySpecEccNistP521 && spec == types.WrappingKeySpecRsa2048 {
			return fmt.Errorf("%w: wrappingKeySpec RSA_2048 cannot be used with wrappingAlgorithm %s for ECC_NIST_P521 key material; allowed: wrappingKeySpec RSA_3072 or RSA_4096, or wrappingAlgorithm RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1", ErrUnsupported, alg)
		}
		hLen := 32
		if alg == types.AlgorithmSpecRsaesOaepSha1 {
			hLen = 20
		}
		if max := maxOAEP(k, hLen); materialLen > max {
			return fmt.Errorf("%w: wrappingAlgorithm %s with wrappingKeySpec %s encrypts at most %d bytes (%d-byte modulus - 2 x %d-byte hash - 2); the %s material is %d bytes: use a larger wrappingKeySpec or RSA_AES_KEY_WRAP_SHA_256", ErrUnsupported, alg, spec, max, k, hLen, keySpec, materialLen)
		}
	case types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1:
		if materialLen < subtle.MinWrapSize || materialLen > subtle.MaxWrapSize {
			return fmt.Errorf("%w: wrappingAlgorithm %s wraps %d to %d bytes of material; the %s material is %d bytes", ErrUnsupported, alg, subtle.MinWrapSize, subtle.MaxWrapSize, keySpec, materialLen)
		}
	}
	return nil
}

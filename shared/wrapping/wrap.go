// Package wrapping encrypts ("wraps") plaintext key material with the wrapping
// public key that KMS returns from GetParametersForImport, using the
// algorithm named in that request, and checks beforehand that KMS accepts
// the combination of key material, wrapping algorithm and wrapping key spec
// (Check).
//
// Algorithms:
//   - RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1: RSA-OAEP of the material, MGF1
//     with the same hash, empty label.
//   - RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1: a fresh random
//     AES-256 key wraps the material with AES key wrap with padding
//     (RFC 5649); the AES key is encrypted with RSA-OAEP (same hash for
//     OAEP and MGF1); the result is RSA ciphertext || KWP ciphertext.
//   - RSAES_PKCS1_V1_5: KMS stopped accepting it on 2023-10-10; only with
//     an explicit legacy opt-in (WrapWithOptions), for symmetric material.
//
// SM2 and SM2PKE (China Regions only) are not supported.
package wrapping

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// ErrUnsupported is wrapped by every error about an algorithm, spec or
// combination this package refuses.
var ErrUnsupported = errors.New("unsupported wrapping")

// Recommended is the wrapping algorithm to name when a deprecated one is
// refused.
const Recommended = types.AlgorithmSpecRsaesOaepSha256

// keyBits is the modulus size each wrapping key spec promises.
var keyBits = map[types.WrappingKeySpec]int{
	types.WrappingKeySpecRsa2048: 2048,
	types.WrappingKeySpecRsa3072: 3072,
	types.WrappingKeySpecRsa4096: 4096,
}

const allowedSpecs = "RSA_2048, RSA_3072, RSA_4096"

const allowedAlgorithms = "RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1"

// specError explains a wrapping key spec this package does not use.
func specError(spec types.WrappingKeySpec) error {
	if spec == types.WrappingKeySpecSm2 {
		return fmt.Errorf("%w: wrappingKeySpec SM2 is not supported (China Regions only); allowed: %s", ErrUnsupported, allowedSpecs)
	}
	return fmt.Errorf("%w: wrappingKeySpec %q; allowed: %s", ErrUnsupported, spec, allowedSpecs)
}

// ParsePublicKey decodes the wrapping public key returned by
// GetParametersForImport and checks it is RSA of the size the spec says.
// It takes DER (SubjectPublicKeyInfo, as the API and the console's
// WrappingPublicKey.bin give it), PEM ("PUBLIC KEY", or PKCS#1
// "RSA PUBLIC KEY"), or base64 of the DER (as
// `aws kms get-parameters-for-import --query PublicKey --output text`
// writes it).
func ParsePublicKey(der []byte, spec types.WrappingKeySpec) (*rsa.PublicKey, error) {
	bits, ok := keyBits[spec]
	if !ok {
		return nil, specError(spec)
	}
	pub, err := parseRSAPublicKey(der)
	if err != nil {
		return nil, err
	}
	if pub.N.BitLen() != bits {
		return nil, fmt.Errorf("%w: wrapping public key has %d bits, but wrappingKeySpec %s says %d", ErrUnsupported, pub.N.BitLen(), spec, bits)
	}
	return pub, nil
}

// ParseAnyPublicKey decodes a wrapping public key like ParsePublicKey and
// infers its wrapping key spec from the modulus size.
func ParseAnyPublicKey(data []byte) (*rsa.PublicKey, types.WrappingKeySpec, error) {
	pub, err := parseRSAPublicKey(data)
	if err != nil {
		return nil, "", err
	}
	spec, err := SpecOf(pub)
	if err != nil {
		return nil, "", err
	}
	return pub, spec, nil
}

// SpecOf returns the wrapping key spec of an RSA public key of 2048, 3072
// or 4096 bits.
func SpecOf(pub *rsa.PublicKey) (types.WrappingKeySpec, error) {
	if pub == nil || pub.N == nil {
		return "", errors.New("no wrapping public key")
	}
	for spec, bits := range keyBits {
		if pub.N.BitLen() == bits {
			return spec, nil
		}
	}
	return "", fmt.Errorf("%w: wrapping public key has %d bits; wrappingKeySpec allowed: %s", ErrUnsupported, pub.N.BitLen(), allowedSpecs)
}

func parseRSAPublicKey(data []byte) (*rsa.PublicKey, error) {
	der := data
	pkcs1 := false
	trimmed := strings.TrimSpace(string(data))
	switch {
	case strings.HasPrefix(trimmed, "-----BEGIN"):
		block, rest := pem.Decode([]byte(trimmed))
		if block == nil {
			return nil, errors.New("wrapping public key: malformed PEM")
		}
		if len(strings.TrimSpace(string(rest))) != 0 {
			return nil, errors.New("wrapping public key: data after the PEM block; give one key")
		}
		switch block.Type {
		case "PUBLIC KEY":
		case "RSA PUBLIC KEY":
			pkcs1 = true
		default:
			return nil, fmt.Errorf("wrapping public key: PEM type %q; want PUBLIC KEY", block.Type)
		}
		der = block.Bytes
	case len(data) > 0 && data[0] != 0x30:
		// Not DER (which starts with a SEQUENCE); try base64 text.
		compact := strings.Join(strings.Fields(trimmed), "")
		b, err := base64.StdEncoding.DecodeString(compact)
		if err != nil {
			return nil, errors.New("wrapping public key is neither DER, PEM nor base64")
		}
		der = b
	}
	var pub *rsa.PublicKey
	if pkcs1 {
		k, err := x509.ParsePKCS1PublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("wrapping public key is not a PKCS#1 RSA public key: %w", err)
		}
		pub = k
	} else {
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("wrapping public key is not a DER SubjectPublicKeyInfo: %w", err)
		}
		r, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: wrapping public key is %T, want RSA (SM2 wrapping keys are China Regions only)", ErrUnsupported, k)
		}
		pub = r
	}
	return pub, nil
}

// Options changes what WrapWithOptions accepts.
type Options struct {
	// AllowLegacyPKCS1 permits RSAES_PKCS1_V1_5, which KMS no longer
	// accepts (since 2023-10-10) but older systems and emulators may. It
	// applies to symmetric (SYMMETRIC_DEFAULT, 32-byte) material only.
	AllowLegacyPKCS1 bool
}

// Wrap encrypts material under pub with algorithm. The result is the
// EncryptedKeyMaterial of ImportKeyMaterial. random defaults to
// crypto/rand.Reader when nil. It never includes material in an error.
// RSAES_PKCS1_V1_5 is refused: see WrapWithOptions. Call Check first: Wrap
// does not know the key spec the material is for.
func Wrap(pub *rsa.PublicKey, algorithm types.AlgorithmSpec, material []byte, random io.Reader) ([]byte, error) {
	return WrapWithOptions(pub, algorithm, material, random, Options{})
}

// WrapWithOptions is Wrap with options (the legacy PKCS#1 v1.5 opt-in).
func WrapWithOptions(pub *rsa.PublicKey, algorithm types.AlgorithmSpec, material []byte, random io.Reader, opts Options) ([]byte, error) {
	if pub == nil || pub.N == nil {
		return nil, errors.New("wrap: no wrapping public key")
	}
	if random == nil {
		random = rand.Reader
	}
	if len(material) == 0 {
		return nil, errors.New("wrap: the key material is empty")
	}
	switch algorithm {
	case types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1:
		h := oaepHash(algorithm)
		if max := maxOAEP(pub.Size(), h.Size()); len(material) > max {
			return nil, fmt.Errorf("%w: wrappingAlgorithm %s with a %d-bit wrapping key encrypts at most %d bytes directly; the material is %d bytes: use a larger wrapping key or RSA_AES_KEY_WRAP_SHA_256", ErrUnsupported, algorithm, pub.N.BitLen(), max, len(material))
		}
		out, err := rsa.EncryptOAEP(h, random, pub, material, nil)
		if err != nil {
			// The standard library's errors name sizes, never the message.
			return nil, fmt.Errorf("%s with a %d-bit key: %w", algorithm, pub.N.BitLen(), err)
		}
		return out, nil
	case types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1:
		return wrapRSAAES(pub, algorithm, material, random)
	case types.AlgorithmSpecRsaesPkcs1V15:
		if !opts.AllowLegacyPKCS1 {
			return nil, legacyError()
		}
		if len(material) != 32 {
			return nil, fmt.Errorf("%w: wrappingAlgorithm RSAES_PKCS1_V1_5 (legacy) is allowed for 32-byte SYMMETRIC_DEFAULT material only; the material is %d bytes: use %s", ErrUnsupported, len(material), Recommended)
		}
		//lint:ignore SA1019 legacy opt-in, for systems that still require it
		out, err := rsa.EncryptPKCS1v15(random, pub, material) //nolint:staticcheck
		if err != nil {
			return nil, fmt.Errorf("%s with a %d-bit key: %w", algorithm, pub.N.BitLen(), err)
		}
		return out, nil
	case types.AlgorithmSpecSm2pke:
		return nil, fmt.Errorf("%w: wrappingAlgorithm SM2PKE is not supported (China Regions only); allowed: %s", ErrUnsupported, allowedAlgorithms)
	}
	return nil, fmt.Errorf("%w: wrappingAlgorithm %q; allowed: %s", ErrUnsupported, algorithm, allowedAlgorithms)
}

func legacyError() error {
	return fmt.Errorf("%w: wrappingAlgorithm RSAES_PKCS1_V1_5 is deprecated and KMS stopped accepting it on 2023-10-10; use %s (an explicit legacy opt-in allows it for SYMMETRIC_DEFAULT material only, for systems that still accept it)", ErrUnsupported, Recommended)
}

func oaepHash(algorithm types.AlgorithmSpec) hash.Hash {
	switch algorithm {
	case types.AlgorithmSpecRsaesOaepSha1, types.AlgorithmSpecRsaAesKeyWrapSha1:
		return sha1.New()
	}
	return sha256.New()
}

// maxOAEP is the longest message RSA-OAEP encrypts with a k-byte modulus
// and an hLen-byte hash (RFC 8017, 7.1.1): k - 2hLen - 2.
func maxOAEP(k, hLen int) int { return k - 2*hLen - 2 }

// wrapRSAAES implements RSA_AES_KEY_WRAP_SHA_*: a fresh AES-256 key wraps
// the material with KWP (RFC 5649); RSA-OAEP encrypts the AES key.
func wrapRSAAES(pub *rsa.PublicKey, algorithm types.AlgorithmSpec, material []byte, random io.Reader) ([]byte, error) {
	if len(material) < subtle.MinWrapSize || len(material) > subtle.MaxWrapSize {
		return nil, fmt.Errorf("%w: wrappingAlgorithm %s wraps %d to %d bytes of material; the material is %d bytes", ErrUnsupported, algorithm, subtle.MinWrapSize, subtle.MaxWrapSize, len(material))
	}
	aesKey := make([]byte, 32)
	defer clear(aesKey)
	if _, err := io.ReadFull(random, aesKey); err != nil {
		return nil, fmt.Errorf("%s: generating the AES key: %w", algorithm, err)
	}
	kw, err := subtle.NewKWP(aesKey)
	if err != nil {
		return nil, fmt.Errorf("%s: AES key wrap setup failed", algorithm)
	}
	wrapped, err := kw.Wrap(material)
	if err != nil {
		// tink's errors carry no data, but describe rather than wrap.
		return nil, fmt.Errorf("%s: AES key wrap with padding failed for %d bytes of material", algorithm, len(material))
	}
	encKey, err := rsa.EncryptOAEP(oaepHash(algorithm), random, pub, aesKey, nil)
	if err != nil {
		return nil, fmt.Errorf("%s with a %d-bit key: %w", algorithm, pub.N.BitLen(), err)
	}
	out := make([]byte, 0, len(encKey)+len(wrapped))
	out = append(out, encKey...)
	return append(out, wrapped...), nil
}

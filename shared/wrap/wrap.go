// Package wrap encrypts ("wraps") plaintext key material with the wrapping
// public key that KMS returns from GetParametersForImport, using the
// algorithm named in that request.
package wrap

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// ErrUnsupported is wrapped by every error about an algorithm, spec or
// combination this package refuses.
var ErrUnsupported = errors.New("unsupported wrapping")

// keyBits is the modulus size each wrapping key spec promises.
var keyBits = map[types.WrappingKeySpec]int{
	types.WrappingKeySpecRsa2048: 2048,
	types.WrappingKeySpecRsa3072: 3072,
	types.WrappingKeySpecRsa4096: 4096,
}

// ParsePublicKey decodes the DER SubjectPublicKeyInfo returned by
// GetParametersForImport and checks it is RSA of the size the spec says.
func ParsePublicKey(der []byte, spec types.WrappingKeySpec) (*rsa.PublicKey, error) {
	bits, ok := keyBits[spec]
	if !ok {
		return nil, fmt.Errorf("%w: wrapping key spec %q; allowed: RSA_2048, RSA_3072, RSA_4096", ErrUnsupported, spec)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("wrapping public key is not a DER SubjectPublicKeyInfo: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("wrapping public key is %T, want RSA", k)
	}
	if pub.N.BitLen() != bits {
		return nil, fmt.Errorf("wrapping public key has %d bits, spec %s says %d", pub.N.BitLen(), spec, bits)
	}
	return pub, nil
}

// Wrap encrypts material under pub with algorithm. The result is the
// EncryptedKeyMaterial of ImportKeyMaterial. It never includes material in
// an error.
func Wrap(pub *rsa.PublicKey, algorithm types.AlgorithmSpec, material []byte, random io.Reader) ([]byte, error) {
	var h hash.Hash
	switch algorithm {
	case types.AlgorithmSpecRsaesOaepSha256:
		h = sha256.New()
	case types.AlgorithmSpecRsaesOaepSha1:
		h = sha1.New()
	default:
		return nil, fmt.Errorf("%w: wrapping algorithm %q", ErrUnsupported, algorithm)
	}
	out, err := rsa.EncryptOAEP(h, random, pub, material, nil)
	if err != nil {
		// The standard library's errors name sizes, never the message.
		return nil, fmt.Errorf("%s with a %d-bit key: %w", algorithm, pub.N.BitLen(), err)
	}
	return out, nil
}

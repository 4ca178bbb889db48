// Package keybuild makes what tests import: key material of each kind and
// keys bound to it through the KMS API, built one way for every suite.
package keybuild

import (
	"context"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Secp256k1PKCS8 is a random secp256k1 private key as PKCS#8 DER without
// its public point (the product derives it; crypto/ecdsa has no
// secp256k1).
func Secp256k1PKCS8(t testing.TB) []byte {
	t.Helper()
	d := Random(32)
	d[0] &= 0x7f // below the group order
	d[31] |= 1   // not zero
	inner, err := asn1.Marshal(struct {
		V int
		D []byte
	}{1, d})
	if err != nil {
		t.Fatal(err)
	}
	params, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 132, 0, 10})
	der, err := asn1.Marshal(struct {
		V    int
		Algo pkix.AlgorithmIdentifier
		Key  []byte
	}{0, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}, Parameters: asn1.RawValue{FullBytes: params}}, inner})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ImportInto binds material to a key through the API (wrapped with the
// product's wrapping package, unwrapped by the KMS emulator on its own),
// with no expiry.
func ImportInto(t testing.TB, c *kms.Client, arn string, spec types.KeySpec, m []byte) {
	t.Helper()
	ctx := context.Background()
	alg, ws := wrapping.Defaults(spec)
	p, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wrapping.ParsePublicKey(p.PublicKey, ws)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := wrapping.Wrap(pub, alg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: enc,
		ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}); err != nil {
		t.Fatal(err)
	}
}

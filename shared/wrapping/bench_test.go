package wrapping_test

import (
	"crypto/rand"
	"testing"

	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// BenchmarkWrap measures Wrap for every combination KMS accepts, named
// ALGORITHM/WRAPPING_KEY_SPEC/KEY_SPEC, e.g.
// RSAES_OAEP_SHA_256/RSA_4096/SYMMETRIC_DEFAULT. Run a subset with
// -bench 'Wrap/RSAES_OAEP_SHA_256/RSA_4096/'.
func BenchmarkWrap(b *testing.B) {
	for _, alg := range algorithms {
		for _, spec := range wrappingSpecs {
			for _, ks := range materialSpecs {
				if !kmsAccepts(ks, alg, spec) {
					continue
				}
				b.Run(string(alg)+"/"+string(spec)+"/"+string(ks), func(b *testing.B) {
					pub := parsePub(b, spec)
					m := getMaterial(b, ks)
					b.ReportAllocs()
					b.SetBytes(int64(len(m)))
					for b.Loop() {
						if _, err := wrapping.Wrap(pub, alg, m, rand.Reader); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkCheck measures the pre-flight check (no cryptography).
func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := wrapping.Check("ECC_NIST_P384", "RSAES_OAEP_SHA_256", "RSA_4096", 185, false); err != nil {
			b.Fatal(err)
		}
	}
}

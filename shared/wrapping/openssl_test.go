package wrapping_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

var algorithms = []types.AlgorithmSpec{
	types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1,
	types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1,
}

// kmsAccepts is the KMS developer guide's "Select a wrapping algorithm"
// table, written out independently of the product's Check:
//
//	Symmetric encryption key: RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1
//	HMAC key:                 RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1
//	RSA private key:          RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1
//	ECC private key:          all four, but not RSAES_OAEP_SHA_* with an
//	                          RSA_2048 wrapping key for ECC_NIST_P521
//
// with wrapping key specs RSA_2048, RSA_3072, RSA_4096 for all of them.
func kmsAccepts(keySpec types.KeySpec, alg types.AlgorithmSpec, spec types.WrappingKeySpec) bool {
	oaep := alg == types.AlgorithmSpecRsaesOaepSha256 || alg == types.AlgorithmSpecRsaesOaepSha1
	switch {
	case keySpec == types.KeySpecSymmetricDefault, strings.HasPrefix(string(keySpec), "HMAC_"):
		return oaep
	case strings.HasPrefix(string(keySpec), "RSA_"):
		return !oaep
	case strings.HasPrefix(string(keySpec), "ECC_"):
		return !(oaep && keySpec == types.KeySpecEccNistP521 && spec == types.WrappingKeySpecRsa2048)
	}
	return false
}

func hashName(alg types.AlgorithmSpec) string {
	if strings.HasSuffix(string(alg), "SHA_1") {
		return "sha1"
	}
	return "sha256"
}

// unwrapOpenSSL undoes a wrap with the openssl command line, as KMS would
// with the wrapping private key.
func unwrapOpenSSL(t *testing.T, wk *wrappingKey, alg types.AlgorithmSpec, ct []byte) []byte {
	t.Helper()
	md := hashName(alg)
	rsaDecrypt := func(in []byte) []byte {
		return openssl(t, in, "pkeyutl", "-decrypt", "-inkey", wk.pemPath,
			"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md)
	}
	switch alg {
	case types.AlgorithmSpecRsaesOaepSha256, types.AlgorithmSpecRsaesOaepSha1:
		return rsaDecrypt(ct)
	case types.AlgorithmSpecRsaAesKeyWrapSha256, types.AlgorithmSpecRsaAesKeyWrapSha1:
		k := wk.priv.Size()
		if len(ct) <= k {
			t.Fatalf("RSA_AES output is %d bytes, no room for KWP after the %d-byte RSA ciphertext", len(ct), k)
		}
		aesKey := rsaDecrypt(ct[:k])
		if len(aesKey) != 32 {
			t.Fatalf("the RSA part holds %d bytes, want a 32-byte AES-256 key", len(aesKey))
		}
		return openssl(t, ct[k:], "enc", "-d", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6")
	}
	t.Fatalf("no unwrap for %s", alg)
	return nil
}

// TestWrapUnwrapsWithOpenSSL proves every combination KMS accepts: real
// material, the product's Check, ParsePublicKey and Wrap, and OpenSSL
// unwrapping to the same bytes.
func TestWrapUnwrapsWithOpenSSL(t *testing.T) {
	opensslPath(t)
	warmUp(t)
	n := 0
	for _, alg := range algorithms {
		for _, spec := range wrappingSpecs {
			for _, ks := range materialSpecs {
				if !kmsAccepts(ks, alg, spec) {
					continue
				}
				n++
				t.Run(string(alg)+"/"+string(spec)+"/"+string(ks), func(t *testing.T) {
					t.Parallel()
					wk := getWrappingKey(t, spec)
					m := getMaterial(t, ks)
					if err := wrapping.Check(ks, alg, spec, len(m), false); err != nil {
						t.Fatalf("Check refuses a combination KMS accepts: %v", err)
					}
					pub, err := wrapping.ParsePublicKey(wk.pubDER, spec)
					if err != nil {
						t.Fatal(err)
					}
					ct, err := wrapping.Wrap(pub, alg, m, rand.Reader)
					if err != nil {
						t.Fatal(err)
					}
					if bytes.Contains(ct, m) {
						t.Fatal("plaintext material appears in the wrapped output")
					}
					got := unwrapOpenSSL(t, wk, alg, ct)
					if !bytes.Equal(got, m) {
						t.Fatalf("OpenSSL unwrapped %d bytes that differ from the %d bytes of material", len(got), len(m))
					}
				})
			}
		}
	}
	if n != 94 {
		t.Fatalf("%d accepted combinations, want 94 (the guide's table over 4 algorithms x 3 specs x 12 key specs)", n)
	}
}

// TestRejectedCombinations: every combination KMS refuses is refused by
// Check with an error that wraps ErrUnsupported and names what to use.
func TestRejectedCombinations(t *testing.T) {
	n := 0
	for _, alg := range algorithms {
		for _, spec := range wrappingSpecs {
			for _, ks := range materialSpecs {
				if kmsAccepts(ks, alg, spec) {
					continue
				}
				n++
				// A plausible material length (the check must not depend
				// on it being too long).
				length := map[bool]int{true: 32, false: 200}[ks == types.KeySpecSymmetricDefault || strings.HasPrefix(string(ks), "HMAC_")]
				err := wrapping.Check(ks, alg, spec, length, true)
				if err == nil {
					t.Errorf("%s/%s/%s: Check accepts a combination KMS refuses", alg, spec, ks)
					continue
				}
				if !errors.Is(err, wrapping.ErrUnsupported) {
					t.Errorf("%s/%s/%s: error does not wrap ErrUnsupported: %v", alg, spec, ks, err)
				}
				msg := err.Error()
				if !strings.Contains(msg, "wrappingAlgorithm") || !strings.Contains(msg, string(alg)) || !strings.Contains(msg, "allowed") {
					t.Errorf("%s/%s/%s: error does not name the field, the value and what is allowed: %v", alg, spec, ks, err)
				}
				switch {
				case ks == types.KeySpecEccNistP521:
					if !strings.Contains(msg, "wrappingKeySpec RSA_2048") || !strings.Contains(msg, "RSA_3072") {
						t.Errorf("P521: error does not name the wrapping key spec rule: %v", err)
					}
				case strings.HasPrefix(string(ks), "RSA_"):
					if !strings.Contains(msg, "RSA_AES_KEY_WRAP_SHA_256") {
						t.Errorf("RSA material: error does not name RSA_AES_KEY_WRAP_SHA_256: %v", err)
					}
				default:
					if !strings.Contains(msg, "RSAES_OAEP_SHA_256") {
						t.Errorf("%s: error does not name RSAES_OAEP_SHA_256: %v", ks, err)
					}
				}
			}
		}
	}
	if n != 144-94 {
		t.Fatalf("%d refused combinations, want 50", n)
	}
}

// TestCheckOtherRules covers what the matrix does not: specs, SM2,
// unsupported key specs, lengths, the legacy algorithm.
func TestCheckOtherRules(t *testing.T) {
	cases := []struct {
		name   string
		ks     types.KeySpec
		alg    types.AlgorithmSpec
		spec   types.WrappingKeySpec
		n      int
		legacy bool
		want   string // "" = accepted
	}{
		{"SM2 wrapping key spec", types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecSm2, 32, false, "wrappingKeySpec SM2 is not supported (China Regions only)"},
		{"SM2PKE", types.KeySpecEccNistP256, types.AlgorithmSpecSm2pke, types.WrappingKeySpecRsa4096, 138, false, "SM2PKE is not supported (China Regions only)"},
		{"SM2 key spec", types.KeySpecSm2, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096, 138, false, "China Regions"},
		{"ML-DSA key spec", types.KeySpecMlDsa44, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096, 100, false, "does not support importing"},
		{"unknown key spec", types.KeySpec("X"), types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096, 32, false, "allowed"},
		{"unknown wrapping key spec", types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpec("RSA_1024"), 32, false, "wrappingKeySpec \"RSA_1024\"; allowed: RSA_2048, RSA_3072, RSA_4096"},
		{"unknown algorithm", types.KeySpecSymmetricDefault, types.AlgorithmSpec("AES_GCM"), types.WrappingKeySpecRsa4096, 32, false, "wrappingAlgorithm \"AES_GCM\" is not a KMS wrapping algorithm; allowed for SYMMETRIC_DEFAULT: RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1"},
		{"empty material", types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096, 0, false, "empty"},
		// k - 2*hLen - 2: RSA_2048 SHA-256: 256-64-2 = 190; SHA-1: 256-40-2 = 214.
		{"OAEP-256 RSA_2048 190 bytes", types.KeySpecEccNistP384, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048, 190, false, ""},
		{"OAEP-256 RSA_2048 191 bytes", types.KeySpecEccNistP384, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048, 191, false, "encrypts at most 190 bytes"},
		{"OAEP-1 RSA_2048 214 bytes", types.KeySpecEccNistP384, types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048, 214, false, ""},
		{"OAEP-1 RSA_2048 215 bytes", types.KeySpecEccNistP384, types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048, 215, false, "encrypts at most 214 bytes"},
		{"OAEP-256 RSA_3072 318 bytes", types.KeySpecEccNistP521, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa3072, 318, false, ""},
		{"OAEP-256 RSA_3072 319 bytes", types.KeySpecEccNistP521, types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa3072, 319, false, "encrypts at most 318 bytes"},
		{"P521 RSA_2048 short anyway", types.KeySpecEccNistP521, types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048, 100, false, "wrappingKeySpec RSA_2048 cannot be used"},
		{"RSA_AES too short for KWP", types.KeySpecEccNistP256, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096, 15, false, "16 to 8192"},
		{"legacy without opt-in", types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa4096, 32, false, "use RSAES_OAEP_SHA_256"},
		{"legacy with opt-in", types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa2048, 32, true, ""},
		{"legacy with opt-in for HMAC", types.KeySpecHmac256, types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa4096, 32, true, "SYMMETRIC_DEFAULT material only"},
		{"legacy with opt-in for ECC", types.KeySpecEccNistP256, types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa4096, 138, true, "SYMMETRIC_DEFAULT material only"},
	}
	for _, c := range cases {
		err := wrapping.Check(c.ks, c.alg, c.spec, c.n, c.legacy)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, wrapping.ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrUnsupported saying %q", c.name, err, c.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	for _, ks := range materialSpecs {
		alg, spec := wrapping.Defaults(ks)
		if spec != types.WrappingKeySpecRsa4096 {
			t.Errorf("%s: default spec %s", ks, spec)
		}
		want := types.AlgorithmSpecRsaAesKeyWrapSha256
		if ks == types.KeySpecSymmetricDefault || strings.HasPrefix(string(ks), "HMAC_") {
			want = types.AlgorithmSpecRsaesOaepSha256
		}
		if alg != want {
			t.Errorf("%s: default algorithm %s, want %s", ks, alg, want)
		}
		// The defaults are always accepted, for real material.
		if err := wrapping.Check(ks, alg, spec, len(getMaterial(t, ks)), false); err != nil {
			t.Errorf("%s: defaults refused: %v", ks, err)
		}
	}
}

// TestLegacyPKCS1 covers the RSAES_PKCS1_V1_5 opt-in, unwrapped by OpenSSL.
// (OpenSSL 3.2+ answers bad PKCS#1 v1.5 padding with implicit rejection;
// that only matters for invalid ciphertexts, so plain pkcs1 mode is used.)
func TestLegacyPKCS1(t *testing.T) {
	opensslPath(t)
	m := getMaterial(t, types.KeySpecSymmetricDefault)
	for _, spec := range wrappingSpecs {
		t.Run(string(spec), func(t *testing.T) {
			t.Parallel()
			wk := getWrappingKey(t, spec)
			pub, err := wrapping.ParsePublicKey(wk.pubDER, spec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = wrapping.Wrap(pub, types.AlgorithmSpecRsaesPkcs1V15, m, nil)
			if err == nil || !errors.Is(err, wrapping.ErrUnsupported) || !strings.Contains(err.Error(), "RSAES_OAEP_SHA_256") || !strings.Contains(err.Error(), "2023-10-10") {
				t.Fatalf("Wrap without opt-in: %v", err)
			}
			if err := wrapping.Check(types.KeySpecSymmetricDefault, types.AlgorithmSpecRsaesPkcs1V15, spec, len(m), true); err != nil {
				t.Fatal(err)
			}
			ct, err := wrapping.WrapWithOptions(pub, types.AlgorithmSpecRsaesPkcs1V15, m, nil, wrapping.Options{AllowLegacyPKCS1: true})
			if err != nil {
				t.Fatal(err)
			}
			got := openssl(t, ct, "pkeyutl", "-decrypt", "-inkey", wk.pemPath, "-pkeyopt", "rsa_padding_mode:pkcs1")
			if !bytes.Equal(got, m) {
				t.Fatal("OpenSSL unwrapped other bytes")
			}
			if _, err := wrapping.WrapWithOptions(pub, types.AlgorithmSpecRsaesPkcs1V15, getMaterial(t, types.KeySpecHmac256), nil, wrapping.Options{AllowLegacyPKCS1: true}); err == nil {
				t.Fatal("legacy wrap of 128-byte HMAC material accepted")
			}
		})
	}
}

func TestWrapErrors(t *testing.T) {
	pub := parsePub(t, types.WrappingKeySpecRsa2048)
	m := getMaterial(t, types.KeySpecEccNistP521)
	for _, c := range []struct {
		name string
		alg  types.AlgorithmSpec
		mat  []byte
		want string
	}{
		{"SM2PKE", types.AlgorithmSpecSm2pke, m, "China Regions only"},
		{"unknown", types.AlgorithmSpec("NOPE"), m, "allowed"},
		{"OAEP too long", types.AlgorithmSpecRsaesOaepSha256, m, "at most 190 bytes"},
		{"empty", types.AlgorithmSpecRsaesOaepSha256, nil, "empty"},
		{"KWP too short", types.AlgorithmSpecRsaAesKeyWrapSha256, make([]byte, 8), "16 to 8192"},
	} {
		_, err := wrapping.Wrap(pub, c.alg, c.mat, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
		if err != nil && len(c.mat) >= 8 && strings.Contains(err.Error(), hex.EncodeToString(c.mat[:8])) {
			t.Errorf("%s: error leaks material", c.name)
		}
	}
	if _, err := wrapping.Wrap(nil, types.AlgorithmSpecRsaesOaepSha256, m, nil); err == nil {
		t.Error("nil key accepted")
	}
	// A failing random source is reported, not ignored.
	if _, err := wrapping.Wrap(pub, types.AlgorithmSpecRsaAesKeyWrapSha256, m, bytes.NewReader(nil)); err == nil {
		t.Error("RSA_AES with an empty random source succeeded")
	}
}

// TestRSAAESFreshKey: each wrap uses a new AES key (and OAEP randomness):
// two wraps of the same material differ in both parts.
func TestRSAAESFreshKey(t *testing.T) {
	pub := parsePub(t, types.WrappingKeySpecRsa3072)
	m := getMaterial(t, types.KeySpecRsa2048)
	a, err := wrapping.Wrap(pub, types.AlgorithmSpecRsaAesKeyWrapSha256, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := wrapping.Wrap(pub, types.AlgorithmSpecRsaAesKeyWrapSha256, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := pub.Size()
	// KWP output: material padded to a multiple of 8, plus 8.
	if want := k + (len(m)+7)/8*8 + 8; len(a) != want {
		t.Fatalf("output is %d bytes, want %d", len(a), want)
	}
	if bytes.Equal(a[:k], b[:k]) || bytes.Equal(a[k:], b[k:]) {
		t.Fatal("two wraps share a part: the AES key is not fresh")
	}
}

func TestParsePublicKey(t *testing.T) {
	wk := getWrappingKey(t, types.WrappingKeySpecRsa2048)
	pemKey := openssl(t, wk.pubDER, "pkey", "-pubin", "-inform", "DER", "-outform", "PEM")
	rsaPEM := openssl(t, wk.pubDER, "rsa", "-pubin", "-inform", "DER", "-RSAPublicKey_out")
	b64 := []byte(encodeB64(wk.pubDER) + "\n")
	for name, in := range map[string][]byte{"DER": wk.pubDER, "PEM": pemKey, "RSA PUBLIC KEY PEM": rsaPEM, "base64": b64} {
		pub, err := wrapping.ParsePublicKey(in, types.WrappingKeySpecRsa2048)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !pub.Equal(&wk.priv.PublicKey) {
			t.Fatalf("%s: another key", name)
		}
		pub2, spec, err := wrapping.ParseAnyPublicKey(in)
		if err != nil || spec != types.WrappingKeySpecRsa2048 || !pub2.Equal(pub) {
			t.Fatalf("%s: ParseAnyPublicKey: %v %v", name, spec, err)
		}
	}
	if _, err := wrapping.ParsePublicKey(wk.pubDER, types.WrappingKeySpecRsa4096); err == nil || !errors.Is(err, wrapping.ErrUnsupported) || !strings.Contains(err.Error(), "2048 bits") {
		t.Fatalf("size mismatch: %v", err)
	}
	if _, err := wrapping.ParsePublicKey(wk.pubDER, types.WrappingKeySpecSm2); err == nil || !strings.Contains(err.Error(), "China Regions only") {
		t.Fatalf("SM2: %v", err)
	}
	ecPub := openssl(t, nil, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
	ecPubDER := openssl(t, ecPub, "pkey", "-pubout", "-outform", "DER")
	if _, err := wrapping.ParsePublicKey(ecPubDER, types.WrappingKeySpecRsa2048); err == nil || !strings.Contains(err.Error(), "want RSA") {
		t.Fatalf("EC key: %v", err)
	}
	for name, in := range map[string][]byte{"garbage": []byte("hello world"), "empty": nil, "truncated": wk.pubDER[:40], "private PEM": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")} {
		if _, err := wrapping.ParsePublicKey(in, types.WrappingKeySpecRsa2048); err == nil {
			t.Fatalf("%s accepted", name)
		}
	}
	small := openssl(t, nil, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024")
	smallDER := openssl(t, small, "pkey", "-pubout", "-outform", "DER")
	if _, _, err := wrapping.ParseAnyPublicKey(smallDER); err == nil || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("1024-bit key: %v", err)
	}
}

func TestAllowed(t *testing.T) {
	for _, ks := range materialSpecs {
		for _, alg := range wrapping.Allowed(ks) {
			if !kmsAccepts(ks, alg, types.WrappingKeySpecRsa4096) {
				t.Errorf("Allowed(%s) lists %s", ks, alg)
			}
		}
	}
	if len(wrapping.Allowed(types.KeySpecSm2)) != 0 {
		t.Error("SM2 has allowed algorithms")
	}
}

package keymaterial

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr(s string) *string { return &s }

// TestRawLengths covers SYMMETRIC_DEFAULT and HMAC_* lengths, as the KMS
// guide's "Requirements for imported key material" gives them (224-1024,
// 256-1024, 384-1024, 512-1024 bits for HMAC; 256 bits for symmetric).
func TestRawLengths(t *testing.T) {
	ranges := []struct {
		spec     types.KeySpec
		min, max int
	}{
		{types.KeySpecSymmetricDefault, 32, 32},
		{types.KeySpecHmac224, 28, 128},
		{types.KeySpecHmac256, 32, 128},
		{types.KeySpecHmac384, 48, 128},
		{types.KeySpecHmac512, 64, 128},
	}
	for _, r := range ranges {
		for _, n := range []int{0, 1, r.min - 1, r.min, (r.min + r.max) / 2, r.max, r.max + 1, 1024} {
			key := randBytes(t, n)
			ok := n >= r.min && n <= r.max
			for _, form := range []string{"SecretBinary", "SecretString"} {
				var got []byte
				var err error
				if form == "SecretBinary" {
					got, err = FromSecret(r.spec, key, nil)
				} else {
					got, err = FromSecret(r.spec, nil, ptr(b64(key)))
				}
				if n == 0 && form == "SecretBinary" {
					// An empty SecretBinary counts as absent.
					if err == nil || !errors.Is(err, ErrInvalid) {
						t.Fatalf("%s empty %s: err = %v", r.spec, form, err)
					}
					continue
				}
				if ok != (err == nil) {
					t.Fatalf("%s %d bytes via %s: err = %v, want ok=%v", r.spec, n, form, err, ok)
				}
				if err != nil {
					if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), string(r.spec)) || !(strings.Contains(err.Error(), "bytes") || strings.Contains(err.Error(), "empty")) {
						t.Fatalf("%s %d bytes: error does not wrap ErrInvalid or name spec and sizes: %v", r.spec, n, err)
					}
					assertNoLeak(t, err, key, []byte(b64(key)))
					continue
				}
				if !bytes.Equal(got, key) {
					t.Fatalf("%s %d bytes via %s: material changed", r.spec, n, form)
				}
			}
		}
	}
}

// asymCase is one valid key in one input shape, with the canonical PKCS#8
// expected back.
type asymCase struct {
	name   string
	spec   types.KeySpec
	binary []byte  // SecretBinary
	str    *string // SecretString
	want   []byte  // canonical PKCS#8
	spki   []byte  // expected PublicKeyDER
}

func asymmetricCases(t *testing.T) []asymCase {
	t.Helper()
	var cases []asymCase
	for _, rs := range []struct {
		spec types.KeySpec
		bits int
	}{{types.KeySpecRsa2048, 2048}, {types.KeySpecRsa3072, 3072}, {types.KeySpecRsa4096, 4096}} {
		k := rsaKey(t, rs.bits)
		p8, _ := x509.MarshalPKCS8PrivateKey(k)
		p1 := x509.MarshalPKCS1PrivateKey(k)
		spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		cases = append(cases,
			asymCase{"PKCS8 DER binary", rs.spec, p8, nil, p8, spki},
			asymCase{"PKCS1 DER binary", rs.spec, p1, nil, p8, spki},
			asymCase{"PKCS8 base64", rs.spec, nil, ptr(b64(p8)), p8, spki},
			asymCase{"PKCS1 base64", rs.spec, nil, ptr(b64(p1)), p8, spki},
			asymCase{"PEM PRIVATE KEY", rs.spec, nil, ptr(pemOf("PRIVATE KEY", p8)), p8, spki},
			asymCase{"PEM RSA PRIVATE KEY", rs.spec, nil, ptr(pemOf("RSA PRIVATE KEY", p1)), p8, spki},
			asymCase{"PEM as SecretBinary", rs.spec, []byte(pemOf("RSA PRIVATE KEY", p1)), nil, p8, spki},
		)
	}
	for _, es := range []struct {
		spec  types.KeySpec
		curve elliptic.Curve
	}{{types.KeySpecEccNistP256, elliptic.P256()}, {types.KeySpecEccNistP384, elliptic.P384()}, {types.KeySpecEccNistP521, elliptic.P521()}} {
		k := ecKey(t, es.curve)
		p8, _ := x509.MarshalPKCS8PrivateKey(k)
		sec1, _ := x509.MarshalECPrivateKey(k)
		spki, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		// SEC1 without the curve: the key spec supplies it.
		var bare ecPrivateKey
		if _, err := asn1.Unmarshal(sec1, &bare); err != nil {
			t.Fatal(err)
		}
		bare.Parameters = asn1.RawValue{}
		bareDER, err := asn1.Marshal(bare)
		if err != nil {
			t.Fatal(err)
		}
		// OpenSSL's own PKCS#8 (independent encoder).
		osslP8 := openssl(t, sec1, "pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER")
		cases = append(cases,
			asymCase{"PKCS8 DER binary", es.spec, p8, nil, p8, spki},
			asymCase{"OpenSSL PKCS8 DER binary", es.spec, osslP8, nil, p8, spki},
			asymCase{"SEC1 DER binary", es.spec, sec1, nil, p8, spki},
			asymCase{"SEC1 DER without curve", es.spec, bareDER, nil, p8, spki},
			asymCase{"PKCS8 base64", es.spec, nil, ptr(b64(p8)), p8, spki},
			asymCase{"SEC1 base64", es.spec, nil, ptr(b64(sec1)), p8, spki},
			asymCase{"PEM PRIVATE KEY", es.spec, nil, ptr(pemOf("PRIVATE KEY", p8)), p8, spki},
			asymCase{"PEM EC PRIVATE KEY", es.spec, nil, ptr(pemOf("EC PRIVATE KEY", sec1)), p8, spki},
			asymCase{"PEM as SecretBinary", es.spec, []byte(pemOf("EC PRIVATE KEY", sec1)), nil, p8, spki},
		)
	}
	k1 := secp256k1Key(t)
	// The canonical PKCS#8 of an OpenSSL secp256k1 key is what OpenSSL
	// writes itself (version 0, curve in the AlgorithmIdentifier, SEC1
	// inside without parameters, with the public key).
	cases = append(cases,
		asymCase{"PKCS8 DER binary", types.KeySpecEccSecgP256k1, k1.pkcs8, nil, k1.pkcs8, k1.spki},
		asymCase{"SEC1 DER binary", types.KeySpecEccSecgP256k1, k1.sec1, nil, k1.pkcs8, k1.spki},
		asymCase{"PKCS8 base64", types.KeySpecEccSecgP256k1, nil, ptr(b64(k1.pkcs8)), k1.pkcs8, k1.spki},
		asymCase{"SEC1 base64", types.KeySpecEccSecgP256k1, nil, ptr(b64(k1.sec1)), k1.pkcs8, k1.spki},
		asymCase{"PEM PRIVATE KEY", types.KeySpecEccSecgP256k1, nil, ptr(pemOf("PRIVATE KEY", k1.pkcs8)), k1.pkcs8, k1.spki},
		asymCase{"PEM EC PARAMETERS + EC PRIVATE KEY", types.KeySpecEccSecgP256k1, nil, ptr(string(k1.ecparamPEM)), k1.pkcs8, k1.spki},
	)
	return cases
}

func TestAsymmetricShapes(t *testing.T) {
	for _, c := range asymmetricCases(t) {
		t.Run(string(c.spec)+"/"+c.name, func(t *testing.T) {
			got, err := FromSecret(c.spec, c.binary, c.str)
			if err != nil {
				t.Fatalf("FromSecret: %v", err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("not the canonical PKCS#8 (%d bytes, want %d)", len(got), len(c.want))
			}
			// Canonical output is a fixed point.
			again, err := FromSecret(c.spec, got, nil)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("canonical PKCS#8 does not read back to itself: %v", err)
			}
			spki, err := PublicKeyDER(c.spec, got)
			if err != nil {
				t.Fatalf("PublicKeyDER: %v", err)
			}
			if !bytes.Equal(spki, c.spki) {
				t.Fatalf("PublicKeyDER differs from the independent encoding")
			}
			// The same input through FromFile (raw DER or PEM/base64 text).
			var file []byte
			if c.binary != nil {
				file = c.binary
			} else {
				file = []byte(*c.str + "\n")
			}
			fromFile, err := FromFile(c.spec, file)
			if err != nil || !bytes.Equal(fromFile, c.want) {
				t.Fatalf("FromFile: %v", err)
			}
		})
	}
}

// TestOpenSSLReadsOutput checks that OpenSSL accepts what FromSecret
// produces as a PKCS#8 private key whose public key is the expected one.
func TestOpenSSLReadsOutput(t *testing.T) {
	seen := map[types.KeySpec]bool{}
	for _, c := range asymmetricCases(t) {
		if seen[c.spec] {
			continue
		}
		seen[c.spec] = true
		got, err := FromSecret(c.spec, c.binary, c.str)
		if err != nil {
			t.Fatal(err)
		}
		pub := openssl(t, got, "pkey", "-inform", "DER", "-pubout", "-outform", "DER")
		if !bytes.Equal(pub, c.spki) {
			t.Fatalf("%s: OpenSSL derives another public key from our PKCS#8", c.spec)
		}
	}
}

func TestSecp256k1WithoutPublicKey(t *testing.T) {
	k1 := secp256k1Key(t)
	var sec1 ecPrivateKey
	if _, err := asn1.Unmarshal(k1.sec1, &sec1); err != nil {
		t.Fatal(err)
	}
	sec1.PublicKey = asn1.BitString{}
	bare, err := asn1.Marshal(sec1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromSecret(types.KeySpecEccSecgP256k1, bare, nil)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := PublicKeyDER(types.KeySpecEccSecgP256k1, got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(spki, k1.spki) {
		t.Fatal("computed secp256k1 public key differs from OpenSSL's")
	}
	// OpenSSL reads the PKCS#8 without the public point too.
	openssl(t, got, "pkey", "-inform", "DER", "-noout")
}

// mismatch is an input that must be refused.
type mismatch struct {
	name   string
	spec   types.KeySpec
	binary []byte
	str    *string
	want   string // substring of the error
}

func mismatchCases(t *testing.T) []mismatch {
	t.Helper()
	r2048, r3072 := rsaKey(t, 2048), rsaKey(t, 3072)
	p8r2048, _ := x509.MarshalPKCS8PrivateKey(r2048)
	p8r3072, _ := x509.MarshalPKCS8PrivateKey(r3072)
	p256, p384 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P384())
	p8p256, _ := x509.MarshalPKCS8PrivateKey(p256)
	p8p384, _ := x509.MarshalPKCS8PrivateKey(p384)
	sec1p256, _ := x509.MarshalECPrivateKey(p256)
	k1 := secp256k1Key(t)
	p224 := ecKey(t, elliptic.P224())
	p8p224, _ := x509.MarshalPKCS8PrivateKey(p224)
	spki, _ := x509.MarshalPKIXPublicKey(&p256.PublicKey)

	// P-256 key whose embedded public key belongs to another key.
	other := ecKey(t, elliptic.P256())
	var sec1 ecPrivateKey
	if _, err := asn1.Unmarshal(sec1p256, &sec1); err != nil {
		t.Fatal(err)
	}
	otherPub, _ := other.PublicKey.Bytes()
	sec1.PublicKey = asn1.BitString{Bytes: otherPub, BitLength: 8 * len(otherPub)}
	wrongPub, _ := asn1.Marshal(sec1)

	// secp256k1 scalars out of range: 0 and n.
	k1Scalar := func(d []byte) []byte {
		b, err := marshalK1PKCS8(d, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	zero := make([]byte, 32)
	n := k1N.FillBytes(make([]byte, 32))

	// secp256k1 key carrying a point that is not on the curve.
	var k1sec1 ecPrivateKey
	if _, err := asn1.Unmarshal(k1.sec1, &k1sec1); err != nil {
		t.Fatal(err)
	}
	badPoint := append([]byte(nil), k1sec1.PublicKey.Bytes...)
	badPoint[len(badPoint)-1] ^= 1
	k1sec1.PublicKey = asn1.BitString{Bytes: badPoint, BitLength: 8 * len(badPoint)}
	k1BadPoint, _ := asn1.Marshal(k1sec1)

	explicitSEC1 := openssl(t, nil, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-param_enc", "explicit", "-outform", "DER")
	explicitP8 := openssl(t, explicitSEC1, "pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER")
	multiPrime := openssl(t, nil, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_primes:3", "-outform", "DER")
	ed25519 := openssl(t, nil, "genpkey", "-algorithm", "ED25519", "-outform", "DER")
	encrypted := openssl(t, p8p256, "pkcs8", "-topk8", "-inform", "DER", "-v2", "aes-256-cbc", "-passout", "pass:x")

	truncated := p8p256[:len(p8p256)-5]
	trailing := append(append([]byte(nil), p8p256...), 0, 0)

	return []mismatch{
		{"RSA_2048 given RSA 3072", types.KeySpecRsa2048, p8r3072, nil, "2048-bit modulus"},
		{"RSA_3072 given RSA 2048", types.KeySpecRsa3072, p8r2048, nil, "3072-bit modulus"},
		{"RSA_4096 given RSA 2048 PEM", types.KeySpecRsa4096, nil, ptr(pemOf("PRIVATE KEY", p8r2048)), "4096-bit modulus"},
		{"RSA_2048 given EC", types.KeySpecRsa2048, p8p256, nil, "must be an RSA private key"},
		{"RSA_2048 given bare SEC1", types.KeySpecRsa2048, sec1p256, nil, "P-256"},
		{"ECC P256 given RSA", types.KeySpecEccNistP256, p8r2048, nil, "RSA private key"},
		{"ECC P256 given P384", types.KeySpecEccNistP256, p8p384, nil, "P-384"},
		{"ECC P384 given P256 SEC1", types.KeySpecEccNistP384, sec1p256, nil, "P-256"},
		{"ECC P521 given P256 PEM", types.KeySpecEccNistP521, nil, ptr(pemOf("EC PRIVATE KEY", sec1p256)), "P-256"},
		{"secp256k1 given P256", types.KeySpecEccSecgP256k1, p8p256, nil, "P-256"},
		{"P256 given secp256k1", types.KeySpecEccNistP256, k1.pkcs8, nil, "secp256k1"},
		{"P256 given P224", types.KeySpecEccNistP256, p8p224, nil, "P-224"},
		{"P256 with foreign public key", types.KeySpecEccNistP256, wrongPub, nil, "does not belong"},
		{"secp256k1 scalar 0", types.KeySpecEccSecgP256k1, k1Scalar(zero), nil, "outside"},
		{"secp256k1 scalar n", types.KeySpecEccSecgP256k1, k1Scalar(n), nil, "outside"},
		{"secp256k1 point off curve", types.KeySpecEccSecgP256k1, k1BadPoint, nil, "not a valid secp256k1 point"},
		{"explicit curve SEC1", types.KeySpecEccNistP256, explicitSEC1, nil, "explicit"},
		{"explicit curve PKCS8", types.KeySpecEccNistP256, explicitP8, nil, "named curve"},
		{"multi-prime RSA", types.KeySpecRsa2048, multiPrime, nil, "RSA"},
		{"Ed25519", types.KeySpecEccNistP256, ed25519, nil, "Ed25519"},
		{"encrypted PKCS8 PEM", types.KeySpecEccNistP256, nil, ptr(string(encrypted)), "encrypted"},
		{"public key PEM", types.KeySpecEccNistP256, nil, ptr(pemOf("PUBLIC KEY", spki)), "public key"},
		{"unknown PEM type", types.KeySpecEccNistP256, nil, ptr(pemOf("SECRET STUFF", p8p256)), "unsupported type"},
		{"PEM with trailing block", types.KeySpecEccNistP256, nil, ptr(pemOf("PRIVATE KEY", p8p256) + pemOf("PRIVATE KEY", p8p384)), "data after"},
		{"PEM label mismatch", types.KeySpecEccNistP256, nil, ptr(pemOf("RSA PRIVATE KEY", p8p256)), "not a valid RSA private key"},
		{"truncated DER", types.KeySpecEccNistP256, truncated, nil, "not a DER private key"},
		{"trailing data after DER", types.KeySpecEccNistP256, trailing, nil, "not a DER private key"},
		{"garbage binary", types.KeySpecRsa2048, randBytes(t, 300), nil, "bytes"},
		{"garbage DER-looking", types.KeySpecRsa2048, append([]byte{0x30, 0x82, 0x01, 0x00}, randBytes(t, 256)...), nil, "bytes"},
		{"garbage string", types.KeySpecEccNistP256, nil, ptr("not base64 at all!!"), "neither PEM nor base64"},
		{"PEM for symmetric", types.KeySpecSymmetricDefault, nil, ptr(pemOf("PRIVATE KEY", randBytes(t, 32))), "raw bytes"},
		{"raw bytes for RSA", types.KeySpecRsa2048, randBytes(t, 32), nil, "not a DER private key"},
		{"no secret", types.KeySpecSymmetricDefault, nil, nil, "neither SecretBinary nor SecretString"},
		{"SM2", types.KeySpecSm2, randBytes(t, 32), nil, "China Regions"},
		{"ML-DSA", types.KeySpecMlDsa44, randBytes(t, 32), nil, "does not support"},
		{"unknown spec", types.KeySpec("AES_512"), randBytes(t, 32), nil, "allowed:"},
		{"oversize", types.KeySpecRsa4096, randBytes(t, MaxInputSize+1), nil, "more than any"},
	}
}

func TestMismatches(t *testing.T) {
	for _, c := range mismatchCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromSecret(c.spec, c.binary, c.str)
			if err == nil {
				t.Fatalf("accepted (%d bytes)", len(got))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			if !strings.Contains(err.Error(), string(c.spec)) && c.spec != "" {
				t.Fatalf("error does not name the key spec %s: %v", c.spec, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			secrets := [][]byte{c.binary}
			if c.str != nil {
				secrets = append(secrets, []byte(*c.str))
				if d, err := base64.StdEncoding.DecodeString(*c.str); err == nil {
					secrets = append(secrets, d)
				}
			}
			assertNoLeak(t, err, secrets...)
			// FromFile refuses the same input (raw or text) without leaking.
			file := c.binary
			if c.str != nil {
				file = []byte(*c.str)
			}
			if len(file) > 0 {
				if _, ferr := FromFile(c.spec, file); ferr == nil {
					t.Fatalf("FromFile accepted it")
				} else {
					assertNoLeak(t, ferr, secrets...)
				}
			}
		})
	}
}

func TestFromFileEncodings(t *testing.T) {
	key := randBytes(t, 32)
	hmac := randBytes(t, 64)
	k := ecKey(t, elliptic.P256())
	p8, _ := x509.MarshalPKCS8PrivateKey(k)

	// A 40-character key of base64 letters is valid raw HMAC_224 material
	// (40 bytes) and valid base64 (30 bytes): ambiguous.
	ascii := []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN")

	cases := []struct {
		name string
		spec types.KeySpec
		data []byte
		enc  Encoding
		want []byte
		err  string
	}{
		{"raw symmetric", types.KeySpecSymmetricDefault, key, Auto, key, ""},
		{"base64 symmetric with newline", types.KeySpecSymmetricDefault, []byte(b64(key) + "\n"), Auto, key, ""},
		{"base64 symmetric wrapped lines", types.KeySpecSymmetricDefault, []byte(b64(key)[:20] + "\n" + b64(key)[20:] + "\n"), Auto, key, ""},
		{"base64 symmetric unpadded", types.KeySpecSymmetricDefault, []byte(strings.TrimRight(b64(key), "=")), Auto, key, ""},
		{"base64 HMAC with newline", types.KeySpecHmac256, []byte(b64(hmac) + "\n"), Auto, hmac, ""},
		{"raw HMAC", types.KeySpecHmac512, hmac, Auto, hmac, ""},
		{"PEM EC", types.KeySpecEccNistP256, []byte(pemOf("PRIVATE KEY", p8)), Auto, p8, ""},
		{"DER EC", types.KeySpecEccNistP256, p8, Auto, p8, ""},
		{"base64 DER EC", types.KeySpecEccNistP256, []byte(b64(p8)), Auto, p8, ""},
		{"ambiguous ASCII HMAC", types.KeySpecHmac224, ascii, Auto, nil, "ambiguous"},
		{"ASCII HMAC as raw", types.KeySpecHmac224, ascii, Raw, ascii, ""},
		{"ASCII as base64", types.KeySpecHmac224, ascii, Base64, mustB64(t, string(ascii)), ""},
		{"raw symmetric forced base64", types.KeySpecSymmetricDefault, key, Base64, nil, "not base64"},
		{"base64 forced raw", types.KeySpecSymmetricDefault, []byte(b64(key)), Raw, nil, "exactly 32 bytes"},
		{"DER forced PEM", types.KeySpecEccNistP256, p8, PEM, nil, "no complete PEM block"},
		{"empty", types.KeySpecSymmetricDefault, nil, Auto, nil, "empty"},
		{"wrong length base64", types.KeySpecSymmetricDefault, []byte(b64(key[:31]) + "\n"), Auto, nil, "exactly 32 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromFileAs(c.spec, c.data, c.enc)
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				// Only the ambiguous file is ErrAmbiguous: callers branch on it.
				if got, want := errors.Is(err, ErrAmbiguous), c.err == "ambiguous"; got != want {
					t.Errorf("errors.Is(err, ErrAmbiguous) = %v, want %v (err = %v)", got, want, err)
				}
				assertNoLeak(t, err, c.data, key, hmac, p8)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.want) {
				t.Fatalf("got %d bytes, not the expected material", len(got))
			}
		})
	}
}

func mustB64(t *testing.T, s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEncoding(t *testing.T) {
	for _, e := range []Encoding{Auto, Raw, Base64, PEM} {
		got, err := ParseEncoding(strings.ToUpper(e.String()))
		if err != nil || got != e {
			t.Fatalf("%v: %v %v", e, got, err)
		}
	}
	if _, err := ParseEncoding("hex"); err == nil {
		t.Fatal("hex accepted")
	}
}

func TestIsAsymmetric(t *testing.T) {
	for _, ks := range types.KeySpec("").Values() {
		want := !(ks == types.KeySpecSymmetricDefault || strings.HasPrefix(string(ks), "HMAC_"))
		if got := IsAsymmetric(ks); got != want {
			t.Errorf("IsAsymmetric(%s) = %v", ks, got)
		}
	}
	if IsAsymmetric("NOPE") {
		t.Error("unknown key spec is asymmetric")
	}
}

func TestPublicKeyDERErrors(t *testing.T) {
	k := ecKey(t, elliptic.P256())
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	sec1, _ := x509.MarshalECPrivateKey(k)
	for _, c := range []struct {
		name string
		spec types.KeySpec
		der  []byte
	}{
		{"symmetric", types.KeySpecSymmetricDefault, randBytes(t, 32)},
		{"wrong curve", types.KeySpecEccNistP384, p8},
		{"not PKCS8", types.KeySpecEccNistP256, sec1},
		{"garbage", types.KeySpecEccNistP256, randBytes(t, 100)},
	} {
		_, err := PublicKeyDER(c.spec, c.der)
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		assertNoLeak(t, err, c.der)
	}
}

// TestLeakCheckDetects makes sure the leak check itself catches raw, hex
// and base64 material in a message.
func TestLeakCheckDetects(t *testing.T) {
	secret := randBytes(t, 40)
	for _, msg := range []string{
		"x" + string(secret[3:20]) + "y",
		"key " + strings.ToUpper(hexString(secret[10:30])),
		"key " + hexString(secret[1:9]),
		"key " + base64.StdEncoding.EncodeToString(secret[5:25]),
	} {
		if _, ok := findLeak(msg, secret); !ok {
			t.Fatalf("leak not detected in %q", msg)
		}
	}
	if _, ok := findLeak("invalid key material: HMAC_256 material must be 32 to 128 bytes", secret); ok {
		t.Fatal("false positive")
	}
	// Input that happens to contain vocabulary is not a leak.
	input := []byte("invalid key material: HMAC_512 material must be")
	_, err := FromSecret(types.KeySpecHmac512, input, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	if f, ok := findLeak(err.Error(), input); ok {
		t.Fatalf("message text in the input counted as a leak (%q): %v", f, err)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestZero(t *testing.T) {
	b := []byte{1, 2, 3}
	Zero(b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Fatal("not zeroed")
	}
	Zero(nil)
}

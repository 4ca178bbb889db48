package kmsstandin

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
)

// fixture is a stand-in behind an HTTP server and an unmodified SDK client.
type fixture struct {
	srv  *Server
	http *httptest.Server
	kms  *kms.Client
	now  time.Time
}

// instant turns every modelled delay off, for the tests of other things.
var instant = Options{RotationDelay: Off, StaleReadWindow: Off, ReplicaSyncDelay: Off}

// newFixture: a stand-in whose clock is f.now (moved by the test), with
// every delay off.
func newFixture(t *testing.T) *fixture { return newFixtureWith(t, instant) }

// newFixtureWith: a stand-in with the knobs of o and the clock f.now.
func newFixtureWith(t *testing.T, o Options) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	o.Now, o.WrappingKeyPool = func() time.Time { return f.now }, 2
	f.srv = New(o)
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(f.http.Close)
	f.kms = kms.New(kms.Options{
		Region:           "eu-west-2",
		BaseEndpoint:     aws.String(f.http.URL),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
	})
	return f
}

var ctx = context.Background()

// keyCache keeps generated test private keys: RSA generation is slow.
var keyCache sync.Map

func rsaKey(t *testing.T, bits int, n int) *rsa.PrivateKey {
	t.Helper()
	type id struct{ bits, n int }
	if k, ok := keyCache.Load(id{bits, n}); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	keyCache.Store(id{bits, n}, k)
	return k
}

// materialFor makes PKCS#8 or raw material for a key spec (variant n gives
// a different key of the same spec).
func materialFor(t *testing.T, spec string, n int) []byte {
	t.Helper()
	info := keySpecs[spec]
	switch info.class {
	case "symmetric", "hmac":
		l := 32
		if info.class == "hmac" {
			l = info.hmacMin + 5
		}
		b := make([]byte, l)
		_, _ = rand.Read(b)
		return b
	case "rsa":
		der, err := x509.MarshalPKCS8PrivateKey(rsaKey(t, info.bits, n))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	var c elliptic.Curve
	switch info.curve {
	case "P-256":
		c = elliptic.P256()
	case "P-384":
		c = elliptic.P384()
	case "P-521":
		c = elliptic.P521()
	default:
		d, _ := k1Scalar(nil)
		der, err := k1PKCS8(d)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	k, _ := ecdsa.GenerateKey(c, rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// wrapFor wraps material as a client would, written here from the
// developer guide (not with the product's wrap package).
func wrapFor(t *testing.T, pubDER []byte, alg types.AlgorithmSpec, material []byte) []byte {
	t.Helper()
	p, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		t.Fatal(err)
	}
	pub := p.(*rsa.PublicKey)
	var h hash.Hash = sha256.New()
	if strings.HasSuffix(string(alg), "SHA_1") {
		h = sha1.New()
	}
	if strings.HasPrefix(string(alg), "RSAES_OAEP") {
		out, err := rsa.EncryptOAEP(h, rand.Reader, pub, material, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	aesKey := make([]byte, 32)
	_, _ = rand.Read(aesKey)
	wrapped, err := kwpWrap(aesKey, material)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := rsa.EncryptOAEP(h, rand.Reader, pub, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(enc, wrapped...)
}

func (f *fixture) createKey(t *testing.T, spec, usage string, mr bool) string {
	t.Helper()
	out, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpec(spec), KeyUsage: types.KeyUsageType(usage), MultiRegion: aws.Bool(mr)})
	if err != nil {
		t.Fatalf("CreateKey %s/%s: %v", spec, usage, err)
	}
	if out.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("new EXTERNAL key is %s, want PendingImport", out.KeyMetadata.KeyState)
	}
	return *out.KeyMetadata.Arn
}

func (f *fixture) importMaterial(t *testing.T, arn string, alg types.AlgorithmSpec, spec types.WrappingKeySpec, material []byte, validTo *time.Time, mod func(*kms.ImportKeyMaterialInput)) (*kms.ImportKeyMaterialOutput, error) {
	t.Helper()
	p, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: alg, WrappingKeySpec: spec})
	if err != nil {
		t.Fatalf("GetParametersForImport: %v", err)
	}
	if got := p.ParametersValidTo.Sub(f.now); got != 24*time.Hour {
		t.Errorf("ParametersValidTo is %s after now, want 24h", got)
	}
	in := &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, alg, material)}
	if validTo != nil {
		in.ExpirationModel, in.ValidTo = types.ExpirationModelTypeKeyMaterialExpires, validTo
	} else {
		in.ExpirationModel = types.ExpirationModelTypeKeyMaterialDoesNotExpire
	}
	if mod != nil {
		mod(in)
	}
	return f.kms.ImportKeyMaterial(ctx, in)
}

func hashOf(alg string) crypto.Hash { return signingHash(alg) }

func TestImportAndUseEveryKeyType(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		spec, usage string
		alg         types.AlgorithmSpec
		wspec       types.WrappingKeySpec
	}{
		{"SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096},
		{"SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048},
		{"HMAC_224", "GENERATE_VERIFY_MAC", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048},
		{"HMAC_256", "GENERATE_VERIFY_MAC", types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa3072},
		{"HMAC_384", "GENERATE_VERIFY_MAC", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096},
		{"HMAC_512", "GENERATE_VERIFY_MAC", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096},
		{"RSA_2048", "SIGN_VERIFY", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096},
		{"RSA_2048", "ENCRYPT_DECRYPT", types.AlgorithmSpecRsaAesKeyWrapSha1, types.WrappingKeySpecRsa2048},
		{"RSA_3072", "SIGN_VERIFY", types.AlgorithmSpecRsaAesKeyWrapSha1, types.WrappingKeySpecRsa3072},
		{"ECC_NIST_P256", "SIGN_VERIFY", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048},
		{"ECC_NIST_P384", "SIGN_VERIFY", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa3072},
		{"ECC_NIST_P521", "SIGN_VERIFY", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa3072},
		{"ECC_SECG_P256K1", "SIGN_VERIFY", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048},
	}
	for _, c := range cases {
		t.Run(c.spec+"/"+c.usage+"/"+string(c.alg)+"/"+string(c.wspec), func(t *testing.T) {
			arn := f.createKey(t, c.spec, c.usage, false)
			m := materialFor(t, c.spec, 0)
			validTo := f.now.Add(30 * 24 * time.Hour)
			if _, err := f.importMaterial(t, arn, c.alg, c.wspec, m, &validTo, nil); err != nil {
				t.Fatalf("ImportKeyMaterial: %v", err)
			}
			d, err := f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
			if err != nil {
				t.Fatal(err)
			}
			md := d.KeyMetadata
			if md.KeyState != types.KeyStateEnabled || md.ValidTo == nil || !md.ValidTo.Equal(validTo) || md.ExpirationModel != types.ExpirationModelTypeKeyMaterialExpires || md.Origin != types.OriginTypeExternal {
				t.Fatalf("after import: state %s validTo %v model %s origin %s", md.KeyState, md.ValidTo, md.ExpirationModel, md.Origin)
			}
			// The same material again is a reimport; different material is refused.
			if _, err := f.importMaterial(t, arn, c.alg, c.wspec, m, &validTo, nil); err != nil {
				t.Fatalf("reimport of the same material: %v", err)
			}
			_, err = f.importMaterial(t, arn, c.alg, c.wspec, materialFor(t, c.spec, 1), &validTo, nil)
			var ikm *types.IncorrectKeyMaterialException
			if !errors.As(err, &ikm) {
				t.Fatalf("import of other material: got %v, want *types.IncorrectKeyMaterialException", err)
			}
			use(t, f, arn, c.spec, c.usage, m)
		})
	}
}

// use exercises a key with its material and checks the answers against
// the material held locally.
func use(t *testing.T, f *fixture, arn, spec, usage string, m []byte) {
	t.Helper()
	msg := []byte("a message to authenticate")
	info := keySpecs[spec]
	switch {
	case info.class == "symmetric":
		ec := map[string]string{"purpose": "test"}
		enc, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: msg, EncryptionContext: ec})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := f.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
		if err != nil || !bytes.Equal(dec.Plaintext, msg) || *dec.KeyId != arn {
			t.Fatalf("Decrypt: %v", err)
		}
		_, err = f.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"purpose": "other"}})
		var ic *types.InvalidCiphertextException
		if !errors.As(err, &ic) {
			t.Fatalf("Decrypt with another context: %v, want InvalidCiphertextException", err)
		}
	case info.class == "hmac":
		out, err := f.kms.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &arn, Message: msg, MacAlgorithm: types.MacAlgorithmSpec(info.mac)})
		if err != nil {
			t.Fatal(err)
		}
		h := hmac.New(map[string]func() hash.Hash{"HMAC_SHA_224": sha256.New224, "HMAC_SHA_256": sha256.New, "HMAC_SHA_384": sha512.New384, "HMAC_SHA_512": sha512.New}[info.mac], m)
		h.Write(msg)
		if !bytes.Equal(out.Mac, h.Sum(nil)) {
			t.Fatal("GenerateMac differs from a local HMAC with the material")
		}
		if _, err := f.kms.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &arn, Message: msg, MacAlgorithm: types.MacAlgorithmSpec(info.mac), Mac: out.Mac}); err != nil {
			t.Fatal(err)
		}
		_, err = f.kms.VerifyMac(ctx, &kms.VerifyMacInput{KeyId: &arn, Message: []byte("other"), MacAlgorithm: types.MacAlgorithmSpec(info.mac), Mac: out.Mac})
		var im *types.KMSInvalidMacException
		if !errors.As(err, &im) {
			t.Fatalf("VerifyMac of a wrong MAC: %v", err)
		}
	default:
		pk, err := f.kms.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &arn})
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		if spec == "ECC_SECG_P256K1" {
			p, aerr := parseK1PKCS8(m)
			if aerr != nil {
				t.Fatal(aerr)
			}
			want = p.spki
		} else {
			priv, err := x509.ParsePKCS8PrivateKey(m)
			if err != nil {
				t.Fatal(err)
			}
			want, _ = x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
		}
		if !bytes.Equal(pk.PublicKey, want) {
			t.Fatal("GetPublicKey is not the public half of the imported key")
		}
		if usage == "ENCRYPT_DECRYPT" {
			enc, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: msg, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := f.kms.Decrypt(ctx, &kms.DecryptInput{KeyId: &arn, CiphertextBlob: enc.CiphertextBlob, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
			if err != nil || !bytes.Equal(dec.Plaintext, msg) {
				t.Fatalf("RSA Decrypt: %v", err)
			}
			return
		}
		for _, alg := range info.signing {
			for _, mt := range []types.MessageType{types.MessageTypeRaw, types.MessageTypeDigest} {
				h := hashOf(alg).New()
				h.Write(msg)
				digest := h.Sum(nil)
				in := msg
				if mt == types.MessageTypeDigest {
					in = digest
				}
				sig, err := f.kms.Sign(ctx, &kms.SignInput{KeyId: &arn, Message: in, MessageType: mt, SigningAlgorithm: types.SigningAlgorithmSpec(alg)})
				if err != nil {
					t.Fatalf("Sign %s %s: %v", alg, mt, err)
				}
				if !verifyLocally(t, pk.PublicKey, spec, alg, digest, sig.Signature) {
					t.Fatalf("Sign %s %s: the signature does not verify locally", alg, mt)
				}
				if _, err := f.kms.Verify(ctx, &kms.VerifyInput{KeyId: &arn, Message: in, MessageType: mt, SigningAlgorithm: types.SigningAlgorithmSpec(alg), Signature: sig.Signature}); err != nil {
					t.Fatalf("Verify %s: %v", alg, err)
				}
			}
		}
		_, err = f.kms.Verify(ctx, &kms.VerifyInput{KeyId: &arn, Message: []byte("x"), SigningAlgorithm: types.SigningAlgorithmSpec(info.signing[0]), Signature: []byte{0x30, 0x06, 2, 1, 1, 2, 1, 1}})
		var is *types.KMSInvalidSignatureException
		if !errors.As(err, &is) {
			t.Fatalf("Verify of a wrong signature: %v", err)
		}
	}
}

func verifyLocally(t *testing.T, spki []byte, spec, alg string, digest, sig []byte) bool {
	t.Helper()
	h := hashOf(alg)
	if spec == "ECC_SECG_P256K1" {
		// Parse the SPKI point and verify with the math/big implementation.
		var s struct {
			Algo asn1.RawValue
			Pub  asn1.BitString
		}
		if _, err := asn1.Unmarshal(spki, &s); err != nil || len(s.Pub.Bytes) != 65 {
			t.Fatalf("secp256k1 SPKI: %v", err)
		}
		pub := k1Point{new(big.Int).SetBytes(s.Pub.Bytes[1:33]), new(big.Int).SetBytes(s.Pub.Bytes[33:])}
		if !k1OnCurve(pub.x, pub.y) {
			t.Fatal("secp256k1 public key is not on the curve")
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			return false
		}
		return k1Verify(pub, digest, rs.R, rs.S)
	}
	p, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		t.Fatal(err)
	}
	switch k := p.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(alg, "RSASSA_PSS_") {
			return rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	}
	return false
}

// code returns the API error code of err.
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestWrappingRulesAtGetParametersForImport(t *testing.T) {
	f := newFixture(t)
	keys := map[string]string{}
	for _, c := range []struct{ spec, usage string }{{"SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"}, {"HMAC_256", "GENERATE_VERIFY_MAC"}, {"RSA_2048", "SIGN_VERIFY"}, {"ECC_NIST_P256", "SIGN_VERIFY"}, {"ECC_NIST_P521", "SIGN_VERIFY"}} {
		keys[c.spec] = f.createKey(t, c.spec, c.usage, false)
	}
	cases := []struct {
		spec  string
		alg   types.AlgorithmSpec
		wspec types.WrappingKeySpec
		want  string // "" for success
	}{
		{"SYMMETRIC_DEFAULT", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048, ""},
		{"SYMMETRIC_DEFAULT", types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa2048, "ValidationException"},
		{"SYMMETRIC_DEFAULT", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa4096, "ValidationException"},
		{"SYMMETRIC_DEFAULT", types.AlgorithmSpecSm2pke, types.WrappingKeySpecSm2, "ValidationException"},
		{"SYMMETRIC_DEFAULT", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpec("RSA_1024"), "ValidationException"},
		{"HMAC_256", types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa3072, ""},
		{"HMAC_256", types.AlgorithmSpecRsaAesKeyWrapSha1, types.WrappingKeySpecRsa3072, "ValidationException"},
		{"RSA_2048", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, ""},
		{"RSA_2048", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa4096, "ValidationException"},
		{"RSA_2048", types.AlgorithmSpecRsaesPkcs1V15, types.WrappingKeySpecRsa4096, "ValidationException"},
		{"ECC_NIST_P256", types.AlgorithmSpecRsaesOaepSha1, types.WrappingKeySpecRsa2048, ""},
		{"ECC_NIST_P256", types.AlgorithmSpecRsaAesKeyWrapSha1, types.WrappingKeySpecRsa2048, ""},
		{"ECC_NIST_P521", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048, "ValidationException"},
		{"ECC_NIST_P521", types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa3072, ""},
		{"ECC_NIST_P521", types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, ""},
	}
	for _, c := range cases {
		t.Run(c.spec+"/"+string(c.alg)+"/"+string(c.wspec), func(t *testing.T) {
			_, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: aws.String(keys[c.spec]), WrappingAlgorithm: c.alg, WrappingKeySpec: c.wspec})
			if got := code(err); got != c.want {
				t.Fatalf("got %q (%v), want %q", got, err, c.want)
			}
		})
	}
}

func TestTypedErrors(t *testing.T) {
	f := newFixture(t)
	sym := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	other := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	hmacKey := f.createKey(t, "HMAC_256", "GENERATE_VERIFY_MAC", false)
	native, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	validTo := f.now.Add(time.Hour)
	alg, ws := types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048
	m := materialFor(t, "SYMMETRIC_DEFAULT", 0)

	check := func(name string, err error, target any) {
		t.Helper()
		if !errors.As(err, target) {
			t.Errorf("%s: got %T %v, want %T", name, err, err, target)
		}
	}
	_, err = f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("1234abcd-12ab-34cd-56ef-1234567890ab")})
	check("DescribeKey of a missing key", err, new(*types.NotFoundException))
	_, err = f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &sym, Plaintext: []byte("x")})
	check("Encrypt with a PendingImport key", err, new(*types.KMSInvalidStateException))
	_, err = f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: native.KeyMetadata.Arn, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	check("GetParametersForImport on an AWS_KMS key", err, new(*types.UnsupportedOperationException))

	// A token of another key.
	p, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &other, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.kms.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &sym, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, alg, m), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	check("ImportKeyMaterial with another key's token", err, new(*types.InvalidImportTokenException))
	// Bytes that are no wrapping of anything.
	_, err = f.importMaterial(t, sym, alg, ws, m, &validTo, func(in *kms.ImportKeyMaterialInput) { in.EncryptedKeyMaterial = bytes.Repeat([]byte{7}, 256) })
	check("ImportKeyMaterial of garbage", err, new(*types.InvalidCiphertextException))
	// Wrapped with SHA-1 under a SHA-256 token.
	p, _ = f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &sym, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	_, err = f.kms.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &sym, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha1, m), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	check("ImportKeyMaterial wrapped with the wrong hash", err, new(*types.InvalidCiphertextException))
	// An expired token.
	p, _ = f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &sym, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	f.now = f.now.Add(24*time.Hour + time.Second)
	_, err = f.kms.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &sym, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, alg, m), ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	check("ImportKeyMaterial with an expired token", err, new(*types.ExpiredImportTokenException))

	validation := []struct {
		name string
		mod  func(*kms.ImportKeyMaterialInput)
	}{
		{"ValidTo missing with KEY_MATERIAL_EXPIRES", func(in *kms.ImportKeyMaterialInput) { in.ValidTo = nil }},
		{"ValidTo in the past", func(in *kms.ImportKeyMaterialInput) { v := f.now.Add(-time.Minute); in.ValidTo = &v }},
		{"ValidTo more than 365 days ahead", func(in *kms.ImportKeyMaterialInput) { v := f.now.Add(366 * 24 * time.Hour); in.ValidTo = &v }},
		{"ValidTo with KEY_MATERIAL_DOES_NOT_EXPIRE", func(in *kms.ImportKeyMaterialInput) {
			in.ExpirationModel = types.ExpirationModelTypeKeyMaterialDoesNotExpire
		}},
		{"NEW_KEY_MATERIAL with a KeyMaterialId", func(in *kms.ImportKeyMaterialInput) {
			in.ImportType = types.ImportTypeNewKeyMaterial
			in.KeyMaterialId = aws.String(strings.Repeat("a", 64))
		}},
	}
	for _, v := range validation {
		validTo := f.now.Add(time.Hour)
		_, err := f.importMaterial(t, sym, alg, ws, m, &validTo, v.mod)
		if code(err) != "ValidationException" {
			t.Errorf("%s: got %v, want ValidationException", v.name, err)
		}
	}
	// ImportType is refused for HMAC (and asymmetric) keys: KMS wants it omitted.
	validTo = f.now.Add(time.Hour)
	_, err = f.importMaterial(t, hmacKey, alg, ws, materialFor(t, "HMAC_256", 0), &validTo, func(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeExistingKeyMaterial })
	if code(err) != "ValidationException" {
		t.Errorf("ImportType on an HMAC key: got %v, want ValidationException", err)
	}
	// Wrong material length for the key spec.
	_, err = f.importMaterial(t, sym, alg, ws, make([]byte, 16), &validTo, nil)
	if code(err) != "ValidationException" {
		t.Errorf("16-byte symmetric material: got %v, want ValidationException", err)
	}
	_, err = f.importMaterial(t, hmacKey, alg, ws, make([]byte, 31), &validTo, nil)
	if code(err) != "ValidationException" {
		t.Errorf("31-byte HMAC_256 material: got %v, want ValidationException", err)
	}

	// Disabled keys, wrong usage and wrong algorithms.
	if _, err := f.importMaterial(t, sym, alg, ws, m, &validTo, nil); err != nil {
		t.Fatal(err)
	}
	_, err = f.kms.GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &sym, Message: []byte("x"), MacAlgorithm: types.MacAlgorithmSpecHmacSha256})
	check("GenerateMac with a symmetric key", err, new(*types.InvalidKeyUsageException))
	_, err = f.kms.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &sym})
	check("GetPublicKey of a symmetric key", err, new(*types.UnsupportedOperationException))
	if _, err := f.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &sym}); err != nil {
		t.Fatal(err)
	}
	_, err = f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &sym, Plaintext: []byte("x")})
	check("Encrypt with a disabled key", err, new(*types.DisabledException))
	if _, err := f.kms.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &sym}); err != nil {
		t.Fatal(err)
	}
	enc, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &sym, Plaintext: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.kms.Decrypt(ctx, &kms.DecryptInput{KeyId: &other, CiphertextBlob: enc.CiphertextBlob})
	check("Decrypt naming another key", err, new(*types.IncorrectKeyException))
	if _, err := f.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &sym, PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	_, err = f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &sym, WrappingAlgorithm: alg, WrappingKeySpec: ws})
	check("GetParametersForImport on a key pending deletion", err, new(*types.KMSInvalidStateException))
}

func TestExpiryAndDeleteImportedKeyMaterial(t *testing.T) {
	f := newFixture(t)
	arn := f.createKey(t, "ECC_NIST_P256", "SIGN_VERIFY", false)
	m := materialFor(t, "ECC_NIST_P256", 0)
	state := func() types.KeyState {
		d, err := f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
		if err != nil {
			t.Fatal(err)
		}
		return d.KeyMetadata.KeyState
	}
	validTo := f.now.Add(time.Hour)
	if _, err := f.importMaterial(t, arn, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, m, &validTo, nil); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStateEnabled {
		t.Fatalf("after import: %s", s)
	}
	f.now = f.now.Add(time.Hour)
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("at ValidTo: %s, want PendingImport", s)
	}
	// A different key is still refused after expiry; the same one is taken.
	validTo = f.now.Add(time.Hour)
	_, err := f.importMaterial(t, arn, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, materialFor(t, "ECC_NIST_P256", 1), &validTo, nil)
	if !errors.As(err, new(*types.IncorrectKeyMaterialException)) {
		t.Fatalf("other material after expiry: %v", err)
	}
	if _, err := f.importMaterial(t, arn, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, m, nil, nil); err != nil {
		t.Fatal(err)
	}
	d, _ := f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if d.KeyMetadata.KeyState != types.KeyStateEnabled || d.KeyMetadata.ValidTo != nil || d.KeyMetadata.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire {
		t.Fatalf("after reimport without expiry: %+v", d.KeyMetadata)
	}
	if _, err := f.kms.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("after DeleteImportedKeyMaterial: %s", s)
	}
}

func TestRotationOfImportedSymmetricMaterial(t *testing.T) {
	f := newFixture(t)
	arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	alg, ws := types.AlgorithmSpecRsaesOaepSha256, types.WrappingKeySpecRsa2048
	m1, m2 := materialFor(t, "SYMMETRIC_DEFAULT", 0), materialFor(t, "SYMMETRIC_DEFAULT", 1)
	v1, v2 := f.now.Add(10*24*time.Hour), f.now.Add(20*24*time.Hour)
	out1, err := f.importMaterial(t, arn, alg, ws, m1, &v1, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc1, _ := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: []byte("one")})
	// RotateKeyOnDemand needs material pending rotation.
	_, err = f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn})
	if !errors.As(err, new(*types.KMSInvalidStateException)) {
		t.Fatalf("RotateKeyOnDemand with nothing pending: %v", err)
	}
	out2, err := f.importMaterial(t, arn, alg, ws, m2, &v2, func(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeNewKeyMaterial })
	if err != nil {
		t.Fatal(err)
	}
	if *out1.KeyMaterialId == *out2.KeyMaterialId || len(*out1.KeyMaterialId) != 64 {
		t.Fatalf("material ids %q %q", *out1.KeyMaterialId, *out2.KeyMaterialId)
	}
	list := func(incl types.IncludeKeyMaterial) []types.RotationsListEntry {
		l, err := f.kms.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: incl})
		if err != nil {
			t.Fatal(err)
		}
		return l.Rotations
	}
	all := list(types.IncludeKeyMaterialAllKeyMaterial)
	if len(all) != 2 || all[0].KeyMaterialState != types.KeyMaterialStateCurrent || all[1].KeyMaterialState != types.KeyMaterialStatePendingRotation || all[1].ImportState != types.ImportStateImported || !all[1].ValidTo.Equal(v2) {
		t.Fatalf("before rotation: %+v", all)
	}
	if r := list(types.IncludeKeyMaterialRotationsOnly); len(r) != 0 {
		t.Fatalf("ROTATIONS_ONLY before any rotation: %+v", r)
	}
	if _, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	all = list(types.IncludeKeyMaterialAllKeyMaterial)
	if all[0].KeyMaterialState != types.KeyMaterialStateNonCurrent || all[1].KeyMaterialState != types.KeyMaterialStateCurrent || all[1].RotationType != types.RotationTypeOnDemand {
		t.Fatalf("after rotation: %+v", all)
	}
	d, _ := f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if *d.KeyMetadata.CurrentKeyMaterialId != *out2.KeyMaterialId || !d.KeyMetadata.ValidTo.Equal(v1) {
		t.Fatalf("DescribeKey after rotation: current %s validTo %v (want the earliest, %v)", *d.KeyMetadata.CurrentKeyMaterialId, d.KeyMetadata.ValidTo, v1)
	}
	// Old ciphertext still decrypts with the non-current material.
	dec, err := f.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc1.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "one" || *dec.KeyMaterialId != *out1.KeyMaterialId {
		t.Fatalf("Decrypt of old ciphertext: %v", err)
	}
	// When the first material expires the key is PendingImport until it is
	// reimported as EXISTING_KEY_MATERIAL.
	f.now = v1
	d, _ = f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if d.KeyMetadata.KeyState != types.KeyStatePendingImport {
		t.Fatalf("after the first material expired: %s", d.KeyMetadata.KeyState)
	}
	v3 := f.now.Add(24 * time.Hour)
	_, err = f.importMaterial(t, arn, alg, ws, m1, &v3, func(in *kms.ImportKeyMaterialInput) {
		in.ImportType, in.KeyMaterialId = types.ImportTypeExistingKeyMaterial, out2.KeyMaterialId
	})
	if !errors.As(err, new(*types.IncorrectKeyMaterialException)) {
		t.Fatalf("EXISTING with another material's id: %v", err)
	}
	if _, err := f.importMaterial(t, arn, alg, ws, m1, &v3, func(in *kms.ImportKeyMaterialInput) {
		in.ImportType, in.KeyMaterialId = types.ImportTypeExistingKeyMaterial, out1.KeyMaterialId
	}); err != nil {
		t.Fatal(err)
	}
	d, _ = f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if d.KeyMetadata.KeyState != types.KeyStateEnabled {
		t.Fatalf("after reimporting the expired material: %s", d.KeyMetadata.KeyState)
	}
	_, err = f.importMaterial(t, arn, alg, ws, materialFor(t, "SYMMETRIC_DEFAULT", 2), &v3, func(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeExistingKeyMaterial })
	if !errors.As(err, new(*types.IncorrectKeyMaterialException)) {
		t.Fatalf("EXISTING with unknown material: %v", err)
	}
}

func TestAliasesMultiRegionAndListKeys(t *testing.T) {
	f := newFixture(t)
	arn := f.createKey(t, "HMAC_384", "GENERATE_VERIFY_MAC", true)
	if _, err := f.kms.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/test/hmac"), TargetKeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	_, err := f.kms.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/test/hmac"), TargetKeyId: &arn})
	if !errors.As(err, new(*types.AlreadyExistsException)) {
		t.Fatalf("duplicate alias: %v", err)
	}
	for _, id := range []string{arn, strings.TrimPrefix(arn, "arn:aws:kms:eu-west-2:111122223333:key/"), "alias/test/hmac", "arn:aws:kms:eu-west-2:111122223333:alias/test/hmac"} {
		d, err := f.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		if err != nil {
			t.Fatalf("DescribeKey %s: %v", id, err)
		}
		md := d.KeyMetadata
		if *md.Arn != arn || !*md.MultiRegion || md.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypePrimary || !strings.HasPrefix(*md.KeyId, "mrk-") || md.MacAlgorithms[0] != types.MacAlgorithmSpecHmacSha384 {
			t.Fatalf("DescribeKey %s: %+v", id, md)
		}
	}
	for _, bad := range []struct{ spec, usage string }{{"HMAC_256", "ENCRYPT_DECRYPT"}, {"ECC_SECG_P256K1", "KEY_AGREEMENT"}, {"RSA_2048", "GENERATE_VERIFY_MAC"}, {"SYMMETRIC_DEFAULT", "SIGN_VERIFY"}} {
		_, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpec(bad.spec), KeyUsage: types.KeyUsageType(bad.usage)})
		if code(err) != "ValidationException" {
			t.Errorf("CreateKey %s/%s: %v, want ValidationException", bad.spec, bad.usage, err)
		}
	}
	l, err := f.kms.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(1)})
	if err != nil || len(l.Keys) != 1 || l.Truncated {
		t.Fatalf("ListKeys: %+v %v", l, err)
	}
}

func TestRequestLogHoldsNoSecrets(t *testing.T) {
	f := newFixture(t)
	arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	m := materialFor(t, "SYMMETRIC_DEFAULT", 0)
	p, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	enc := wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha256, m)
	validTo := f.now.Add(time.Hour)
	if _, err := f.kms.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: enc, ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &validTo}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(f.http.URL + "/_standin/requests?keyArn=" + arn)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct{ Requests []Request }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, r := range got.Requests {
		ops = append(ops, r.Operation)
	}
	if strings.Join(ops, ",") != "CreateKey,GetParametersForImport,ImportKeyMaterial" {
		t.Fatalf("logged operations %v", ops)
	}
	imp := got.Requests[2].Params
	if imp["ExpirationModel"] != "KEY_MATERIAL_EXPIRES" || imp["ValidTo"] != validTo.Format(time.RFC3339Nano) || imp["EncryptedKeyMaterialBytes"] != float64(len(enc)) {
		t.Fatalf("ImportKeyMaterial params %v", imp)
	}
	if got.Requests[1].Params["WrappingAlgorithm"] != "RSAES_OAEP_SHA_256" || got.Requests[1].Params["WrappingKeySpec"] != "RSA_2048" {
		t.Fatalf("GetParametersForImport params %v", got.Requests[1].Params)
	}
	for _, secret := range [][]byte{m, p.ImportToken, enc} {
		for _, form := range []string{base64.StdEncoding.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret)[:20], string(secret)} {
			if bytes.Contains(body, []byte(form)) {
				t.Fatal("the request log holds a secret")
			}
		}
	}
	// Unknown operations are answered as the service does.
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", "TrentService.CreateGrant")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"__type":"UnknownOperationException"`) {
		t.Fatalf("unknown operation: %d %s", resp.StatusCode, b)
	}
}

func TestClockEndpointExpiresTokens(t *testing.T) {
	f := newFixture(t)
	f.now = time.Now()
	arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	p, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(f.http.URL+"/_standin/clock?advance=25h", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("clock: %v %v", err, resp)
	}
	resp.Body.Close()
	_, err = f.kms.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken,
		EncryptedKeyMaterial: wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha256, materialFor(t, "SYMMETRIC_DEFAULT", 0)),
		ExpirationModel:      types.ExpirationModelTypeKeyMaterialDoesNotExpire})
	if !errors.As(err, new(*types.ExpiredImportTokenException)) {
		t.Fatalf("after advancing the clock 25h: %v", err)
	}
}

func TestSignRejectsWrongDigestLength(t *testing.T) {
	f := newFixture(t)
	arn := f.createKey(t, "ECC_NIST_P384", "SIGN_VERIFY", false)
	if _, err := f.importMaterial(t, arn, types.AlgorithmSpecRsaAesKeyWrapSha256, types.WrappingKeySpecRsa2048, materialFor(t, "ECC_NIST_P384", 0), nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   kms.SignInput
		want string
	}{
		{"SHA-256 digest for ECDSA_SHA_384", kms.SignInput{Message: make([]byte, 32), MessageType: types.MessageTypeDigest, SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha384}, "ValidationException"},
		{"algorithm of another curve", kms.SignInput{Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecEcdsaSha256}, "InvalidKeyUsageException"},
		{"RSA algorithm", kms.SignInput{Message: []byte("m"), SigningAlgorithm: types.SigningAlgorithmSpecRsassaPssSha384}, "InvalidKeyUsageException"},
	} {
		in := c.in
		in.KeyId = &arn
		if _, err := f.kms.Sign(ctx, &in); code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}

// ---- Behaviours of real AWS modelled by default (docs/kms-standin.md) ----
//
// These tests move the stand-in's clock (f.now) instead of sleeping, so
// their delays are short but not zero, and exact: each checks just before
// and at the moment a delay or window runs out.

func (f *fixture) advance(d time.Duration) { f.now = f.now.Add(d) }

// regionClient serves another Region of f's stand-in and returns an SDK
// client for it.
func (f *fixture) regionClient(t *testing.T, region string) *kms.Client {
	t.Helper()
	h := httptest.NewServer(f.srv.InRegion(region))
	t.Cleanup(h.Close)
	return kms.New(kms.Options{Region: region, BaseEndpoint: aws.String(h.URL), Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
}

// importSym imports 32-byte material into a symmetric key through c
// (RSAES_OAEP_SHA_256, RSA_2048), valid 30 days.
func (f *fixture) importSym(t *testing.T, c *kms.Client, arn string, m []byte, mod func(*kms.ImportKeyMaterialInput)) (*kms.ImportKeyMaterialOutput, error) {
	t.Helper()
	p, err := c.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
	if err != nil {
		t.Fatalf("GetParametersForImport %s: %v", arn, err)
	}
	v := f.now.Add(30 * 24 * time.Hour)
	in := &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha256, m),
		ExpirationModel: types.ExpirationModelTypeKeyMaterialExpires, ValidTo: &v}
	if mod != nil {
		mod(in)
	}
	return c.ImportKeyMaterial(ctx, in)
}

func newMaterial(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeNewKeyMaterial }

func existing(id string) func(*kms.ImportKeyMaterialInput) {
	return func(in *kms.ImportKeyMaterialInput) {
		in.ImportType, in.KeyMaterialId = types.ImportTypeExistingKeyMaterial, aws.String(id)
	}
}

func random32() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// pendingKey makes a symmetric EXTERNAL key with its first material and a
// second one imported as NEW_KEY_MATERIAL (PENDING_ROTATION).
func (f *fixture) pendingKey(t *testing.T) (arn, oldID, newID string) {
	t.Helper()
	arn = f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	o1, err := f.importSym(t, f.kms, arn, random32(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := f.importSym(t, f.kms, arn, random32(), newMaterial)
	if err != nil {
		t.Fatal(err)
	}
	return arn, *o1.KeyMaterialId, *o2.KeyMaterialId
}

func describe(c *kms.Client, arn string) (*types.KeyMetadata, error) {
	d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		return nil, err
	}
	return d.KeyMetadata, nil
}

func rotations(t *testing.T, c *kms.Client, arn string, incl types.IncludeKeyMaterial) []types.RotationsListEntry {
	t.Helper()
	l, err := c.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: incl})
	if err != nil {
		t.Fatalf("ListKeyRotations %s: %v", arn, err)
	}
	return l.Rotations
}

// materialState is the KeyMaterialState of id ("" if not listed).
func materialState(t *testing.T, c *kms.Client, arn, id string) types.KeyMaterialState {
	t.Helper()
	for _, e := range rotations(t, c, arn, types.IncludeKeyMaterialAllKeyMaterial) {
		if aws.ToString(e.KeyMaterialId) == id {
			return e.KeyMaterialState
		}
	}
	return ""
}

func rotationStart(t *testing.T, c *kms.Client, arn string) *time.Time {
	t.Helper()
	s, err := c.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &arn})
	if err != nil {
		t.Fatalf("GetKeyRotationStatus %s: %v", arn, err)
	}
	if s.KeyRotationEnabled || aws.ToString(s.KeyId) != arn {
		t.Fatalf("GetKeyRotationStatus %s: %+v", arn, s)
	}
	return s.OnDemandRotationStartDate
}

// TestRotateKeyOnDemandCompletesAfterTheDelay: RotateKeyOnDemand only
// starts the rotation. Until RotationDelay has passed,
// GetKeyRotationStatus gives OnDemandRotationStartDate, the new material
// is PENDING_ROTATION, the old one CURRENT (and still encrypts), and
// ROTATIONS_ONLY lists nothing; from then on the rotation is complete.
func TestRotateKeyOnDemandCompletesAfterTheDelay(t *testing.T) {
	configs := []struct {
		name  string
		o     Options
		delay time.Duration
	}{
		{"default delay", Options{StaleReadWindow: Off, ReplicaSyncDelay: Off}, DefaultRotationDelay},
		{"short delay", Options{RotationDelay: 200 * time.Millisecond, StaleReadWindow: Off}, 200 * time.Millisecond},
		{"off: completes in the call", instant, 0},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			f := newFixtureWith(t, c.o)
			arn, oldID, newID := f.pendingKey(t)
			start := f.now
			if _, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
			checks := []struct {
				at         time.Duration
				inProgress bool
			}{{0, true}, {c.delay / 2, true}, {c.delay - time.Millisecond, true}, {c.delay, false}, {c.delay + time.Hour, false}}
			for _, ch := range checks {
				if ch.at < 0 || c.delay == 0 && ch.inProgress {
					continue
				}
				f.now = start.Add(ch.at)
				wantNew, wantOld, wantDone, cur := types.KeyMaterialStateCurrent, types.KeyMaterialStateNonCurrent, 1, newID
				if ch.inProgress {
					wantNew, wantOld, wantDone, cur = types.KeyMaterialStatePendingRotation, types.KeyMaterialStateCurrent, 0, oldID
				}
				st := rotationStart(t, f.kms, arn)
				if got := st != nil; got != ch.inProgress || st != nil && !st.Equal(start) {
					t.Errorf("+%s: OnDemandRotationStartDate %v, want in progress %v (since %s)", ch.at, st, ch.inProgress, start)
				}
				if s := materialState(t, f.kms, arn, newID); s != wantNew {
					t.Errorf("+%s: new material %s, want %s", ch.at, s, wantNew)
				}
				if s := materialState(t, f.kms, arn, oldID); s != wantOld {
					t.Errorf("+%s: old material %s, want %s", ch.at, s, wantOld)
				}
				done := rotations(t, f.kms, arn, types.IncludeKeyMaterialRotationsOnly)
				if len(done) != wantDone || wantDone == 1 && (aws.ToString(done[0].KeyMaterialId) != newID || done[0].RotationType != types.RotationTypeOnDemand || !done[0].RotationDate.Equal(start.Add(c.delay))) {
					t.Errorf("+%s: ROTATIONS_ONLY %+v, want %d (completed at %s)", ch.at, done, wantDone, start.Add(c.delay))
				}
				md, err := describe(f.kms, arn)
				if err != nil || aws.ToString(md.CurrentKeyMaterialId) != cur || md.KeyState != types.KeyStateEnabled {
					t.Errorf("+%s: DescribeKey %v: current %s state %s, want %s Enabled", ch.at, err, aws.ToString(md.CurrentKeyMaterialId), md.KeyState, cur)
				}
				enc, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: []byte("x")})
				if err != nil {
					t.Fatal(err)
				}
				dec, err := f.kms.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
				if err != nil || aws.ToString(dec.KeyMaterialId) != cur {
					t.Errorf("+%s: Encrypt used material %s (%v), want %s", ch.at, aws.ToString(dec.KeyMaterialId), err, cur)
				}
			}
		})
	}
}

// TestRotateKeyOnDemandErrors: ConflictException while a rotation runs,
// LimitExceededException past the on-demand rotations a key may have
// (25 by default), KMSInvalidStateException without imported material
// pending rotation, and the errors of key type and state.
func TestRotateKeyOnDemandErrors(t *testing.T) {
	rotate := func(f *fixture, arn string) error {
		_, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn})
		return err
	}
	// rotateN completes n rotations of arn (importing new material each
	// time when EXTERNAL) and returns the error of the one after.
	rotateN := func(t *testing.T, f *fixture, arn string, external bool, n int) error {
		for i := 0; i < n; i++ {
			if external {
				if _, err := f.importSym(t, f.kms, arn, random32(), newMaterial); err != nil {
					t.Fatalf("rotation %d: %v", i+1, err)
				}
			}
			if err := rotate(f, arn); err != nil {
				t.Fatalf("rotation %d: %v", i+1, err)
			}
			f.advance(time.Hour) // completes it
		}
		if external {
			if _, err := f.importSym(t, f.kms, arn, random32(), newMaterial); err != nil {
				t.Fatal(err)
			}
		}
		return rotate(f, arn)
	}
	short := Options{RotationDelay: 300 * time.Millisecond, StaleReadWindow: Off, ReplicaSyncDelay: Off}
	cases := []struct {
		name string
		o    Options
		run  func(t *testing.T, f *fixture) error
		want string
	}{
		{"a rotation in progress", short, func(t *testing.T, f *fixture) error {
			arn, _, _ := f.pendingKey(t)
			if err := rotate(f, arn); err != nil {
				t.Fatal(err)
			}
			f.advance(299 * time.Millisecond)
			return rotate(f, arn)
		}, "ConflictException"},
		{"once the rotation completed, nothing pending", short, func(t *testing.T, f *fixture) error {
			arn, _, _ := f.pendingKey(t)
			if err := rotate(f, arn); err != nil {
				t.Fatal(err)
			}
			f.advance(300 * time.Millisecond)
			return rotate(f, arn)
		}, "KMSInvalidStateException"},
		{"a rotation in progress on an AWS_KMS key", short, func(t *testing.T, f *fixture) error {
			k, _ := f.kms.CreateKey(ctx, &kms.CreateKeyInput{})
			if err := rotate(f, *k.KeyMetadata.Arn); err != nil {
				t.Fatal(err)
			}
			return rotate(f, *k.KeyMetadata.Arn)
		}, "ConflictException"},
		{"the 26th on-demand rotation (default limit)", short, func(t *testing.T, f *fixture) error {
			k, _ := f.kms.CreateKey(ctx, &kms.CreateKeyInput{})
			return rotateN(t, f, *k.KeyMetadata.Arn, false, DefaultMaxOnDemandRotations)
		}, "LimitExceededException"},
		{"the 25th on-demand rotation", short, func(t *testing.T, f *fixture) error {
			k, _ := f.kms.CreateKey(ctx, &kms.CreateKeyInput{})
			return rotateN(t, f, *k.KeyMetadata.Arn, false, DefaultMaxOnDemandRotations-1)
		}, ""},
		{"the 3rd rotation of imported material with MaxOnDemandRotations 2", Options{RotationDelay: 300 * time.Millisecond, StaleReadWindow: Off, MaxOnDemandRotations: 2}, func(t *testing.T, f *fixture) error {
			arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
			if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
				t.Fatal(err)
			}
			return rotateN(t, f, arn, true, 2)
		}, "LimitExceededException"},
		{"no material imported as NEW_KEY_MATERIAL", short, func(t *testing.T, f *fixture) error {
			arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
			if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
				t.Fatal(err)
			}
			return rotate(f, arn)
		}, "KMSInvalidStateException"},
		{"a key pending import", short, func(t *testing.T, f *fixture) error {
			return rotate(f, f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false))
		}, "KMSInvalidStateException"},
		{"a disabled key", short, func(t *testing.T, f *fixture) error {
			arn, _, _ := f.pendingKey(t)
			if _, err := f.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
			return rotate(f, arn)
		}, "DisabledException"},
		{"an HMAC key", short, func(t *testing.T, f *fixture) error {
			return rotate(f, f.createKey(t, "HMAC_256", "GENERATE_VERIFY_MAC", false))
		}, "UnsupportedOperationException"},
		{"pending material, first rotation", short, func(t *testing.T, f *fixture) error {
			arn, _, _ := f.pendingKey(t)
			return rotate(f, arn)
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixtureWith(t, c.o)
			if got := code(c.run(t, f)); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestImportKeyMaterialNeedsPendingImportOrEnabled: the ImportKeyMaterial
// reference allows keys in state PendingImport or Enabled only; Disabled,
// PendingDeletion (and a replica still Creating, see the multi-Region
// test) get KMSInvalidStateException, whatever the ImportType. The import
// token is taken before the state changes (GetParametersForImport itself
// refuses a key pending deletion).
func TestImportKeyMaterialNeedsPendingImportOrEnabled(t *testing.T) {
	imported := func(t *testing.T, f *fixture, arn string, m []byte) {
		if _, err := f.importSym(t, f.kms, arn, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	disable := func(t *testing.T, f *fixture, arn string) {
		if _, err := f.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &arn}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		before func(t *testing.T, f *fixture, arn string, m []byte) // then the token is taken
		after  func(t *testing.T, f *fixture, arn string)
		newMat bool // import other material as NEW_KEY_MATERIAL
		want   string
	}{
		{"PendingImport (new key)", nil, nil, false, ""},
		{"Enabled (reimport)", imported, nil, false, ""},
		{"Enabled (NEW_KEY_MATERIAL)", imported, nil, true, ""},
		{"PendingImport (material expired)", func(t *testing.T, f *fixture, arn string, m []byte) {
			imported(t, f, arn, m)
			f.advance(31 * 24 * time.Hour)
		}, nil, false, ""},
		{"Disabled (reimport)", imported, disable, false, "KMSInvalidStateException"},
		{"Disabled (NEW_KEY_MATERIAL)", imported, disable, true, "KMSInvalidStateException"},
		{"Disabled, then enabled again", imported, func(t *testing.T, f *fixture, arn string) {
			disable(t, f, arn)
			if _, err := f.kms.EnableKey(ctx, &kms.EnableKeyInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
		{"PendingDeletion", nil, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &arn, PendingWindowInDays: aws.Int32(7)}); err != nil {
				t.Fatal(err)
			}
		}, false, "KMSInvalidStateException"},
		{"PendingDeletion (reimport)", imported, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.kms.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &arn, PendingWindowInDays: aws.Int32(7)}); err != nil {
				t.Fatal(err)
			}
		}, false, "KMSInvalidStateException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
			m := random32()
			if c.before != nil {
				c.before(t, f, arn, m)
			}
			p, err := f.kms.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: &arn, WrappingAlgorithm: types.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: types.WrappingKeySpecRsa2048})
			if err != nil {
				t.Fatal(err)
			}
			if c.after != nil {
				c.after(t, f, arn)
			}
			in := &kms.ImportKeyMaterialInput{KeyId: &arn, ImportToken: p.ImportToken, EncryptedKeyMaterial: wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha256, m),
				ExpirationModel: types.ExpirationModelTypeKeyMaterialDoesNotExpire}
			if c.newMat {
				in.EncryptedKeyMaterial = wrapFor(t, p.PublicKey, types.AlgorithmSpecRsaesOaepSha256, random32())
				in.ImportType = types.ImportTypeNewKeyMaterial
			}
			_, err = f.kms.ImportKeyMaterial(ctx, in)
			if got := code(err); got != c.want {
				t.Fatalf("got %q (%v), want %q", got, err, c.want)
			}
		})
	}
}

// TestStaleReadsAfterAWrite: for StaleReadWindow after a change to a key,
// DescribeKey, ListKeyRotations and GetKeyRotationStatus answer as before
// it (right after CreateKey: NotFoundException); from then on as after.
// Operations other than those reads see the change at once.
func TestStaleReadsAfterAWrite(t *testing.T) {
	const window = 100 * time.Millisecond
	type view struct {
		found     bool
		state     types.KeyState
		current   string
		materials int  // ALL_KEY_MATERIAL entries
		rotated   int  // ROTATIONS_ONLY entries
		rotating  bool // OnDemandRotationStartDate present
	}
	read := func(t *testing.T, f *fixture, arn string) view {
		t.Helper()
		md, err := describe(f.kms, arn)
		if code(err) == "NotFoundException" {
			for _, op := range []func() error{
				func() error {
					_, err := f.kms.ListKeyRotations(ctx, &kms.ListKeyRotationsInput{KeyId: &arn})
					return err
				},
				func() error {
					_, err := f.kms.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &arn})
					return err
				},
			} {
				if err := op(); code(err) != "NotFoundException" {
					t.Fatalf("DescribeKey says NotFound, another read %v", err)
				}
			}
			return view{}
		}
		if err != nil {
			t.Fatal(err)
		}
		return view{true, md.KeyState, aws.ToString(md.CurrentKeyMaterialId),
			len(rotations(t, f.kms, arn, types.IncludeKeyMaterialAllKeyMaterial)), len(rotations(t, f.kms, arn, types.IncludeKeyMaterialRotationsOnly)),
			rotationStart(t, f.kms, arn) != nil}
	}
	cases := []struct {
		name  string
		o     Options
		setup func(t *testing.T, f *fixture) string // returns the key; the clock is then moved past the window
		write func(t *testing.T, f *fixture, arn string)
		// before and after the write (materials and current are compared
		// only when set in before)
		before, after view
	}{
		{"CreateKey", Options{}, func(*testing.T, *fixture) string { return "" }, nil,
			view{}, view{found: true, state: types.KeyStatePendingImport}},
		{"first ImportKeyMaterial", Options{}, func(t *testing.T, f *fixture) string {
			return f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
		}, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
				t.Fatal(err)
			}
		}, view{found: true, state: types.KeyStatePendingImport}, view{found: true, state: types.KeyStateEnabled, materials: 1}},
		{"NEW_KEY_MATERIAL", Options{}, func(t *testing.T, f *fixture) string {
			arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
			if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
				t.Fatal(err)
			}
			return arn
		}, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.importSym(t, f.kms, arn, random32(), newMaterial); err != nil {
				t.Fatal(err)
			}
		}, view{found: true, state: types.KeyStateEnabled, materials: 1}, view{found: true, state: types.KeyStateEnabled, materials: 2}},
		{"DisableKey", Options{}, func(t *testing.T, f *fixture) string {
			arn, _, _ := f.pendingKey(t)
			return arn
		}, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.kms.DisableKey(ctx, &kms.DisableKeyInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
		}, view{found: true, state: types.KeyStateEnabled, materials: 2}, view{found: true, state: types.KeyStateDisabled, materials: 2}},
		{"RotateKeyOnDemand (started)", Options{RotationDelay: time.Hour}, func(t *testing.T, f *fixture) string {
			arn, _, _ := f.pendingKey(t)
			return arn
		}, func(t *testing.T, f *fixture, arn string) {
			if _, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
		}, view{found: true, state: types.KeyStateEnabled, materials: 2}, view{found: true, state: types.KeyStateEnabled, materials: 2, rotating: true}},
		{"rotation completing by itself", Options{RotationDelay: 2 * time.Second}, func(t *testing.T, f *fixture) string {
			arn, _, _ := f.pendingKey(t)
			if _, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
				t.Fatal(err)
			}
			f.advance(2*time.Second - window - time.Millisecond) // the write below is the completion, at +2s
			return arn
		}, func(t *testing.T, f *fixture, arn string) { f.advance(time.Millisecond) }, // now the rotation completes
			view{found: true, state: types.KeyStateEnabled, materials: 2, rotating: true}, view{found: true, state: types.KeyStateEnabled, materials: 2, rotated: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			o.StaleReadWindow, o.ReplicaSyncDelay = window, Off
			if o.RotationDelay == 0 {
				o.RotationDelay = Off
			}
			f := newFixtureWith(t, o)
			arn := c.setup(t, f)
			if arn == "" { // the write is CreateKey
				arn = f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
				if c.name != "CreateKey" {
					t.Fatal("no key")
				}
			} else {
				f.advance(window)
				if got := read(t, f, arn); got.found != c.before.found || got.state != c.before.state || got.materials != c.before.materials || got.rotated != c.before.rotated || got.rotating != c.before.rotating {
					t.Fatalf("before the write: %+v, want %+v", got, c.before)
				}
				c.write(t, f, arn)
			}
			at := f.now
			for _, d := range []time.Duration{0, window / 2, window - time.Millisecond} {
				f.now = at.Add(d)
				got := read(t, f, arn)
				if got.found != c.before.found || got.state != c.before.state || got.materials != c.before.materials || got.rotated != c.before.rotated || got.rotating != c.before.rotating {
					t.Errorf("+%s after the write: %+v, want the state before it %+v", d, got, c.before)
				}
			}
			f.now = at.Add(window)
			if got := read(t, f, arn); got.found != c.after.found || got.state != c.after.state || got.materials != c.after.materials || got.rotated != c.after.rotated || got.rotating != c.after.rotating {
				t.Errorf("+%s after the write: %+v, want %+v", window, got, c.after)
			}
		})
	}
	// Other operations are not stale: GetParametersForImport and Encrypt
	// right after CreateKey and the import succeed.
	f := newFixtureWith(t, Options{StaleReadWindow: time.Hour, RotationDelay: Off, ReplicaSyncDelay: Off})
	arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", false)
	if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: []byte("x")}); err != nil {
		t.Fatalf("Encrypt right after the import: %v", err)
	}
	if _, err := describe(f.kms, arn); code(err) != "NotFoundException" {
		t.Fatalf("DescribeKey within the hour: %v, want NotFoundException", err)
	}
}

// TestCurrentKeyMaterialIdForEverySymmetricKey: DescribeKey has
// CurrentKeyMaterialId for every symmetric key with key material, AWS_KMS
// or EXTERNAL, single-Region or multi-Region primary or replica; not for
// HMAC or asymmetric keys, nor an EXTERNAL key before its first import.
func TestCurrentKeyMaterialIdForEverySymmetricKey(t *testing.T) {
	f := newFixture(t)
	west1 := f.regionClient(t, "eu-west-1")
	m := random32()
	ext := func(mr bool) func(t *testing.T) (*kms.Client, string, string) {
		return func(t *testing.T) (*kms.Client, string, string) {
			arn := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", mr)
			o, err := f.importSym(t, f.kms, arn, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			return f.kms, arn, *o.KeyMaterialId
		}
	}
	native := func(mr bool) func(t *testing.T) (*kms.Client, string, string) {
		return func(t *testing.T) (*kms.Client, string, string) {
			k, err := f.kms.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(mr)})
			if err != nil {
				t.Fatal(err)
			}
			l := rotations(t, f.kms, *k.KeyMetadata.Arn, types.IncludeKeyMaterialAllKeyMaterial)
			return f.kms, *k.KeyMetadata.Arn, *l[0].KeyMaterialId
		}
	}
	cases := []struct {
		name string
		key  func(t *testing.T) (c *kms.Client, arn, wantID string)
	}{
		{"EXTERNAL, single-Region", ext(false)},
		{"EXTERNAL, multi-Region primary", ext(true)},
		{"EXTERNAL, multi-Region replica", func(t *testing.T) (*kms.Client, string, string) {
			_, primary, id := ext(true)(t)
			r, err := f.kms.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &primary, ReplicaRegion: aws.String("eu-west-1")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.importSym(t, west1, *r.ReplicaKeyMetadata.Arn, m, nil); err != nil {
				t.Fatal(err)
			}
			return west1, *r.ReplicaKeyMetadata.Arn, id
		}},
		{"AWS_KMS, single-Region", native(false)},
		{"AWS_KMS, multi-Region", native(true)},
		{"EXTERNAL before any import", func(t *testing.T) (*kms.Client, string, string) {
			return f.kms, f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", true), ""
		}},
		{"HMAC, multi-Region", func(t *testing.T) (*kms.Client, string, string) {
			arn := f.createKey(t, "HMAC_256", "GENERATE_VERIFY_MAC", true)
			if _, err := f.importSym(t, f.kms, arn, random32(), nil); err != nil {
				t.Fatal(err)
			}
			return f.kms, arn, ""
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, arn, want := c.key(t)
			md, err := describe(cl, arn)
			if err != nil {
				t.Fatal(err)
			}
			if got := aws.ToString(md.CurrentKeyMaterialId); got != want || want != "" && len(got) != 64 {
				t.Fatalf("CurrentKeyMaterialId %q, want %q", got, want)
			}
		})
	}
}

// TestMultiRegionImportAndRotation walks a multi-Region symmetric key with
// imported material through its life, step by step (a table of steps on
// one primary in eu-west-2 and replicas in eu-west-1 and eu-west-3, all
// held by the stand-in): replicas are Creating until the first sync; a
// replica learns a key material id ReplicaSyncDelay after the primary got
// it and refuses it before (IncorrectKeyMaterialException); material
// imported as NEW_KEY_MATERIAL into the primary is
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every replica has it,
// then PENDING_ROTATION; the rotation reaches the replicas a sync later.
func TestMultiRegionImportAndRotation(t *testing.T) {
	const sync, rot = 300 * time.Millisecond, 200 * time.Millisecond
	f := newFixtureWith(t, Options{ReplicaSyncDelay: sync, RotationDelay: rot, StaleReadWindow: Off})
	clients := map[string]*kms.Client{"eu-west-2": f.kms, "eu-west-1": f.regionClient(t, "eu-west-1"), "eu-west-3": f.regionClient(t, "eu-west-3")}
	primary := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", true)
	keyID := strings.TrimPrefix(primary, "arn:aws:kms:eu-west-2:111122223333:key/")
	arn := func(region string) string { return "arn:aws:kms:" + region + ":111122223333:key/" + keyID }
	m1, m2 := random32(), random32()
	ids := map[string]string{} // "m1", "m2" -> KeyMaterialId
	var ciphertext []byte

	importInto := func(region string, m []byte, mod func(*kms.ImportKeyMaterialInput)) func(t *testing.T) error {
		return func(t *testing.T) error {
			_, err := f.importSym(t, clients[region], arn(region), m, mod)
			return err
		}
	}
	replicate := func(region string) func(t *testing.T) error {
		return func(t *testing.T) error {
			out, err := f.kms.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &primary, ReplicaRegion: aws.String(region)})
			if err == nil && (out.ReplicaKeyMetadata.KeyState != types.KeyStateCreating || *out.ReplicaKeyMetadata.Arn != arn(region) ||
				out.ReplicaKeyMetadata.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica) {
				t.Errorf("ReplicaKeyMetadata %+v", out.ReplicaKeyMetadata)
			}
			return err
		}
	}
	keyState := func(region string, want types.KeyState) func(t *testing.T) error {
		return func(t *testing.T) error {
			md, err := describe(clients[region], arn(region))
			if err == nil && md.KeyState != want {
				t.Errorf("%s is %s, want %s", region, md.KeyState, want)
			}
			return err
		}
	}
	matState := func(region, name string, want types.KeyMaterialState) func(t *testing.T) error {
		return func(t *testing.T) error {
			if got := materialState(t, clients[region], arn(region), ids[name]); got != want {
				t.Errorf("%s: material %s is %q, want %q", region, name, got, want)
			}
			return nil
		}
	}
	current := func(region, name string) func(t *testing.T) error {
		return func(t *testing.T) error {
			md, err := describe(clients[region], arn(region))
			if err == nil && aws.ToString(md.CurrentKeyMaterialId) != ids[name] {
				t.Errorf("%s: CurrentKeyMaterialId %s, want %s's", region, aws.ToString(md.CurrentKeyMaterialId), name)
			}
			return err
		}
	}
	wait := func(d time.Duration) func(t *testing.T) error {
		return func(*testing.T) error { f.advance(d); return nil }
	}
	remember := func(name string, m []byte) func(t *testing.T) error {
		return func(*testing.T) error { ids[name] = materialID(keyID, m); return nil }
	}
	rotate := func(region string) func(t *testing.T) error {
		return func(t *testing.T) error {
			_, err := clients[region].RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(arn(region))})
			return err
		}
	}
	steps := []struct {
		name string
		do   func(t *testing.T) error
		want string // error code, "" for success
	}{
		{"replicate to eu-west-1", replicate("eu-west-1"), ""},
		{"replicate to eu-west-3", replicate("eu-west-3"), ""},
		{"eu-west-1 is Creating", keyState("eu-west-1", types.KeyStateCreating), ""},
		{"primary: first import", importInto("eu-west-2", m1, nil), ""},
		{"", remember("m1", m1), ""},
		{"primary: m1 current", current("eu-west-2", "m1"), ""},
		{"eu-west-1: import while Creating", importInto("eu-west-1", m1, nil), "KMSInvalidStateException"},
		{"", wait(sync - time.Millisecond), ""},
		{"eu-west-1 still Creating", keyState("eu-west-1", types.KeyStateCreating), ""},
		{"", wait(time.Millisecond), ""},
		{"eu-west-1 created, PendingImport", keyState("eu-west-1", types.KeyStatePendingImport), ""},
		{"eu-west-1: other material", importInto("eu-west-1", random32(), nil), "IncorrectKeyMaterialException"},
		// ReplicateKey knew no material yet: m1's id reaches the replicas
		// a sync after the primary's import (at the same moment here).
		{"eu-west-1: m1", importInto("eu-west-1", m1, nil), ""},
		{"eu-west-3: m1", importInto("eu-west-3", m1, nil), ""},
		{"eu-west-1 Enabled", keyState("eu-west-1", types.KeyStateEnabled), ""},
		{"eu-west-1: m1 current", current("eu-west-1", "m1"), ""},
		{"", func(t *testing.T) error {
			enc, err := f.kms.Encrypt(ctx, &kms.EncryptInput{KeyId: &primary, Plaintext: []byte("hello")})
			if err == nil {
				ciphertext = enc.CiphertextBlob
			}
			return err
		}, ""},
		{"eu-west-3 decrypts the primary's ciphertext", func(t *testing.T) error {
			dec, err := clients["eu-west-3"].Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ciphertext})
			if err == nil && string(dec.Plaintext) != "hello" {
				t.Error("wrong plaintext")
			}
			return err
		}, ""},

		// New material: primary first, replicas after they learned its id.
		{"eu-west-1: NEW_KEY_MATERIAL into a replica", importInto("eu-west-1", m2, newMaterial), "UnsupportedOperationException"},
		{"primary: m2 as NEW_KEY_MATERIAL", importInto("eu-west-2", m2, newMaterial), ""},
		{"", remember("m2", m2), ""},
		{"primary: m2 waits for the replicas", matState("eu-west-2", "m2", types.KeyMaterialStatePendingMultiRegionImportAndRotation), ""},
		{"primary: rotate before the replicas have m2", rotate("eu-west-2"), "KMSInvalidStateException"},
		{"eu-west-1 does not know m2 yet", matState("eu-west-1", "m2", ""), ""},
		{"eu-west-1: m2 with its id, too early", func(t *testing.T) error { return importInto("eu-west-1", m2, existing(ids["m2"]))(t) }, "IncorrectKeyMaterialException"},
		{"eu-west-1: m2 without its id, too early", importInto("eu-west-1", m2, func(in *kms.ImportKeyMaterialInput) { in.ImportType = types.ImportTypeExistingKeyMaterial }), "IncorrectKeyMaterialException"},
		{"", wait(sync - time.Millisecond), ""},
		{"eu-west-1: m2, 1ms too early", func(t *testing.T) error { return importInto("eu-west-1", m2, existing(ids["m2"]))(t) }, "IncorrectKeyMaterialException"},
		{"", wait(time.Millisecond), ""},
		{"eu-west-1 knows m2", matState("eu-west-1", "m2", types.KeyMaterialStatePendingMultiRegionImportAndRotation), ""},
		{"eu-west-1: m2 under m1's id", func(t *testing.T) error { return importInto("eu-west-1", m2, existing(ids["m1"]))(t) }, "IncorrectKeyMaterialException"},
		{"eu-west-1: m2", func(t *testing.T) error { return importInto("eu-west-1", m2, existing(ids["m2"]))(t) }, ""},
		{"primary: m2 still waits for eu-west-3", matState("eu-west-2", "m2", types.KeyMaterialStatePendingMultiRegionImportAndRotation), ""},
		{"primary: rotate before eu-west-3 has m2", rotate("eu-west-2"), "KMSInvalidStateException"},
		{"eu-west-3: m2", func(t *testing.T) error { return importInto("eu-west-3", m2, existing(ids["m2"]))(t) }, ""},
		{"primary: m2 PENDING_ROTATION", matState("eu-west-2", "m2", types.KeyMaterialStatePendingRotation), ""},
		{"eu-west-3 still sees m2 waiting: the change reaches it a sync later", matState("eu-west-3", "m2", types.KeyMaterialStatePendingMultiRegionImportAndRotation), ""},
		{"replica: rotate", rotate("eu-west-1"), "UnsupportedOperationException"},
		{"primary: rotate", rotate("eu-west-2"), ""},
		{"", wait(rot), ""},
		{"primary: m2 current", current("eu-west-2", "m2"), ""},
		{"primary: m1 NON_CURRENT", matState("eu-west-2", "m1", types.KeyMaterialStateNonCurrent), ""},
		{"eu-west-1: m1 still current", current("eu-west-1", "m1"), ""},
		{"", wait(sync), ""},
		{"eu-west-1: m2 current a sync later", current("eu-west-1", "m2"), ""},
		{"eu-west-3: m1 NON_CURRENT", matState("eu-west-3", "m1", types.KeyMaterialStateNonCurrent), ""},
		{"eu-west-3 Enabled", keyState("eu-west-3", types.KeyStateEnabled), ""},
		{"eu-west-3 still decrypts m1's ciphertext", func(t *testing.T) error {
			_, err := clients["eu-west-3"].Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ciphertext})
			return err
		}, ""},
	}
	for i, s := range steps {
		if t.Failed() {
			t.Fatalf("stopping before step %d (%s)", i, s.name)
		}
		err := s.do(t)
		if got := code(err); got != s.want || err != nil && got == "" {
			t.Errorf("step %d, %s: got %q (%v), want %q", i, s.name, got, err, s.want)
		}
	}
}

// TestReplicaInAnotherKMS: a replica in a Region the stand-in does not
// serve (a local-kms in the local stack) is only recorded; material
// imported as NEW_KEY_MATERIAL into the primary stays
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION until the test reports the
// replica's import with POST /_standin/replica-imports.
func TestReplicaInAnotherKMS(t *testing.T) {
	f := newFixture(t)
	primary := f.createKey(t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", true)
	for _, region := range []string{"eu-west-1", "eu-west-3"} {
		out, err := f.kms.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &primary, ReplicaRegion: aws.String(region)})
		if err != nil || out.ReplicaKeyMetadata.KeyState != types.KeyStateCreating || out.ReplicaKeyMetadata.CurrentKeyMaterialId != nil {
			t.Fatalf("ReplicateKey to %s: %v %+v", region, err, out)
		}
	}
	if _, err := f.importSym(t, f.kms, primary, random32(), nil); err != nil {
		t.Fatal(err)
	}
	o, err := f.importSym(t, f.kms, primary, random32(), newMaterial)
	if err != nil {
		t.Fatal(err)
	}
	id := *o.KeyMaterialId
	report := func(region, id string) int {
		resp, err := http.Post(f.http.URL+"/_standin/replica-imports?keyId="+primary+"&region="+region+"&keyMaterialId="+id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	steps := []struct {
		name   string
		region string // reported
		status int
		want   types.KeyMaterialState
	}{
		{"no replica reported", "", 0, types.KeyMaterialStatePendingMultiRegionImportAndRotation},
		{"eu-west-1 reported", "eu-west-1", 200, types.KeyMaterialStatePendingMultiRegionImportAndRotation},
		{"a Region with no replica", "us-east-1", 400, types.KeyMaterialStatePendingMultiRegionImportAndRotation},
		{"eu-west-3 reported", "eu-west-3", 200, types.KeyMaterialStatePendingRotation},
	}
	for _, s := range steps {
		if s.region != "" {
			if got := report(s.region, id); got != s.status {
				t.Fatalf("%s: status %d, want %d", s.name, got, s.status)
			}
		}
		if got := materialState(t, f.kms, primary, id); got != s.want {
			t.Fatalf("%s: %s, want %s", s.name, got, s.want)
		}
		_, err := f.kms.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &primary})
		if want := s.want == types.KeyMaterialStatePendingRotation; (err == nil) != want {
			t.Fatalf("%s: RotateKeyOnDemand %v", s.name, err)
		}
	}
}

// TestKnobsFromOptionsAndEnvironment: the defaults are the realistic
// ones (GET /_standin/health shows the effective settings); Options and
// the command's environment change them; bad values are refused.
func TestKnobsFromOptionsAndEnvironment(t *testing.T) {
	health := func(t *testing.T, o Options) map[string]any {
		t.Helper()
		h := httptest.NewServer(New(o))
		defer h.Close()
		resp, err := http.Get(h.URL + "/_standin/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	cases := []struct {
		name    string
		o       Options
		getenv  func(string) string
		want    [4]any // rotationDelay, staleReadWindow, replicaSyncDelay, maxOnDemandRotations
		wantErr bool
	}{
		{"defaults", Options{}, env(), [4]any{"1.5s", "750ms", "1s", 25.0}, false},
		{"options", Options{RotationDelay: 20 * time.Millisecond, StaleReadWindow: Off, ReplicaSyncDelay: 30 * time.Millisecond, MaxOnDemandRotations: 3}, env(), [4]any{"20ms", "0s", "30ms", 3.0}, false},
		{"no rotation limit", Options{MaxOnDemandRotations: -1}, env(), [4]any{"1.5s", "750ms", "1s", -1.0}, false},
		{"environment", Options{}, env(EnvRotationDelay, "200ms", EnvStaleReadWindow, "0", EnvReplicaSyncDelay, "0s", EnvMaxOnDemandRotations, "5"), [4]any{"200ms", "0s", "0s", 5.0}, false},
		{"environment: empty keeps the defaults", Options{}, env(EnvRotationDelay, " ", EnvMaxOnDemandRotations, ""), [4]any{"1.5s", "750ms", "1s", 25.0}, false},
		{"environment over options", Options{RotationDelay: time.Hour}, env(EnvRotationDelay, "2s", EnvMaxOnDemandRotations, "-1"), [4]any{"2s", "750ms", "1s", -1.0}, false},
		{"bad duration", Options{}, env(EnvStaleReadWindow, "soon"), [4]any{}, true},
		{"negative duration", Options{}, env(EnvReplicaSyncDelay, "-1s"), [4]any{}, true},
		{"zero rotations", Options{}, env(EnvMaxOnDemandRotations, "0"), [4]any{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := EnvOptions(c.o, c.getenv)
			if (err != nil) != c.wantErr {
				t.Fatalf("EnvOptions: %v, want error %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			h := health(t, o)
			got := [4]any{h["rotationDelay"], h["staleReadWindow"], h["replicaSyncDelay"], h["maxOnDemandRotations"]}
			if got != c.want {
				t.Fatalf("effective %v, want %v", got, c.want)
			}
		})
	}
	for _, c := range []struct {
		in   string
		want []RegionAddr
		bad  bool
	}{
		{"", nil, false},
		{"eu-west-1=127.0.0.1:4600, eu-west-3=127.0.0.1:4601", []RegionAddr{{"eu-west-1", "127.0.0.1:4600"}, {"eu-west-3", "127.0.0.1:4601"}}, false},
		{"eu-west-1", nil, true},
		{"eu-west-1=a:1,eu-west-1=a:2", nil, true},
	} {
		got, err := ParseReplicaRegions(c.in)
		if (err != nil) != c.bad || !slicesEqual(got, c.want) {
			t.Errorf("ParseReplicaRegions(%q) = %v, %v", c.in, got, err)
		}
	}
}

func slicesEqual(a, b []RegionAddr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDefaultsOnTheRealClock: with Options{} and the real clock (as the
// command runs), a new key is not visible to DescribeKey before the
// default stale-read window has passed, and a rotation is not seen
// complete before the default rotation delay (plus that window); both do
// become visible. Only lower bounds are asserted, so a slow machine cannot
// make it fail.
func TestDefaultsOnTheRealClock(t *testing.T) {
	t.Parallel()
	_, c := Serve(t, Options{})
	before := time.Now()
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	arn := *k.KeyMetadata.Arn
	poll := func(what string, done func() bool) time.Duration {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if done() {
				return time.Since(before)
			}
		}
		t.Fatalf("%s: not after 15s", what)
		return 0
	}
	seen := poll("DescribeKey of the new key", func() bool {
		_, err := describe(c, arn)
		if err != nil && code(err) != "NotFoundException" {
			t.Fatal(err)
		}
		return err == nil
	})
	if seen < DefaultStaleReadWindow {
		t.Fatalf("the new key was visible %s after CreateKey, before the %s stale-read window", seen, DefaultStaleReadWindow)
	}
	before = time.Now()
	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	done := poll("the rotation", func() bool { return len(rotations(t, c, arn, types.IncludeKeyMaterialRotationsOnly)) == 1 })
	if done < DefaultRotationDelay+DefaultStaleReadWindow {
		t.Fatalf("the rotation was seen complete %s after RotateKeyOnDemand, before %s", done, DefaultRotationDelay+DefaultStaleReadWindow)
	}
}

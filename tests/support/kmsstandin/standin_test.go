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

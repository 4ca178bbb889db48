package wrapping_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
)

var tmpDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "wrap-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// opensslPath finds the OpenSSL command line, the independent
// implementation that unwraps what this package wraps. Its absence is a
// failure, never a skip.
func opensslPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("OPENSSL IS MISSING: the wrap proof tests unwrap with the openssl command line (apt-get install openssl): %v", err)
	}
	return p
}

func openssl(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(opensslPath(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

var wrappingSpecs = []types.WrappingKeySpec{types.WrappingKeySpecRsa2048, types.WrappingKeySpecRsa3072, types.WrappingKeySpecRsa4096}

var specBits = map[types.WrappingKeySpec]int{
	types.WrappingKeySpecRsa2048: 2048,
	types.WrappingKeySpecRsa3072: 3072,
	types.WrappingKeySpecRsa4096: 4096,
}

// wrappingKey is a wrapping key pair: what KMS keeps (the private key, as a
// PEM file for openssl) and what it hands out (the public key DER).
type wrappingKey struct {
	priv    *rsa.PrivateKey
	pemPath string
	pubDER  []byte
}

var (
	wkMu   sync.Mutex
	wkOnce = map[types.WrappingKeySpec]*sync.Once{}
	wkKeys = map[types.WrappingKeySpec]*wrappingKey{}
)

func init() {
	for _, s := range wrappingSpecs {
		wkOnce[s] = new(sync.Once)
	}
}

// getWrappingKey returns the cached wrapping key pair of a spec, generated
// on first use (RSA_4096 generation is slow: one per run).
func getWrappingKey(t testing.TB, spec types.WrappingKeySpec) *wrappingKey {
	t.Helper()
	wkOnce[spec].Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, specBits[spec])
		if err != nil {
			panic(err)
		}
		p8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		path := filepath.Join(tmpDir, "wrapping-"+string(spec)+".pem")
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
			panic(err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			panic(err)
		}
		wkMu.Lock()
		wkKeys[spec] = &wrappingKey{priv: k, pemPath: path, pubDER: pub}
		wkMu.Unlock()
	})
	wkMu.Lock()
	defer wkMu.Unlock()
	return wkKeys[spec]
}

var materialSpecs = []types.KeySpec{
	types.KeySpecSymmetricDefault,
	types.KeySpecHmac224, types.KeySpecHmac256, types.KeySpecHmac384, types.KeySpecHmac512,
	types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096,
	types.KeySpecEccNistP256, types.KeySpecEccNistP384, types.KeySpecEccNistP521, types.KeySpecEccSecgP256k1,
}

var (
	matMu   sync.Mutex
	matOnce = map[types.KeySpec]*sync.Once{}
	mats    = map[types.KeySpec][]byte{}
)

func init() {
	for _, s := range materialSpecs {
		matOnce[s] = new(sync.Once)
	}
}

// getMaterial returns real key material of a spec, produced from a
// freshly generated key by the product's own keymaterial.FromSecret. HMAC
// material is 128 bytes, the longest KMS takes (worst case for RSAES).
func getMaterial(t testing.TB, spec types.KeySpec) []byte {
	t.Helper()
	matOnce[spec].Do(func() {
		var secret []byte
		var secretString *string
		switch spec {
		case types.KeySpecSymmetricDefault:
			secret = randBytes(32)
		case types.KeySpecHmac224, types.KeySpecHmac256, types.KeySpecHmac384, types.KeySpecHmac512:
			secret = randBytes(128)
		case types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096:
			bits := map[types.KeySpec]int{types.KeySpecRsa2048: 2048, types.KeySpecRsa3072: 3072, types.KeySpecRsa4096: 4096}[spec]
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			secret = x509.MarshalPKCS1PrivateKey(k)
		case types.KeySpecEccNistP256, types.KeySpecEccNistP384, types.KeySpecEccNistP521:
			c := map[types.KeySpec]elliptic.Curve{types.KeySpecEccNistP256: elliptic.P256(), types.KeySpecEccNistP384: elliptic.P384(), types.KeySpecEccNistP521: elliptic.P521()}[spec]
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			secret, _ = x509.MarshalECPrivateKey(k)
		case types.KeySpecEccSecgP256k1:
			s := string(openssl(t, nil, "ecparam", "-name", "secp256k1", "-genkey"))
			secretString = &s
		}
		m, err := keymaterial.FromSecret(spec, secret, secretString)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", spec, err))
		}
		matMu.Lock()
		mats[spec] = m
		matMu.Unlock()
	})
	matMu.Lock()
	defer matMu.Unlock()
	m := mats[spec]
	if m == nil {
		t.Fatalf("%s material generation failed earlier", spec)
	}
	return m
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// warmUp generates every wrapping key and material concurrently, so the
// slow RSA generations overlap.
func warmUp(t testing.TB) {
	t.Helper()
	var wg sync.WaitGroup
	for _, s := range wrappingSpecs {
		wg.Go(func() { getWrappingKey(t, s) })
	}
	for _, s := range materialSpecs {
		wg.Go(func() { getMaterial(t, s) })
	}
	wg.Wait()
}

func parsePub(t testing.TB, spec types.WrappingKeySpec) *rsa.PublicKey {
	t.Helper()
	return &getWrappingKey(t, spec).priv.PublicKey
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

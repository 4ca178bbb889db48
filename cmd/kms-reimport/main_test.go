package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The test binary doubles as the kms-reimport binary: with this variable
// set it runs main, so exit codes are those of the real process.
const runMainEnv = "KMS_REIMPORT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	code := m.Run()
	if fx.dir != "" {
		os.RemoveAll(fx.dir)
	}
	os.Exit(code)
}

// cli runs the command as a process and returns its output and exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func openssl(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("OPENSSL IS MISSING: the CLI tests unwrap with the openssl command line: %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var e bytes.Buffer
	cmd.Stderr = &e
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, e.String())
	}
	return out
}

// fixture is a wrapping key pair in the forms operators get it, and some
// material files.
type fixture struct {
	dir                         string
	privPEM                     string // wrapping private key, for openssl
	pubDER, pubPEM, pubB64      string // wrapping public key files
	symmetric                   []byte
	symRaw, symB64              string
	ecPEM                       string
	ecKey                       *ecdsa.PrivateKey
	wrapKey                     *rsa.PrivateKey
	shortSym, hmacAmbiguousFile string
}

var (
	fxOnce sync.Once
	fx     fixture
)

func getFixture(t *testing.T) fixture {
	t.Helper()
	fxOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kms-reimport-cli-")
		if err != nil {
			t.Fatal(err)
		}
		fx.dir = dir
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			t.Fatal(err)
		}
		fx.wrapKey = k
		p8, _ := x509.MarshalPKCS8PrivateKey(k)
		pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		write := func(name string, data []byte) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		fx.privPEM = write("wrapping-private.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
		fx.pubDER = write("WrappingPublicKey.bin", pub)
		fx.pubPEM = write("wrapping-public.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
		fx.pubB64 = write("PublicKey.b64", []byte(base64.StdEncoding.EncodeToString(pub)+"\n"))
		fx.symmetric = make([]byte, 32)
		rand.Read(fx.symmetric)
		fx.symRaw = write("sym.bin", fx.symmetric)
		fx.symB64 = write("sym.b64", []byte(base64.StdEncoding.EncodeToString(fx.symmetric)+"\n"))
		fx.shortSym = write("short.bin", fx.symmetric[:31])
		fx.ecKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		sec1, _ := x509.MarshalECPrivateKey(fx.ecKey)
		fx.ecPEM = write("ec.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
		fx.hmacAmbiguousFile = write("hmac.txt", []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"))
	})
	if fx.dir == "" {
		t.Fatal("fixture setup failed earlier")
	}
	return fx
}

func TestTopLevel(t *testing.T) {
	out, errOut, code := cli(t)
	if code != 2 || !strings.Contains(errOut, "Subcommands:") || !strings.Contains(errOut, "wrap") || out != "" {
		t.Fatalf("no args: code %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	for _, h := range []string{"help", "--help", "-h"} {
		out, _, code = cli(t, h)
		if code != 0 || !strings.Contains(out, "wrap ") {
			t.Fatalf("%s: code %d, %q", h, code, out)
		}
	}
	out, _, code = cli(t, "help", "wrap")
	if code != 0 || !strings.Contains(out, "--public-key FILE") {
		t.Fatalf("help wrap: %d %q", code, out)
	}
	_, errOut, code = cli(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown subcommand "frobnicate"`) {
		t.Fatalf("unknown subcommand: %d %q", code, errOut)
	}
}

func TestWrapHelp(t *testing.T) {
	out, errOut, code := cli(t, "wrap", "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("code %d stderr %q", code, errOut)
	}
	for _, flag := range []string{"--public-key", "--wrapping-algorithm", "--wrapping-key-spec", "--key-spec", "--material", "--out", "--force", "--allow-legacy-pkcs1", "Exit codes"} {
		if !strings.Contains(out, flag) {
			t.Errorf("help does not mention %s", flag)
		}
	}
}

// TestWrapUsageErrors: every bad flag, unreadable or invalid file, and
// refused combination exits 2 with a clear message on stderr and writes
// nothing.
func TestWrapUsageErrors(t *testing.T) {
	f := getFixture(t)
	out := filepath.Join(t.TempDir(), "out.bin")
	base := func(extra ...string) []string {
		return append([]string{"wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.symRaw, "--out", out}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", base("--bogus"), "flag provided but not defined: -bogus"},
		{"positional argument", base("extra"), `unexpected argument "extra"`},
		{"missing flags", []string{"wrap", "--key-spec", "SYMMETRIC_DEFAULT"}, "missing --public-key, --material, --out"},
		{"unknown key spec", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "AES_512", "--material", f.symRaw, "--out", out}, `--key-spec "AES_512": allowed: SYMMETRIC_DEFAULT`},
		{"missing public key file", []string{"wrap", "--public-key", filepath.Join(f.dir, "nope"), "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.symRaw, "--out", out}, "--public-key: open"},
		{"missing material file", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", filepath.Join(f.dir, "nope"), "--out", out}, "--material: open"},
		{"public key is not a key", []string{"wrap", "--public-key", f.symB64, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.symRaw, "--out", out}, "--public-key"},
		{"public key size mismatch", base("--wrapping-key-spec", "RSA_4096"), "3072 bits, but wrappingKeySpec RSA_4096 says 4096"},
		{"SM2 wrapping key spec", base("--wrapping-key-spec", "SM2"), "China Regions only"},
		{"material wrong length", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.shortSym, "--out", out}, "must be exactly 32 bytes"},
		{"material wrong type", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "ECC_NIST_P256", "--material", f.ecPEM, "--out", out}, "P-384"},
		{"material PEM for symmetric", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.ecPEM, "--out", out}, "raw bytes"},
		{"ambiguous material", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "HMAC_224", "--material", f.hmacAmbiguousFile, "--out", out}, "--material-encoding raw or base64"},
		{"bad encoding", base("--material-encoding", "hex"), "--material-encoding"},
		{"refused combination", []string{"wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.symRaw, "--out", out, "--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_256"}, "not supported for SYMMETRIC_DEFAULT key material"},
		{"unknown algorithm", base("--wrapping-algorithm", "AES_GCM"), `wrappingAlgorithm "AES_GCM"`},
		{"legacy without opt-in", base("--wrapping-algorithm", "RSAES_PKCS1_V1_5"), "--allow-legacy-pkcs1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := cli(t, c.args...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2\nstderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Fatalf("stderr %q does not say %q", stderr, c.want)
			}
			if stdout != "" {
				t.Fatalf("stdout not empty: %q", stdout)
			}
			if _, err := os.Stat(out); err == nil {
				t.Fatal("output written despite the error")
			}
			for _, secret := range []string{string(f.symmetric[:8]), hex.EncodeToString(f.symmetric[:8]), base64.StdEncoding.EncodeToString(f.symmetric[:6])} {
				if strings.Contains(stderr, secret) {
					t.Fatal("stderr contains material")
				}
			}
		})
	}
}

func TestWrapOutputUnwritable(t *testing.T) {
	f := getFixture(t)
	_, stderr, code := cli(t, "wrap", "--public-key", f.pubDER, "--key-spec", "SYMMETRIC_DEFAULT", "--material", f.symRaw, "--out", filepath.Join(f.dir, "no-such-dir", "out.bin"))
	if code != 1 || !strings.Contains(stderr, "--out") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
}

// TestWrapRoundTrip: successful wraps, unwrapped by OpenSSL to the same
// bytes, with the public key in every form operators have it.
func TestWrapRoundTrip(t *testing.T) {
	f := getFixture(t)
	sec1 := openssl(t, nil, "ec", "-in", f.ecPEM, "-outform", "DER")
	ecP8 := openssl(t, sec1, "pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER")
	ecSPKI := openssl(t, sec1, "ec", "-inform", "DER", "-pubout", "-outform", "DER")
	spkiSum := sha256.Sum256(ecSPKI)

	cases := []struct {
		name     string
		pub      string
		keySpec  string
		material string
		extra    []string
		alg      string
		want     []byte
	}{
		{"symmetric, DER public key, default algorithm", f.pubDER, "SYMMETRIC_DEFAULT", f.symRaw, nil, "RSAES_OAEP_SHA_256", f.symmetric},
		{"symmetric base64, base64 public key, SHA-1", f.pubB64, "SYMMETRIC_DEFAULT", f.symB64, []string{"--wrapping-algorithm", "RSAES_OAEP_SHA_1", "--wrapping-key-spec", "RSA_3072"}, "RSAES_OAEP_SHA_1", f.symmetric},
		{"EC PEM, PEM public key, default RSA_AES", f.pubPEM, "ECC_NIST_P384", f.ecPEM, nil, "RSA_AES_KEY_WRAP_SHA_256", ecP8},
		{"EC PEM, RSA_AES SHA-1", f.pubDER, "ECC_NIST_P384", f.ecPEM, []string{"--wrapping-algorithm", "RSA_AES_KEY_WRAP_SHA_1"}, "RSA_AES_KEY_WRAP_SHA_1", ecP8},
		{"symmetric, legacy PKCS1 opt-in", f.pubDER, "SYMMETRIC_DEFAULT", f.symRaw, []string{"--wrapping-algorithm", "RSAES_PKCS1_V1_5", "--allow-legacy-pkcs1"}, "RSAES_PKCS1_V1_5", f.symmetric},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "EncryptedKeyMaterial.bin")
			// A pre-existing world-readable file is replaced (--force) by a
			// 0600 one.
			if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"wrap", "--public-key", c.pub, "--key-spec", c.keySpec, "--material", c.material, "--out", out, "--force"}, c.extra...)
			stdout, stderr, code := cli(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, c.alg) || !strings.Contains(stdout, "RSA_3072") {
				t.Fatalf("summary %q does not name the algorithm and spec", stdout)
			}
			if c.keySpec == "ECC_NIST_P384" && !strings.Contains(stdout, hex.EncodeToString(spkiSum[:])) {
				t.Fatalf("summary %q lacks the public key SHA-256", stdout)
			}
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("output mode %v, want 0600", st.Mode().Perm())
			}
			ct, _ := os.ReadFile(out)
			got := unwrap(t, f, c.alg, ct)
			if !bytes.Equal(got, c.want) {
				t.Fatal("OpenSSL unwrapped other bytes")
			}
		})
	}
}

func unwrap(t *testing.T, f fixture, alg string, ct []byte) []byte {
	t.Helper()
	md := "sha256"
	if strings.HasSuffix(alg, "SHA_1") {
		md = "sha1"
	}
	oaep := func(in []byte) []byte {
		return openssl(t, in, "pkeyutl", "-decrypt", "-inkey", f.privPEM, "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:"+md, "-pkeyopt", "rsa_mgf1_md:"+md)
	}
	switch {
	case alg == "RSAES_PKCS1_V1_5":
		return openssl(t, ct, "pkeyutl", "-decrypt", "-inkey", f.privPEM, "-pkeyopt", "rsa_padding_mode:pkcs1")
	case strings.HasPrefix(alg, "RSAES_OAEP"):
		return oaep(ct)
	default:
		k := f.wrapKey.Size()
		aesKey := oaep(ct[:k])
		return openssl(t, ct[k:], "enc", "-d", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(aesKey), "-iv", "A65959A6")
	}
}

// TestRunInProcess covers the dispatch without a process, for coverage.
func TestRunInProcess(t *testing.T) {
	var o, e bytes.Buffer
	if code := run([]string{"wrap", "-h"}, &o, &e); code != 0 || !strings.Contains(o.String(), "Usage: kms-reimport wrap") {
		t.Fatalf("%d %q", code, o.String())
	}
	o.Reset()
	if code := run(nil, &o, &e); code != 2 {
		t.Fatalf("no args: %d", code)
	}
}

package keymaterial

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// openssl runs the OpenSSL command line, which these tests use as an
// independent implementation. Its absence is a failure, never a skip.
func openssl(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("OPENSSL IS MISSING: these tests need the openssl command line (apt-get install openssl): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

var (
	rsaMu   sync.Mutex
	rsaKeys = map[int]*rsa.PrivateKey{}
)

// rsaKey returns a cached RSA key of the given size (RSA_4096 generation is
// slow).
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	if k, ok := rsaKeys[bits]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[bits] = k
	return k
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// k1Key is a secp256k1 key made by OpenSSL: its SEC1 DER (with public key
// and curve), its PKCS#8 DER, its SEC1 PEM as `openssl ecparam -genkey`
// writes it (EC PARAMETERS + EC PRIVATE KEY) and its public key DER.
type k1Key struct {
	sec1, pkcs8, ecparamPEM, spki []byte
}

var (
	k1Once   sync.Once
	k1Cached k1Key
)

func secp256k1Key(t testing.TB) k1Key {
	t.Helper()
	k1Once.Do(func() {
		pemBoth := openssl(t, nil, "ecparam", "-name", "secp256k1", "-genkey")
		k1Cached.ecparamPEM = pemBoth
		k1Cached.sec1 = openssl(t, pemBoth, "ec", "-outform", "DER")
		k1Cached.pkcs8 = openssl(t, pemBoth, "pkcs8", "-topk8", "-nocrypt", "-outform", "DER")
		k1Cached.spki = openssl(t, pemBoth, "pkey", "-pubout", "-outform", "DER")
	})
	if k1Cached.pkcs8 == nil {
		t.Fatal("secp256k1 key generation failed earlier")
	}
	return k1Cached
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// vocabulary is the constant text error messages are built from: every
// string literal of the package's non-test sources, cut at format verbs
// (%s, %d, ...), plus every KMS key spec name; pieces shorter than 4
// characters (": ", " (") are left out.
var vocabulary = sync.OnceValue(func() []string {
	var out []string
	for _, ks := range types.KeySpec("").Values() {
		out = append(out, string(ks))
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	verb := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			panic(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					for _, piece := range verb.Split(s, -1) {
						if len(piece) >= 4 {
							out = append(out, piece)
						}
					}
				}
			}
			return true
		})
	}
	if len(out) < 50 {
		panic("vocabulary: too few string literals found; run the test from the package directory")
	}
	// Longest first, so a long piece is masked before its parts.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
})

// residue returns the runs of msg not covered by vocabulary: what a message
// carries beyond its own constant text (numbers, and any leaked input).
func residue(msg string) []string {
	covered := make([]bool, len(msg))
	for _, v := range vocabulary() {
		for i := 0; ; {
			j := strings.Index(msg[i:], v)
			if j < 0 {
				break
			}
			for k := i + j; k < i+j+len(v); k++ {
				covered[k] = true
			}
			i += j + 1
		}
	}
	var runs []string
	start := -1
	for i := 0; i <= len(msg); i++ {
		if i < len(msg) && !covered[i] {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			runs = append(runs, msg[start:i])
			start = -1
		}
	}
	return runs
}

// leakWindow is the window size: 8 bytes of material is 64 bits, far more
// than any number or name an error message legitimately carries.
const leakWindow = 8

// findLeak reports the first form of secret (a raw 8-byte window, its hex
// in either case, or base64 of a 6-byte window at any alignment) found in
// the residue of msg. Masking the package's constant text first keeps the
// check free of false positives when the input happens to contain words
// of the messages; a leak of random or fuzzed input escapes it only if the
// leaked bytes are themselves made of message text every few bytes.
func findLeak(msg string, secrets ...[]byte) (string, bool) {
	runs := residue(msg)
	contains := func(f string) bool {
		for _, r := range runs {
			if strings.Contains(r, f) {
				return true
			}
		}
		return false
	}
	for _, s := range secrets {
		for i := 0; i+leakWindow <= len(s); i++ {
			w := s[i : i+leakWindow]
			for _, f := range []string{string(w), hex.EncodeToString(w), strings.ToUpper(hex.EncodeToString(w))} {
				if contains(f) {
					return f, true
				}
			}
		}
		for i := 0; i+6 <= len(s); i++ {
			if f := base64.StdEncoding.EncodeToString(s[i : i+6]); contains(f) {
				return f, true
			}
		}
	}
	return "", false
}

func assertNoLeak(t testing.TB, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	if f, ok := findLeak(err.Error(), secrets...); ok {
		t.Fatalf("error message contains material (%q): %v", f, err)
	}
}

package kmsstandin

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKWPAgainstRFC5649Vectors: RFC 5649 section 6, both examples (a
// 192-bit KEK wrapping 20 octets and 7 octets), wrapped and unwrapped.
func TestKWPAgainstRFC5649Vectors(t *testing.T) {
	kek := "5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8"
	cases := []struct {
		name, key, wrapped string
	}{
		{"20 octets", "c37b7e6492584340 bed1220780894115 5068f738", "138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a"},
		{"7 octets", "466f7250617369", "afbeb0f07dfbf541 9200f2ccb50bb24f"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := kwpWrap(unhex(t, kek), unhex(t, c.key))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, unhex(t, c.wrapped)) {
				t.Fatalf("wrap: %x, want %s", got, c.wrapped)
			}
			back, err := kwpUnwrap(unhex(t, kek), unhex(t, c.wrapped))
			if err != nil || !bytes.Equal(back, unhex(t, c.key)) {
				t.Fatalf("unwrap: %x %v, want %s", back, err, c.key)
			}
		})
	}
}

// TestKWPRejectsTampering: every single-bit change, a wrong KEK, and bad
// lengths fail the integrity check (no plaintext comes back).
func TestKWPRejectsTampering(t *testing.T) {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for _, n := range []int{1, 7, 8, 9, 16, 20, 32, 121, 1217} {
		pt := make([]byte, n)
		_, _ = rand.Read(pt)
		ct, err := kwpWrap(kek, pt)
		if err != nil {
			t.Fatal(err)
		}
		if want := 8 * ((n+7)/8 + 1); len(ct) != want {
			t.Fatalf("%d octets wrap to %d, want %d", n, len(ct), want)
		}
		back, err := kwpUnwrap(kek, ct)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("%d octets: round trip failed: %v", n, err)
		}
		for bit := 0; bit < 8*len(ct); bit += 7 {
			bad := bytes.Clone(ct)
			bad[bit/8] ^= 1 << (bit % 8)
			if out, err := kwpUnwrap(kek, bad); err == nil {
				t.Fatalf("%d octets: bit %d flipped unwrapped to %x", n, bit, out)
			}
		}
		other := bytes.Clone(kek)
		other[0] ^= 1
		if _, err := kwpUnwrap(other, ct); err == nil {
			t.Fatalf("%d octets: unwrapped under another KEK", n)
		}
		if _, err := kwpUnwrap(kek, ct[:len(ct)-8]); err == nil {
			t.Fatalf("%d octets: a truncated wrapping unwrapped", n)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 8), make([]byte, 17)} {
		if _, err := kwpUnwrap(kek, bad); err == nil {
			t.Fatalf("%d octets unwrapped", len(bad))
		}
	}
	if _, err := kwpWrap(kek, nil); err == nil {
		t.Fatal("an empty plaintext wrapped")
	}
}

// TestKWPMatchesOpenSSL: OpenSSL's id-aes256-wrap-pad (a third
// implementation) wraps, the stand-in unwraps. Skipped only where no
// openssl binary is installed; the RFC vectors above always run.
func TestKWPMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	for _, n := range []int{5, 32, 1217} {
		pt := make([]byte, n)
		_, _ = rand.Read(pt)
		cmd := exec.Command("openssl", "enc", "-id-aes256-wrap-pad", "-K", hex.EncodeToString(kek), "-iv", "A65959A6")
		cmd.Stdin = bytes.NewReader(pt)
		ct, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		back, err := kwpUnwrap(kek, ct)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("%d octets wrapped by OpenSSL: unwrap %v", n, err)
		}
		mine, _ := kwpWrap(kek, pt)
		if !bytes.Equal(mine, ct) {
			t.Fatalf("%d octets: the stand-in's wrapping differs from OpenSSL's", n)
		}
	}
}

// TestStandInIsIndependentOfTheProduct: neither the stand-in, its tests
// nor its command depend on a package of the product or on a crypto
// library other than Go's standard library (in particular not tink, which
// the product wraps with).
func TestStandInIsIndependentOfTheProduct(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	const self = "github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
	cmd := exec.Command(goBin, "list", "-deps", "-test", "-f", "{{.ImportPath}} {{.Standard}}", ".", "./cmd/kms-standin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var all []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, std, _ := strings.Cut(line, " ")
		path, _, _ = strings.Cut(path, " [") // test variants: "p [p.test]"
		all = append(all, path)
		if std == "true" {
			continue
		}
		switch {
		case strings.HasPrefix(path, self):
			// the stand-in itself, its test binary and its command
		case strings.HasPrefix(path, "github.com/kms-reimport/kms-reimport"):
			t.Errorf("the stand-in depends on the product's package %s", path)
		case strings.Contains(path, "tink-crypto"), strings.HasPrefix(path, "golang.org/x/crypto"),
			strings.Contains(strings.ToLower(path), "crypto") && !strings.HasPrefix(path, "github.com/aws/"):
			t.Errorf("the stand-in depends on the non-standard crypto package %s", path)
		}
	}
	if len(all) < 10 {
		t.Fatalf("go list listed only %v", all)
	}
}

package keymaterial

import (
	"bytes"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// fuzzSpecs are the key specs a fuzz input picks from (its first
// argument, modulo the length), unsupported ones included.
var fuzzSpecs = append(SupportedKeySpecs(), types.KeySpecSm2, types.KeySpecMlDsa65, types.KeySpec("BOGUS"))

// fuzzSeeds adds valid material of every supported spec in every shape,
// and a few broken ones, without the openssl command (fuzz workers start
// often).
func fuzzSeeds(f *testing.F, add func(spec uint8, data []byte, asString bool)) {
	idx := func(ks types.KeySpec) uint8 {
		for i, s := range fuzzSpecs {
			if s == ks {
				return uint8(i)
			}
		}
		panic(ks)
	}
	add(idx(types.KeySpecSymmetricDefault), bytes.Repeat([]byte{0xA5}, 32), false)
	add(idx(types.KeySpecSymmetricDefault), []byte(b64(bytes.Repeat([]byte{7}, 32))), true)
	add(idx(types.KeySpecHmac224), bytes.Repeat([]byte{1}, 28), false)
	add(idx(types.KeySpecHmac512), []byte(b64(bytes.Repeat([]byte{3}, 100))), true)
	r := rsaKey(f, 2048)
	p8, _ := x509.MarshalPKCS8PrivateKey(r)
	add(idx(types.KeySpecRsa2048), p8, false)
	add(idx(types.KeySpecRsa2048), x509.MarshalPKCS1PrivateKey(r), false)
	add(idx(types.KeySpecRsa2048), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(r)}), true)
	for _, c := range []struct {
		ks types.KeySpec
		c  elliptic.Curve
	}{{types.KeySpecEccNistP256, elliptic.P256()}, {types.KeySpecEccNistP384, elliptic.P384()}, {types.KeySpecEccNistP521, elliptic.P521()}} {
		k := ecKey(f, c.c)
		p8, _ := x509.MarshalPKCS8PrivateKey(k)
		sec1, _ := x509.MarshalECPrivateKey(k)
		add(idx(c.ks), p8, false)
		add(idx(c.ks), sec1, false)
		add(idx(c.ks), []byte(pemOf("EC PRIVATE KEY", sec1)), true)
		add(idx(c.ks), []byte(b64(p8)), true)
	}
	scalar := bytes.Repeat([]byte{0x11}, 32)
	k1, err := marshalK1PKCS8(scalar, k1PublicPoint(scalar))
	if err != nil {
		f.Fatal(err)
	}
	add(idx(types.KeySpecEccSecgP256k1), k1, false)
	add(idx(types.KeySpecEccSecgP256k1), []byte(pemOf("PRIVATE KEY", k1)), true)
	add(idx(types.KeySpecEccNistP256), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), true)
	add(idx(types.KeySpecRsa4096), []byte{0x30, 0x03, 0x02, 0x01, 0x00}, false)
}

// decodedForms returns the input and what the package may decode it into
// (base64, PEM block contents): every form the material could leak from.
func decodedForms(data []byte) [][]byte {
	forms := [][]byte{data}
	if d, err := decodeBase64(data); err == nil {
		forms = append(forms, d)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		forms = append(forms, b.Bytes)
	}
	return forms
}

// checkResult asserts the properties every call must have: errors wrap
// ErrInvalid and carry no material; results are canonical.
func checkResult(t *testing.T, spec types.KeySpec, data, out []byte, err error) {
	t.Helper()
	if err != nil {
		if out != nil {
			t.Fatalf("both a result and an error: %v", err)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		if f, ok := findLeak(err.Error(), decodedForms(data)...); ok {
			t.Fatalf("error leaks input %q: %v", f, err)
		}
		return
	}
	s := specs[spec]
	switch s.kind {
	case kindSymmetric, kindHMAC:
		if len(out) < s.min || len(out) > s.max {
			t.Fatalf("%s: accepted %d bytes", spec, len(out))
		}
	case kindRSA, kindEC:
		again, err := FromSecret(spec, out, nil)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%s: result is not canonical PKCS#8: %v", spec, err)
		}
		if _, err := PublicKeyDER(spec, out); err != nil {
			// FromSecret does not compute secp256k1 points (variable-time
			// code runs in PublicKeyDER only), so a secp256k1 key carrying
			// a foreign (valid) point passes FromSecret and is caught here.
			if spec == types.KeySpecEccSecgP256k1 && errors.Is(err, ErrInvalid) && strings.Contains(err.Error(), "does not belong") {
				return
			}
			t.Fatalf("%s: no public key for an accepted key: %v", spec, err)
		}
	default:
		t.Fatalf("%s: accepted material for an unsupported key spec", spec)
	}
}

func FuzzFromSecret(f *testing.F) {
	fuzzSeeds(f, func(spec uint8, data []byte, asString bool) { f.Add(spec, data, asString) })
	f.Fuzz(func(t *testing.T, specIdx uint8, data []byte, asString bool) {
		spec := fuzzSpecs[int(specIdx)%len(fuzzSpecs)]
		var out []byte
		var err error
		if asString {
			s := string(data)
			out, err = FromSecret(spec, nil, &s)
		} else {
			out, err = FromSecret(spec, data, nil)
		}
		checkResult(t, spec, data, out, err)
	})
}

func FuzzFromFile(f *testing.F) {
	fuzzSeeds(f, func(spec uint8, data []byte, _ bool) { f.Add(spec, data, uint8(0)) })
	f.Fuzz(func(t *testing.T, specIdx uint8, data []byte, enc uint8) {
		spec := fuzzSpecs[int(specIdx)%len(fuzzSpecs)]
		out, err := FromFileAs(spec, data, Encoding(enc%5))
		checkResult(t, spec, data, out, err)
	})
}

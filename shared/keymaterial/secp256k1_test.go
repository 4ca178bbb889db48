package keymaterial

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known multiples of the secp256k1 generator (SEC 2 gives G; 2G and 3G are
// the widely published test points; (n-1)G is -G).
func TestSecp256k1KnownVectors(t *testing.T) {
	nMinus1 := new(big.Int).Sub(k1N, big.NewInt(1))
	negGy := new(big.Int).Sub(k1P, k1Gy)
	for _, v := range []struct {
		name   string
		k      *big.Int
		x, y   string
		fromBN bool
	}{
		{"1", big.NewInt(1), "79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", "483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", false},
		{"2", big.NewInt(2), "C6047F9441ED7D6D3045406E95C07CD85C778E4B8CEF3CA7ABAC09B95C709EE5", "1AE168FEA63DC339A3C58419466CEAEEF7F632653266D0E1236431A950CFE52A", false},
		{"3", big.NewInt(3), "F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9", "388F7B0F632DE8140FE337E62A37F3566500A99934C2231B6CB9FD7584B8E672", false},
		{"n-1", nMinus1, "79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", hex.EncodeToString(negGy.FillBytes(make([]byte, 32))), false},
	} {
		scalar := v.k.FillBytes(make([]byte, 32))
		if !k1ValidScalar(scalar) {
			t.Fatalf("%s: scalar judged invalid", v.name)
		}
		got := k1PublicPoint(scalar)
		want := append([]byte{4}, append(mustHex(t, v.x), mustHex(t, v.y)...)...)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s·G = %x, want %x", v.name, got, want)
		}
		if !k1ValidPoint(got) {
			t.Fatalf("%s·G judged off the curve", v.name)
		}
		comp := append([]byte{2 | want[64]&1}, want[1:33]...)
		if !k1ValidPoint(comp) || !samePoint(comp, want, 32) {
			t.Fatalf("%s: compressed form not recognised", v.name)
		}
		hybrid := append([]byte{6 | want[64]&1}, want[1:]...)
		if !k1ValidPoint(hybrid) || !samePoint(hybrid, want, 32) {
			t.Fatalf("%s: hybrid form not recognised", v.name)
		}
		wrongParity := append([]byte{3 ^ (want[64] & 1)}, want[1:33]...)
		if samePoint(wrongParity, want, 32) {
			t.Fatalf("%s: compressed point of the wrong parity matched", v.name)
		}
	}
	for _, bad := range [][]byte{make([]byte, 32), k1N.FillBytes(make([]byte, 32)), bytes.Repeat([]byte{0xff}, 32), make([]byte, 31)} {
		if k1ValidScalar(bad) {
			t.Fatalf("scalar %x judged valid", bad)
		}
	}
	off := k1PublicPoint(big.NewInt(5).FillBytes(make([]byte, 32)))
	off[64] ^= 1
	if k1ValidPoint(off) {
		t.Fatal("point off the curve judged valid")
	}
	if k1ValidPoint(nil) || k1ValidPoint([]byte{4, 1, 2}) || k1ValidPoint(append([]byte{2}, k1P.FillBytes(make([]byte, 32))...)) {
		t.Fatal("malformed point judged valid")
	}
}

// TestSecp256k1AgainstOpenSSL compares the computed public key of random
// OpenSSL keys with OpenSSL's.
func TestSecp256k1AgainstOpenSSL(t *testing.T) {
	for i := 0; i < 5; i++ {
		pemBoth := openssl(t, nil, "ecparam", "-name", "secp256k1", "-genkey", "-noout")
		der := openssl(t, pemBoth, "pkcs8", "-topk8", "-nocrypt", "-outform", "DER")
		spki := openssl(t, pemBoth, "pkey", "-pubout", "-outform", "DER")
		var p8 pkcs8
		if _, err := asn1Unmarshal(der, &p8); err != nil {
			t.Fatal(err)
		}
		var k ecPrivateKey
		if _, err := asn1Unmarshal(p8.PrivateKey, &k); err != nil {
			t.Fatal(err)
		}
		d := make([]byte, 32)
		copy(d[32-len(k.PrivateKey):], k.PrivateKey)
		if !bytes.Equal(k1PublicPoint(d), k.PublicKey.RightAlign()) {
			t.Fatal("public point differs from OpenSSL's")
		}
		got, err := PublicKeyDER("ECC_SECG_P256K1", der)
		if err != nil || !bytes.Equal(got, spki) {
			t.Fatalf("PublicKeyDER differs from OpenSSL's SubjectPublicKeyInfo: %v", err)
		}
	}
}

func asn1Unmarshal(b []byte, v any) ([]byte, error) { return asn1.Unmarshal(b, v) }

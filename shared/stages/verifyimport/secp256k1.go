package verifyimport

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
)

// ECDSA verification over secp256k1, which crypto/ecdsa does not offer.
// Everything here handles public data (a public key, a digest, a
// signature), so a variable-time math/big implementation is fine.
var (
	k1P, _  = new(big.Int).SetString("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F", 16)
	k1N, _  = new(big.Int).SetString("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
	k1G     = k1Affine{x: hexInt("79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"), y: hexInt("483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8")}
	oidK1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidECPK = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

func hexInt(s string) *big.Int { v, _ := new(big.Int).SetString(s, 16); return v }

// k1Affine is a point; inf marks the identity.
type k1Affine struct {
	x, y *big.Int
	inf  bool
}

func k1Sum(a, b k1Affine) k1Affine {
	switch {
	case a.inf:
		return b
	case b.inf:
		return a
	}
	var l *big.Int
	if a.x.Cmp(b.x) == 0 {
		if new(big.Int).Mod(new(big.Int).Add(a.y, b.y), k1P).Sign() == 0 {
			return k1Affine{inf: true}
		}
		num := new(big.Int).Mul(big.NewInt(3), new(big.Int).Mul(a.x, a.x))
		den := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Lsh(a.y, 1), k1P), k1P)
		l = num.Mul(num, den)
	} else {
		num := new(big.Int).Sub(b.y, a.y)
		den := new(big.Int).ModInverse(new(big.Int).Mod(new(big.Int).Sub(b.x, a.x), k1P), k1P)
		l = num.Mul(num, den)
	}
	l.Mod(l, k1P)
	x := new(big.Int).Mul(l, l)
	x.Sub(x, a.x).Sub(x, b.x).Mod(x, k1P)
	y := new(big.Int).Sub(a.x, x)
	y.Mul(y, l).Sub(y, a.y).Mod(y, k1P)
	return k1Affine{x: x, y: y}
}

func k1Times(p k1Affine, k *big.Int) k1Affine {
	acc := k1Affine{inf: true}
	for i := k.BitLen() - 1; i >= 0; i-- {
		acc = k1Sum(acc, acc)
		if k.Bit(i) == 1 {
			acc = k1Sum(acc, p)
		}
	}
	return acc
}

// k1Verify verifies a DER ECDSA signature over a digest with a
// SubjectPublicKeyInfo secp256k1 public key (uncompressed point).
func k1Verify(spki, digest, sig []byte) error {
	var pk struct {
		Algo pkix.AlgorithmIdentifier
		Pub  asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &pk); err != nil || len(rest) != 0 {
		return errors.New("secp256k1: the public key is not a SubjectPublicKeyInfo")
	}
	var curve asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(pk.Algo.Parameters.FullBytes, &curve); err != nil || !pk.Algo.Algorithm.Equal(oidECPK) || !curve.Equal(oidK1) {
		return errors.New("secp256k1: the public key is not on secp256k1")
	}
	b := pk.Pub.Bytes
	if len(b) != 65 || b[0] != 4 {
		return errors.New("secp256k1: the public key is not an uncompressed point")
	}
	q := k1Affine{x: new(big.Int).SetBytes(b[1:33]), y: new(big.Int).SetBytes(b[33:])}
	lhs := new(big.Int).Mod(new(big.Int).Mul(q.y, q.y), k1P)
	rhs := new(big.Int).Exp(q.x, big.NewInt(3), k1P)
	rhs.Add(rhs, big.NewInt(7)).Mod(rhs, k1P)
	if q.x.Cmp(k1P) >= 0 || q.y.Cmp(k1P) >= 0 || lhs.Cmp(rhs) != 0 {
		return errors.New("secp256k1: the public key is not on the curve")
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 {
		return errors.New("secp256k1: the signature is not DER (r, s)")
	}
	if rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.Cmp(k1N) >= 0 || rs.S.Cmp(k1N) >= 0 {
		return errors.New("secp256k1: r or s out of range")
	}
	d := digest
	if len(d) > 32 {
		d = d[:32]
	}
	e := new(big.Int).SetBytes(d)
	w := new(big.Int).ModInverse(rs.S, k1N)
	u1 := new(big.Int).Mod(new(big.Int).Mul(e, w), k1N)
	u2 := new(big.Int).Mod(new(big.Int).Mul(rs.R, w), k1N)
	pt := k1Sum(k1Times(k1G, u1), k1Times(q, u2))
	if pt.inf || new(big.Int).Mod(pt.x, k1N).Cmp(rs.R) != 0 {
		return errors.New("secp256k1: the signature does not verify")
	}
	return nil
}

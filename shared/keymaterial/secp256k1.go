package keymaterial

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
)

// secp256k1 (SEC 2, section 2.4.1): y² = x³ + 7 over F_p. crypto/elliptic
// does not provide it, and KMS's ECC_SECG_P256K1 key spec needs it only to
// check scalars and points and to derive the public key for PublicKeyDER.
//
// This is a plain big.Int implementation: correct but not constant-time.
// It only ever runs in PublicKeyDER (point derivation) and on public data
// (point validation); scalar range checks compare a fixed-size number.
var (
	k1P, _  = new(big.Int).SetString("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F", 16)
	k1N, _  = new(big.Int).SetString("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
	k1Gx, _ = new(big.Int).SetString("79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", 16)
	k1Gy, _ = new(big.Int).SetString("483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", 16)
	k1B     = big.NewInt(7)
)

// k1ValidScalar reports whether the 32-byte big-endian d is in [1, n-1].
func k1ValidScalar(d []byte) bool {
	if len(d) != 32 {
		return false
	}
	x := new(big.Int).SetBytes(d)
	defer wipeInt(x)
	return x.Sign() > 0 && x.Cmp(k1N) < 0
}

// k1OnCurve reports whether (x, y) is an affine point of the curve.
func k1OnCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(k1P) >= 0 || y.Sign() < 0 || y.Cmp(k1P) >= 0 {
		return false
	}
	lhs := new(big.Int).Mul(y, y)
	lhs.Mod(lhs, k1P)
	rhs := new(big.Int).Mul(x, x)
	rhs.Mul(rhs, x)
	rhs.Add(rhs, k1B)
	rhs.Mod(rhs, k1P)
	return lhs.Cmp(rhs) == 0
}

// k1ValidPoint checks an encoded public point: uncompressed (04) or hybrid
// (06/07) must lie on the curve, compressed (02/03) must have an x for
// which a point exists.
func k1ValidPoint(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	switch b[0] {
	case 4, 6, 7:
		if len(b) != 65 {
			return false
		}
		x := new(big.Int).SetBytes(b[1:33])
		y := new(big.Int).SetBytes(b[33:])
		if b[0] != 4 && (y.Bit(0) == 1) != (b[0] == 7) {
			return false
		}
		return k1OnCurve(x, y)
	case 2, 3:
		if len(b) != 33 {
			return false
		}
		x := new(big.Int).SetBytes(b[1:])
		if x.Cmp(k1P) >= 0 {
			return false
		}
		rhs := new(big.Int).Mul(x, x)
		rhs.Mul(rhs, x)
		rhs.Add(rhs, k1B)
		rhs.Mod(rhs, k1P)
		return new(big.Int).ModSqrt(rhs, k1P) != nil
	}
	return false
}

// k1Jacobian is a point in Jacobian coordinates (X/Z², Y/Z³); Z = 0 is the
// point at infinity.
type k1Jacobian struct{ x, y, z *big.Int }

func k1Double(p k1Jacobian) k1Jacobian {
	if p.z.Sign() == 0 || p.y.Sign() == 0 {
		return k1Jacobian{big.NewInt(1), big.NewInt(1), new(big.Int)}
	}
	// a = 0: dbl-2009-l.
	a := new(big.Int).Mul(p.x, p.x) // A = X²
	a.Mod(a, k1P)
	b := new(big.Int).Mul(p.y, p.y) // B = Y²
	b.Mod(b, k1P)
	c := new(big.Int).Mul(b, b) // C = B²
	c.Mod(c, k1P)
	d := new(big.Int).Add(p.x, b) // D = 2((X+B)² - A - C)
	d.Mul(d, d)
	d.Sub(d, a)
	d.Sub(d, c)
	d.Lsh(d, 1)
	d.Mod(d, k1P)
	e := new(big.Int).Mul(a, big.NewInt(3)) // E = 3A
	f := new(big.Int).Mul(e, e)             // F = E²
	x3 := new(big.Int).Sub(f, new(big.Int).Lsh(d, 1))
	x3.Mod(x3, k1P)
	y3 := new(big.Int).Sub(d, x3)
	y3.Mul(y3, e)
	y3.Sub(y3, new(big.Int).Lsh(c, 3))
	y3.Mod(y3, k1P)
	z3 := new(big.Int).Mul(p.y, p.z)
	z3.Lsh(z3, 1)
	z3.Mod(z3, k1P)
	return k1Jacobian{x3, y3, z3}
}

// k1AddAffine adds an affine point (x2, y2) to p (madd-2007-bl).
func k1AddAffine(p k1Jacobian, x2, y2 *big.Int) k1Jacobian {
	if p.z.Sign() == 0 {
		return k1Jacobian{new(big.Int).Set(x2), new(big.Int).Set(y2), big.NewInt(1)}
	}
	z1z1 := new(big.Int).Mul(p.z, p.z)
	z1z1.Mod(z1z1, k1P)
	u2 := new(big.Int).Mul(x2, z1z1)
	u2.Mod(u2, k1P)
	s2 := new(big.Int).Mul(y2, p.z)
	s2.Mul(s2, z1z1)
	s2.Mod(s2, k1P)
	h := new(big.Int).Sub(u2, p.x)
	h.Mod(h, k1P)
	r := new(big.Int).Sub(s2, p.y)
	r.Lsh(r, 1)
	r.Mod(r, k1P)
	if h.Sign() == 0 {
		if r.Sign() == 0 {
			return k1Double(p)
		}
		return k1Jacobian{big.NewInt(1), big.NewInt(1), new(big.Int)}
	}
	hh := new(big.Int).Mul(h, h)
	hh.Mod(hh, k1P)
	i := new(big.Int).Lsh(hh, 2)
	j := new(big.Int).Mul(h, i)
	j.Mod(j, k1P)
	v := new(big.Int).Mul(p.x, i)
	v.Mod(v, k1P)
	x3 := new(big.Int).Mul(r, r)
	x3.Sub(x3, j)
	x3.Sub(x3, new(big.Int).Lsh(v, 1))
	x3.Mod(x3, k1P)
	y3 := new(big.Int).Sub(v, x3)
	y3.Mul(y3, r)
	t := new(big.Int).Mul(p.y, j)
	t.Lsh(t, 1)
	y3.Sub(y3, t)
	y3.Mod(y3, k1P)
	z3 := new(big.Int).Add(p.z, h)
	z3.Mul(z3, z3)
	z3.Sub(z3, z1z1)
	z3.Sub(z3, hh)
	z3.Mod(z3, k1P)
	return k1Jacobian{x3, y3, z3}
}

// k1Mul returns k·(x, y) in affine coordinates; ok is false for the point
// at infinity.
func k1Mul(x, y, k *big.Int) (rx, ry *big.Int, ok bool) {
	acc := k1Jacobian{big.NewInt(1), big.NewInt(1), new(big.Int)}
	for i := k.BitLen() - 1; i >= 0; i-- {
		acc = k1Double(acc)
		if k.Bit(i) == 1 {
			acc = k1AddAffine(acc, x, y)
		}
	}
	return k1Affine(acc)
}

// k1Affine converts a Jacobian point to affine coordinates.
func k1Affine(p k1Jacobian) (x, y *big.Int, ok bool) {
	if p.z.Sign() == 0 {
		return nil, nil, false
	}
	zInv := new(big.Int).ModInverse(p.z, k1P)
	zInv2 := new(big.Int).Mul(zInv, zInv)
	zInv2.Mod(zInv2, k1P)
	x = new(big.Int).Mul(p.x, zInv2)
	x.Mod(x, k1P)
	y = new(big.Int).Mul(p.y, zInv2)
	y.Mul(y, zInv)
	y.Mod(y, k1P)
	return x, y, true
}

// k1PublicPoint returns d·G uncompressed (04 || X || Y) for a valid scalar.
func k1PublicPoint(scalar []byte) []byte {
	d := new(big.Int).SetBytes(scalar)
	defer wipeInt(d)
	x, y, _ := k1Mul(k1Gx, k1Gy, d)
	out := make([]byte, 65)
	out[0] = 4
	x.FillBytes(out[1:33])
	y.FillBytes(out[33:])
	return out
}

var (
	oidK1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	oidECPK = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
)

// VerifySecp256k1 verifies a DER ECDSA signature over a digest with a
// SubjectPublicKeyInfo secp256k1 public key (uncompressed point), which
// crypto/ecdsa does not offer. Public data only: variable time is fine.
func VerifySecp256k1(spki, digest, sig []byte) error {
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
	qx, qy := new(big.Int).SetBytes(b[1:33]), new(big.Int).SetBytes(b[33:])
	if !k1OnCurve(qx, qy) {
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
	// u1·G + u2·Q
	ax, ay, aok := k1Mul(k1Gx, k1Gy, u1)
	bx, by, bok := k1Mul(qx, qy, u2)
	var x *big.Int
	switch {
	case !aok && !bok:
		return errors.New("secp256k1: the signature does not verify")
	case !aok:
		x = bx
	case !bok:
		x = ax
	default:
		var ok bool
		if x, _, ok = k1Affine(k1AddAffine(k1Jacobian{ax, ay, big.NewInt(1)}, bx, by)); !ok {
			return errors.New("secp256k1: the signature does not verify")
		}
	}
	if new(big.Int).Mod(x, k1N).Cmp(rs.R) != 0 {
		return errors.New("secp256k1: the signature does not verify")
	}
	return nil
}

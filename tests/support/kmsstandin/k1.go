package kmsstandin

import (
	"crypto/rand"
	"io"
	"math/big"
)

// secp256k1 (SEC 2) in affine coordinates with math/big: slow and not
// constant-time, which is fine for a test stand-in. It is written here,
// apart from the product's own secp256k1 code, so that the stand-in checks
// the product rather than agreeing with it by construction.
var (
	k1P, _  = new(big.Int).SetString("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f", 16)
	k1N, _  = new(big.Int).SetString("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16)
	k1Gx, _ = new(big.Int).SetString("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", 16)
	k1Gy, _ = new(big.Int).SetString("483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8", 16)
)

type k1Point struct{ x, y *big.Int } // nil x: the point at infinity

func k1OnCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(k1P) >= 0 || y.Sign() < 0 || y.Cmp(k1P) >= 0 {
		return false
	}
	l := new(big.Int).Mul(y, y)
	r := new(big.Int).Exp(x, big.NewInt(3), k1P)
	r.Add(r, big.NewInt(7))
	return l.Mod(l, k1P).Cmp(r.Mod(r, k1P)) == 0
}

func k1Add(a, b k1Point) k1Point {
	if a.x == nil {
		return b
	}
	if b.x == nil {
		return a
	}
	var lambda *big.Int
	if a.x.Cmp(b.x) == 0 {
		if new(big.Int).Add(a.y, b.y).Mod(new(big.Int).Add(a.y, b.y), k1P).Sign() == 0 {
			return k1Point{}
		}
		// (3x^2) / (2y)
		num := new(big.Int).Mul(a.x, a.x)
		num.Mul(num, big.NewInt(3))
		den := new(big.Int).Lsh(a.y, 1)
		lambda = num.Mul(num, den.ModInverse(den.Mod(den, k1P), k1P))
	} else {
		num := new(big.Int).Sub(b.y, a.y)
		den := new(big.Int).Sub(b.x, a.x)
		den.Mod(den, k1P)
		lambda = num.Mul(num, den.ModInverse(den, k1P))
	}
	lambda.Mod(lambda, k1P)
	x := new(big.Int).Mul(lambda, lambda)
	x.Sub(x, a.x).Sub(x, b.x).Mod(x, k1P)
	y := new(big.Int).Sub(a.x, x)
	y.Mul(y, lambda).Sub(y, a.y).Mod(y, k1P)
	return k1Point{x, y}
}

func k1Mul(p k1Point, k *big.Int) k1Point {
	r := k1Point{}
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = k1Add(r, r)
		if k.Bit(i) == 1 {
			r = k1Add(r, p)
		}
	}
	return r
}

func k1Base(k *big.Int) k1Point { return k1Mul(k1Point{k1Gx, k1Gy}, k) }

// k1Uncompressed is 04 || X || Y.
func k1Uncompressed(p k1Point) []byte {
	out := make([]byte, 65)
	out[0] = 4
	p.x.FillBytes(out[1:33])
	p.y.FillBytes(out[33:])
	return out
}

func k1Scalar(random io.Reader) (*big.Int, error) {
	if random == nil {
		random = rand.Reader
	}
	for {
		b := make([]byte, 32)
		if _, err := io.ReadFull(random, b); err != nil {
			return nil, err
		}
		d := new(big.Int).SetBytes(b)
		if d.Sign() > 0 && d.Cmp(k1N) < 0 {
			return d, nil
		}
	}
}

// hashToInt is the leftmost bits of a digest as an integer mod n (SEC 1,
// 4.1.3 step 5).
func k1HashToInt(digest []byte) *big.Int {
	if len(digest) > 32 {
		digest = digest[:32]
	}
	return new(big.Int).SetBytes(digest)
}

// k1Sign is ECDSA over secp256k1 with a random nonce.
func k1Sign(d *big.Int, digest []byte) (r, s *big.Int, err error) {
	e := k1HashToInt(digest)
	for {
		k, err := k1Scalar(nil)
		if err != nil {
			return nil, nil, err
		}
		R := k1Base(k)
		r = new(big.Int).Mod(R.x, k1N)
		if r.Sign() == 0 {
			continue
		}
		s = new(big.Int).Mul(r, d)
		s.Add(s, e)
		s.Mul(s, new(big.Int).ModInverse(k, k1N))
		s.Mod(s, k1N)
		if s.Sign() != 0 {
			return r, s, nil
		}
	}
}

// k1Verify checks an ECDSA signature over secp256k1.
func k1Verify(pub k1Point, digest []byte, r, s *big.Int) bool {
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(k1N) >= 0 || s.Cmp(k1N) >= 0 {
		return false
	}
	e := k1HashToInt(digest)
	w := new(big.Int).ModInverse(s, k1N)
	u1 := new(big.Int).Mul(e, w)
	u1.Mod(u1, k1N)
	u2 := new(big.Int).Mul(r, w)
	u2.Mod(u2, k1N)
	X := k1Add(k1Base(u1), k1Mul(pub, u2))
	if X.x == nil {
		return false
	}
	return new(big.Int).Mod(X.x, k1N).Cmp(r) == 0
}

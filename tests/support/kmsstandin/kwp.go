package kmsstandin

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// AES key wrap with padding (RFC 5649, "KWP"), written here from the RFC on
// crypto/aes alone so that the stand-in does not share a KWP
// implementation (or its bugs) with the product, which wraps with tink's.
// RFC 5649 extends the RFC 3394 key wrap: an alternative initial value
// carrying the plaintext length, zero padding to a multiple of 8 octets,
// and a single AES block operation when the padded plaintext is 8 octets.
// kwp_test.go checks it against the RFC's section 6 examples.

// kwpAIVPrefix is the constant high half of the alternative initial value
// (RFC 5649 section 3).
var kwpAIVPrefix = [4]byte{0xA6, 0x59, 0x59, 0xA6}

var errKWP = errors.New("kwp: integrity check failed")

// kwpWrap wraps plaintext (1 to 2^32-1 octets) under kek (16, 24 or 32
// octets), RFC 5649 section 4.1.
func kwpWrap(kek, plaintext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	m := len(plaintext)
	if m == 0 || uint64(m) > 0xFFFFFFFF {
		return nil, errors.New("kwp: plaintext must be 1 to 2^32-1 octets")
	}
	// 1) AIV = A65959A6 || MLI (32-bit big-endian length in octets).
	var aiv [8]byte
	copy(aiv[:4], kwpAIVPrefix[:])
	binary.BigEndian.PutUint32(aiv[4:], uint32(m))
	// 2) Pad with zeros to a multiple of 8 octets.
	n := (m + 7) / 8
	p := make([]byte, 8*n)
	copy(p, plaintext)
	// 3) One block: C = ENC(K, AIV | P[1]).
	if n == 1 {
		out := make([]byte, 16)
		copy(out, aiv[:])
		copy(out[8:], p)
		b.Encrypt(out, out)
		return out, nil
	}
	// Otherwise the RFC 3394 wrapping process W with AIV as initial value.
	a := aiv
	r := p // R[1..n], 8 octets each
	var buf [16]byte
	for j := 0; j <= 5; j++ {
		for i := 1; i <= n; i++ {
			copy(buf[:8], a[:])
			copy(buf[8:], r[8*(i-1):8*i])
			b.Encrypt(buf[:], buf[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(buf[:8])^t)
			copy(r[8*(i-1):8*i], buf[8:])
		}
	}
	out := make([]byte, 0, 8*(n+1))
	out = append(out, a[:]...)
	return append(out, r...), nil
}

// kwpUnwrap reverses kwpWrap and checks the result, RFC 5649 section 4.2:
// the AIV's constant half, a length within the last block and zero
// padding. Any failure is the same error.
func kwpUnwrap(kek, ciphertext []byte) ([]byte, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext)%8 != 0 || len(ciphertext) < 16 {
		return nil, errKWP
	}
	n := len(ciphertext)/8 - 1
	var a [8]byte
	var p []byte
	if n == 1 {
		var buf [16]byte
		b.Decrypt(buf[:], ciphertext)
		copy(a[:], buf[:8])
		p = append([]byte(nil), buf[8:]...)
	} else {
		// The RFC 3394 unwrapping process W^-1.
		copy(a[:], ciphertext[:8])
		p = append([]byte(nil), ciphertext[8:]...)
		var buf [16]byte
		for j := 5; j >= 0; j-- {
			for i := n; i >= 1; i-- {
				t := uint64(n*j + i)
				binary.BigEndian.PutUint64(buf[:8], binary.BigEndian.Uint64(a[:])^t)
				copy(buf[8:], p[8*(i-1):8*i])
				b.Decrypt(buf[:], buf[:])
				copy(a[:], buf[:8])
				copy(p[8*(i-1):8*i], buf[8:])
			}
		}
	}
	// Integrity: constant half, 8*(n-1) < MLI <= 8*n, zero padding.
	ok := subtle.ConstantTimeCompare(a[:4], kwpAIVPrefix[:])
	mli := int(binary.BigEndian.Uint32(a[4:]))
	if mli <= 8*(n-1) || mli > 8*n {
		ok = 0
		mli = 8 * n
	}
	var pad byte
	for _, c := range p[mli:] {
		pad |= c
	}
	if ok != 1 || pad != 0 {
		clear(p)
		return nil, errKWP
	}
	return p[:mli], nil
}

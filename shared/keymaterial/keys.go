package keymaterial

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// curveInfo names a curve KMS imports keys on.
type curveInfo struct {
	name  string // as people say it, for messages
	oid   asn1.ObjectIdentifier
	size  int            // scalar and coordinate size in bytes
	curve elliptic.Curve // nil for secp256k1, which crypto/elliptic lacks
}

var (
	oidRSA         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAPSS      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidEd25519     = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidX25519      = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidSM2Curve    = asn1.ObjectIdentifier{1, 2, 156, 10197, 1, 301}
	oidP224        = asn1.ObjectIdentifier{1, 3, 132, 0, 33}

	curveP256      = &curveInfo{name: "P-256 (secp256r1)", oid: asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, size: 32, curve: elliptic.P256()}
	curveP384      = &curveInfo{name: "P-384 (secp384r1)", oid: asn1.ObjectIdentifier{1, 3, 132, 0, 34}, size: 48, curve: elliptic.P384()}
	curveP521      = &curveInfo{name: "P-521 (secp521r1)", oid: asn1.ObjectIdentifier{1, 3, 132, 0, 35}, size: 66, curve: elliptic.P521()}
	curveSecp256k1 = &curveInfo{name: "secp256k1", oid: asn1.ObjectIdentifier{1, 3, 132, 0, 10}, size: 32}

	knownCurves = []*curveInfo{curveP256, curveP384, curveP521, curveSecp256k1}
)

func curveByOID(oid asn1.ObjectIdentifier) *curveInfo {
	for _, c := range knownCurves {
		if c.oid.Equal(oid) {
			return c
		}
	}
	return nil
}

// describeCurveOID names a curve the key spec does not take, without
// quoting the input (only curves known here are named).
func describeCurveOID(oid asn1.ObjectIdentifier) string {
	if c := curveByOID(oid); c != nil {
		return c.name
	}
	switch {
	case oid.Equal(oidSM2Curve):
		return "SM2"
	case oid.Equal(oidP224):
		return "P-224"
	}
	return "a curve KMS does not import"
}

// The ASN.1 shapes, as RFC 5208 (PKCS#8) and RFC 5915 (SEC1) define them.
type pkcs8 struct {
	Version    int
	Algo       pkix.AlgorithmIdentifier
	PrivateKey []byte
	// Optional attributes [0] and, in version 1, a public key [1] may
	// follow; encoding/asn1 ignores trailing elements of a SEQUENCE.
}

type ecPrivateKey struct {
	Version    int
	PrivateKey []byte
	Parameters asn1.RawValue  `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString `asn1:"optional,explicit,tag:1"`
}

type format int

const (
	formatAny format = iota
	formatPKCS8
	formatPKCS1
	formatSEC1
)

// parsed is an asymmetric private key read from any accepted form.
type parsed struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey // NIST curves
	// secp256k1, which crypto/ecdsa does not support: the scalar (size
	// bytes, big-endian) and the public point the input carried, if any.
	k1Scalar []byte
	k1Public []byte
	curve    *curveInfo
}

func (p *parsed) wipe() {
	if p.rsa != nil {
		wipeInt(p.rsa.D)
		for _, q := range p.rsa.Primes {
			wipeInt(q)
		}
		wipeInt(p.rsa.Precomputed.Dp)
		wipeInt(p.rsa.Precomputed.Dq)
		wipeInt(p.rsa.Precomputed.Qinv)
	}
	if p.ec != nil {
		//lint:ignore SA1019 D is deprecated but still populated: wipe the secret scalar.
		wipeInt(p.ec.D)
	}
	Zero(p.k1Scalar)
}

// wipeInt overwrites the words of a big.Int holding secret data (best
// effort: copies made inside the standard library are out of reach).
func wipeInt(x *big.Int) {
	if x != nil {
		clear(x.Bits())
		x.SetInt64(0)
	}
}

// parsePrivateKey reads a DER private key of the given format (formatAny:
// PKCS#8, PKCS#1 or SEC1, whichever parses), checks it against keySpec and
// returns it as PKCS#8 DER.
func parsePrivateKey(keySpec types.KeySpec, s spec, der []byte, what string, f format) ([]byte, error) {
	p, err := parseAny(keySpec, s, der, what, f)
	if err != nil {
		return nil, err
	}
	defer p.wipe()
	if err := p.matches(keySpec, s, what); err != nil {
		return nil, err
	}
	return p.marshalPKCS8(keySpec)
}

func parseAny(keySpec types.KeySpec, s spec, der []byte, what string, f format) (*parsed, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: %s: %s is empty", ErrInvalid, keySpec, what)
	}
	if der[0] != 0x30 {
		return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a DER private key (no ASN.1 SEQUENCE); %s material must be a private key in PKCS#8, PKCS#1 or SEC1", ErrInvalid, keySpec, what, len(der), keySpec)
	}
	switch f {
	case formatPKCS8:
		return parsePKCS8(keySpec, s, der, what)
	case formatPKCS1:
		return parsePKCS1(keySpec, der, what)
	case formatSEC1:
		return parseSEC1(keySpec, s, der, what, nil)
	}
	// Tell the three shapes apart by their second element: PKCS#8 has an
	// AlgorithmIdentifier SEQUENCE, PKCS#1 an INTEGER (the modulus), SEC1
	// an OCTET STRING (the scalar).
	var elems []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &elems)
	if err != nil || len(rest) != 0 || len(elems) < 2 {
		return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a DER private key in PKCS#8, PKCS#1 or SEC1", ErrInvalid, keySpec, what, len(der))
	}
	switch second := elems[1]; {
	case second.Class == asn1.ClassUniversal && second.Tag == asn1.TagSequence:
		return parsePKCS8(keySpec, s, der, what)
	case second.Class == asn1.ClassUniversal && second.Tag == asn1.TagInteger:
		return parsePKCS1(keySpec, der, what)
	case second.Class == asn1.ClassUniversal && second.Tag == asn1.TagOctetString:
		return parseSEC1(keySpec, s, der, what, nil)
	}
	return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a DER private key in PKCS#8, PKCS#1 or SEC1", ErrInvalid, keySpec, what, len(der))
}

func parsePKCS8(keySpec types.KeySpec, s spec, der []byte, what string) (*parsed, error) {
	var k pkcs8
	rest, err := asn1.Unmarshal(der, &k)
	// encoding/asn1 copies OCTET STRING contents: zero the copy.
	defer Zero(k.PrivateKey)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a well-formed DER PKCS#8 private key", ErrInvalid, keySpec, what, len(der))
	}
	if k.Version != 0 && k.Version != 1 {
		return nil, fmt.Errorf("%w: %s: %s is PKCS#8 of an unknown version", ErrInvalid, keySpec, what)
	}
	algo := k.Algo.Algorithm
	switch {
	case algo.Equal(oidRSA):
		return parsePKCS1(keySpec, k.PrivateKey, what+" (PKCS#8)")
	case algo.Equal(oidECPublicKey):
		params := k.Algo.Parameters
		if params.Class != asn1.ClassUniversal || params.Tag != asn1.TagOID {
			return nil, fmt.Errorf("%w: %s: %s is an EC key without a named curve (explicit or missing curve parameters); KMS imports named curves only", ErrInvalid, keySpec, what)
		}
		var oid asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(params.FullBytes, &oid); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: %s: %s has a malformed curve identifier", ErrInvalid, keySpec, what)
		}
		return parseSEC1(keySpec, s, k.PrivateKey, what+" (PKCS#8)", oid)
	case algo.Equal(oidRSAPSS):
		return nil, fmt.Errorf("%w: %s: %s is an RSASSA-PSS key (id-RSASSA-PSS); KMS imports rsaEncryption keys (re-encode it as a plain RSA key)", ErrInvalid, keySpec, what)
	case algo.Equal(oidEd25519), algo.Equal(oidX25519):
		return nil, fmt.Errorf("%w: %s: %s is an Ed25519/X25519 key; KMS does not import it", ErrInvalid, keySpec, what)
	}
	return nil, fmt.Errorf("%w: %s: %s is a PKCS#8 key of an algorithm other than RSA or EC", ErrInvalid, keySpec, what)
}

func parsePKCS1(keySpec types.KeySpec, der []byte, what string) (*parsed, error) {
	k, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		// Not wrapped: asn1 errors can quote tags and lengths of the input.
		return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a valid RSA private key (PKCS#1 structure or key consistency check failed)", ErrInvalid, keySpec, what, len(der))
	}
	return &parsed{rsa: k}, nil
}

// parseSEC1 reads an ECPrivateKey (RFC 5915). curveOID is the curve named
// by an enclosing PKCS#8, or nil; a SEC1 key with no curve at all takes
// keySpec's curve.
func parseSEC1(keySpec types.KeySpec, s spec, der []byte, what string, curveOID asn1.ObjectIdentifier) (*parsed, error) {
	var k ecPrivateKey
	rest, err := asn1.Unmarshal(der, &k)
	// encoding/asn1 copies OCTET STRING contents: zero the copy.
	defer Zero(k.PrivateKey)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: %s: %s (%d bytes) is not a well-formed DER SEC1 EC private key", ErrInvalid, keySpec, what, len(der))
	}
	if k.Version != 1 {
		return nil, fmt.Errorf("%w: %s: %s is an EC private key of an unknown version", ErrInvalid, keySpec, what)
	}
	c, err := sec1Curve(keySpec, s, k.Parameters, what, curveOID)
	if err != nil {
		return nil, err
	}
	scalar, err := sec1Scalar(keySpec, c, k.PrivateKey, what)
	if err != nil {
		return nil, err
	}
	if c == curveSecp256k1 {
		return parsedK1(keySpec, c, scalar, k.PublicKey, what)
	}
	return parsedNIST(keySpec, c, scalar, k.PublicKey, what)
}

// sec1Curve is the curve of a SEC1 key: the one its parameters name, the
// one the enclosing PKCS#8 named (curveOID, when not nil; both must agree),
// or, with neither, the key spec's.
func sec1Curve(keySpec types.KeySpec, s spec, params asn1.RawValue, what string, curveOID asn1.ObjectIdentifier) (*curveInfo, error) {
	var inner asn1.ObjectIdentifier
	if len(params.FullBytes) != 0 {
		if params.Class != asn1.ClassContextSpecific || params.Tag != 0 {
			return nil, fmt.Errorf("%w: %s: %s has malformed EC parameters", ErrInvalid, keySpec, what)
		}
		if rest, err := asn1.Unmarshal(params.Bytes, &inner); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: %s: %s is an EC key with explicit (unnamed) curve parameters; KMS imports named curves only", ErrInvalid, keySpec, what)
		}
	}
	oid := curveOID
	switch {
	case oid == nil && inner == nil:
		if s.kind != kindEC {
			return nil, fmt.Errorf("%w: %s material must be an RSA private key; %s is an EC private key", ErrInvalid, keySpec, what)
		}
		oid = s.curve.oid
	case oid == nil:
		oid = inner
	case inner != nil && !inner.Equal(oid):
		return nil, fmt.Errorf("%w: %s: %s names two different curves (PKCS#8 and SEC1 parameters disagree)", ErrInvalid, keySpec, what)
	}
	c := curveByOID(oid)
	if c == nil {
		return nil, fmt.Errorf("%w: %s: %s is an EC private key on %s", ErrInvalid, keySpec, what, describeCurveOID(oid))
	}
	return c, nil
}

// sec1Scalar is the private scalar d as exactly c.size big-endian bytes (a
// new buffer: the caller zeroes it). Keys with leading zeros stripped
// (older OpenSSL) or added are tolerated, as crypto/x509 does.
func sec1Scalar(keySpec types.KeySpec, c *curveInfo, d []byte, what string) ([]byte, error) {
	for len(d) > c.size && d[0] == 0 {
		d = d[1:]
	}
	if len(d) > c.size {
		return nil, fmt.Errorf("%w: %s: %s has a %d-byte private scalar; a %s scalar is %d bytes", ErrInvalid, keySpec, what, len(d), c.name, c.size)
	}
	scalar := make([]byte, c.size)
	copy(scalar[c.size-len(d):], d)
	return scalar, nil
}

// parsedK1 is a secp256k1 key from its scalar (kept, not copied) and the
// public point the input carried, if any, which must be a valid point.
func parsedK1(keySpec types.KeySpec, c *curveInfo, scalar []byte, public asn1.BitString, what string) (*parsed, error) {
	if !k1ValidScalar(scalar) {
		Zero(scalar)
		return nil, fmt.Errorf("%w: %s: %s has a secp256k1 private scalar outside [1, n-1]", ErrInvalid, keySpec, what)
	}
	p := &parsed{curve: c, k1Scalar: scalar}
	if public.BitLength > 0 {
		pub := public.RightAlign()
		if !k1ValidPoint(pub) {
			p.wipe()
			return nil, fmt.Errorf("%w: %s: %s carries a public key that is not a valid secp256k1 point", ErrInvalid, keySpec, what)
		}
		p.k1Public = append([]byte(nil), pub...)
	}
	return p, nil
}

// parsedNIST is a key on a NIST curve from its scalar (zeroed here) and the
// public point the input carried, if any, which must be the key's own.
func parsedNIST(keySpec types.KeySpec, c *curveInfo, scalar []byte, public asn1.BitString, what string) (*parsed, error) {
	key, err := ecdsa.ParseRawPrivateKey(c.curve, scalar)
	Zero(scalar)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s has a %s private scalar outside [1, n-1]", ErrInvalid, keySpec, what, c.name)
	}
	p := &parsed{curve: c, ec: key}
	if public.BitLength > 0 {
		computed, err := key.PublicKey.Bytes()
		if err != nil || !samePoint(public.RightAlign(), computed, c.size) {
			p.wipe()
			return nil, fmt.Errorf("%w: %s: %s carries a public key that does not belong to its private key", ErrInvalid, keySpec, what)
		}
	}
	return p, nil
}

// samePoint reports whether the encoded point got (uncompressed 04,
// compressed 02/03 or hybrid 06/07) is the uncompressed point want.
func samePoint(got, want []byte, size int) bool {
	if len(want) != 1+2*size || want[0] != 4 || len(got) == 0 {
		return false
	}
	x, y := want[1:1+size], want[1+size:]
	odd := y[size-1]&1 == 1
	switch got[0] {
	case 4:
		return bytes.Equal(got, want)
	case 2, 3:
		return len(got) == 1+size && bytes.Equal(got[1:], x) && (got[0] == 3) == odd
	case 6, 7:
		return len(got) == 1+2*size && bytes.Equal(got[1:], want[1:]) && (got[0] == 7) == odd
	}
	return false
}

// matches checks the parsed key against keySpec: kind, modulus size and
// prime count, or curve.
func (p *parsed) matches(keySpec types.KeySpec, s spec, what string) error {
	switch s.kind {
	case kindRSA:
		if p.rsa == nil {
			return fmt.Errorf("%w: %s material must be an RSA private key; %s is an EC private key on %s", ErrInvalid, keySpec, what, p.curve.name)
		}
		if bits := p.rsa.N.BitLen(); bits != s.bits {
			return fmt.Errorf("%w: %s material must be an RSA key with a %d-bit modulus; %s has a %d-bit modulus", ErrInvalid, keySpec, s.bits, what, bits)
		}
		if n := len(p.rsa.Primes); n != 2 {
			return fmt.Errorf("%w: %s: %s is a multi-prime RSA key (%d primes); KMS imports two-prime keys only", ErrInvalid, keySpec, what, n)
		}
	case kindEC:
		if p.rsa != nil {
			return fmt.Errorf("%w: %s material must be an EC private key on %s; %s is an RSA private key (%d bits)", ErrInvalid, keySpec, s.curve.name, what, p.rsa.N.BitLen())
		}
		if p.curve != s.curve {
			return fmt.Errorf("%w: %s material must be an EC private key on %s; %s is on %s", ErrInvalid, keySpec, s.curve.name, what, p.curve.name)
		}
	default:
		return fmt.Errorf("%w: %s material is raw bytes, not a private key", ErrInvalid, keySpec)
	}
	return nil
}

// marshalPKCS8 encodes the key as PKCS#8 v0 DER, as KMS imports it.
func (p *parsed) marshalPKCS8(keySpec types.KeySpec) ([]byte, error) {
	var der []byte
	var err error
	switch {
	case p.rsa != nil:
		der, err = x509.MarshalPKCS8PrivateKey(p.rsa)
	case p.ec != nil:
		der, err = x509.MarshalPKCS8PrivateKey(p.ec)
	case p.k1Scalar != nil:
		der, err = marshalK1PKCS8(p.k1Scalar, p.k1Public)
	default:
		return nil, fmt.Errorf("%w: %s: no key", ErrInvalid, keySpec)
	}
	if err != nil {
		// Marshalling a key just parsed does not fail; say so without
		// quoting anything.
		return nil, fmt.Errorf("%w: %s: re-encoding the key as PKCS#8 failed", ErrInvalid, keySpec)
	}
	return der, nil
}

func marshalK1PKCS8(scalar, public []byte) ([]byte, error) {
	inner := ecPrivateKey{Version: 1, PrivateKey: scalar}
	if public != nil {
		inner.PublicKey = asn1.BitString{Bytes: public, BitLength: 8 * len(public)}
	}
	innerDER, err := asn1.Marshal(inner)
	if err != nil {
		return nil, err
	}
	defer Zero(innerDER)
	params, err := asn1.Marshal(curveSecp256k1.oid)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pkcs8{
		Version:    0,
		Algo:       pkix.AlgorithmIdentifier{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}},
		PrivateKey: innerDER,
	})
}

// PublicKeyDER returns the DER SubjectPublicKeyInfo of the public key that
// belongs to an asymmetric private key (PKCS#8 DER, as FromSecret returns
// it), to compare with what KMS GetPublicKey returns after the import. EC
// points are uncompressed. For secp256k1 the point is computed here (with a
// variable-time big.Int implementation: call this only where timing is not
// observable by an attacker) and, if the PKCS#8 carries a public key, it
// must be that point.
func PublicKeyDER(keySpec types.KeySpec, pkcs8DER []byte) ([]byte, error) {
	s, err := lookup(keySpec)
	if err != nil {
		return nil, err
	}
	if s.kind != kindRSA && s.kind != kindEC {
		return nil, fmt.Errorf("%w: %s is not an asymmetric key spec; it has no public key", ErrInvalid, keySpec)
	}
	p, err := parseAny(keySpec, s, pkcs8DER, "the PKCS#8 key", formatPKCS8)
	if err != nil {
		return nil, err
	}
	defer p.wipe()
	if err := p.matches(keySpec, s, "the PKCS#8 key"); err != nil {
		return nil, err
	}
	switch {
	case p.rsa != nil:
		return x509.MarshalPKIXPublicKey(&p.rsa.PublicKey)
	case p.ec != nil:
		return x509.MarshalPKIXPublicKey(&p.ec.PublicKey)
	}
	point := k1PublicPoint(p.k1Scalar)
	if p.k1Public != nil && !samePoint(p.k1Public, point, curveSecp256k1.size) {
		return nil, fmt.Errorf("%w: %s: the PKCS#8 key carries a public key that does not belong to its private key", ErrInvalid, keySpec)
	}
	params, err := asn1.Marshal(curveSecp256k1.oid)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{
		Algo:      pkix.AlgorithmIdentifier{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}},
		PublicKey: asn1.BitString{Bytes: point, BitLength: 8 * len(point)},
	})
}

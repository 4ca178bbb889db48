package kmsstandin

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"hash"
	"math/big"
	"slices"
	"sort"
	"strings"
)

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// privateKey is an imported (or generated) asymmetric private key.
type privateKey struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	k1d   *big.Int
	k1pub k1Point
	spki  []byte
}

// identity is what makes two encodings of one private key the same
// material: the modulus and private exponent, or the private scalar.
func (p *privateKey) identity() []byte {
	switch {
	case p.rsa != nil:
		return append(p.rsa.N.Bytes(), p.rsa.D.Bytes()...)
	case p.ec != nil:
		b, _ := p.ec.Bytes()
		return b
	}
	return p.k1d.FillBytes(make([]byte, 32))
}

func sha256Sum(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// parsePrivate reads PKCS#8 DER (what KMS imports for asymmetric keys)
// and checks it fits keySpec. Its errors describe shapes, never content.
func parsePrivate(keySpec string, der []byte) (*privateKey, *apiError) {
	info := keySpecs[keySpec]
	any, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if info.curve == "secp256k1" {
			return parseK1PKCS8(der)
		}
		return nil, errf(codeValidation, "The key material for a %s key must be a PKCS#8 (DER) private key; it does not parse as one.", keySpec)
	}
	switch k := any.(type) {
	case *rsa.PrivateKey:
		if info.class != "rsa" {
			return nil, errf(codeValidation, "The key material is an RSA private key; %s needs an ECC private key on %s.", keySpec, info.curve)
		}
		if k.N.BitLen() != info.bits || len(k.Primes) != 2 {
			return nil, errf(codeValidation, "The key material is a %d-bit RSA key with %d primes; %s needs a two-prime %d-bit key.", k.N.BitLen(), len(k.Primes), keySpec, info.bits)
		}
		spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, errf(codeValidation, "The RSA public key cannot be encoded.")
		}
		return &privateKey{rsa: k, spki: spki}, nil
	case *ecdsa.PrivateKey:
		name := k.Curve.Params().Name
		if info.class != "ecc" || name != info.curve {
			return nil, errf(codeValidation, "The key material is an ECC private key on %s; %s does not take it.", name, keySpec)
		}
		spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, errf(codeValidation, "The ECC public key cannot be encoded.")
		}
		return &privateKey{ec: k, spki: spki}, nil
	}
	return nil, errf(codeValidation, "The key material is a %T private key; %s does not take it.", any, keySpec)
}

type pkcs8 struct {
	Version    int
	Algo       pkix.AlgorithmIdentifier
	PrivateKey []byte
	Attributes asn1.RawValue  `asn1:"optional,tag:0"`
	PublicKey  asn1.BitString `asn1:"optional,tag:1"`
}

type ecPrivateKey struct {
	Version    int
	PrivateKey []byte
	Curve      asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey  asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

func parseK1PKCS8(der []byte) (*privateKey, *apiError) {
	bad := func(why string) *apiError {
		return errf(codeValidation, "The key material for an ECC_SECG_P256K1 key must be a PKCS#8 private key on secp256k1: %s.", why)
	}
	var p pkcs8
	if rest, err := asn1.Unmarshal(der, &p); err != nil || len(rest) != 0 {
		return nil, bad("it does not parse as PKCS#8")
	}
	if !p.Algo.Algorithm.Equal(oidECPublicKey) {
		return nil, bad("it is not an EC key")
	}
	var curve asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(p.Algo.Parameters.FullBytes, &curve); err != nil || !curve.Equal(oidSecp256k1) {
		return nil, bad("the key's curve is not secp256k1")
	}
	var ec ecPrivateKey
	if rest, err := asn1.Unmarshal(p.PrivateKey, &ec); err != nil || len(rest) != 0 || ec.Version != 1 {
		return nil, bad("the inner ECPrivateKey does not parse")
	}
	defer clear(ec.PrivateKey)
	if len(ec.Curve) > 0 && !ec.Curve.Equal(oidSecp256k1) {
		return nil, bad("the inner key names another curve")
	}
	if len(ec.PrivateKey) != 32 {
		return nil, bad(fmt.Sprintf("the private key is %d bytes, not 32", len(ec.PrivateKey)))
	}
	d := new(big.Int).SetBytes(ec.PrivateKey)
	if d.Sign() == 0 || d.Cmp(k1N) >= 0 {
		return nil, bad("the private scalar is out of range")
	}
	pub := k1Base(d)
	for _, given := range [][]byte{ec.PublicKey.Bytes, p.PublicKey.Bytes} {
		if len(given) == 0 {
			continue
		}
		want := k1Uncompressed(pub)
		ok := bytes.Equal(given, want)
		if len(given) == 33 {
			ok = given[0] == byte(2+pub.y.Bit(0)) && bytes.Equal(given[1:], want[1:33])
		}
		if !ok {
			return nil, bad("the public key it carries does not belong to its private key")
		}
	}
	spki, _ := k1SPKI(pub)
	return &privateKey{k1d: d, k1pub: pub, spki: spki}, nil
}

func k1SPKI(pub k1Point) ([]byte, error) {
	params, err := asn1.Marshal(oidSecp256k1)
	if err != nil {
		return nil, err
	}
	pt := k1Uncompressed(pub)
	return asn1.Marshal(struct {
		Algo      pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{pkix.AlgorithmIdentifier{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}}, asn1.BitString{Bytes: pt, BitLength: 8 * len(pt)}})
}

func k1PKCS8(d *big.Int) ([]byte, error) {
	pub := k1Uncompressed(k1Base(d))
	inner, err := asn1.Marshal(ecPrivateKey{Version: 1, PrivateKey: d.FillBytes(make([]byte, 32)), PublicKey: asn1.BitString{Bytes: pub, BitLength: 8 * len(pub)}})
	if err != nil {
		return nil, err
	}
	params, _ := asn1.Marshal(oidSecp256k1)
	return asn1.Marshal(pkcs8{Algo: pkix.AlgorithmIdentifier{Algorithm: oidECPublicKey, Parameters: asn1.RawValue{FullBytes: params}}, PrivateKey: inner})
}

// generateMaterial makes material for a key with origin AWS_KMS.
func generateMaterial(spec string) ([]byte, error) {
	info := keySpecs[spec]
	switch info.class {
	case "symmetric":
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	case "hmac":
		b := make([]byte, info.hmacMin)
		_, err := rand.Read(b)
		return b, err
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, info.bits)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKCS8PrivateKey(k)
	}
	var c elliptic.Curve
	switch info.curve {
	case "P-256":
		c = elliptic.P256()
	case "P-384":
		c = elliptic.P384()
	case "P-521":
		c = elliptic.P521()
	default:
		d, err := k1Scalar(nil)
		if err != nil {
			return nil, err
		}
		return k1PKCS8(d)
	}
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKCS8PrivateKey(k)
}

// Symmetric ciphertext: magic, key id, material id, nonce, AES-GCM output.
// The encryption context (sorted) and key id are authenticated.
const blobMagic = "KMSSTANDIN1"

func contextAAD(keyID string, ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString(keyID)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%d:%s%d:%s", len(k), k, len(ec[k]), ec[k])
	}
	return b.Bytes()
}

type cryptIn struct {
	KeyId               string
	Plaintext           []byte
	CiphertextBlob      []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
}

func oaepHash(alg string) hash.Hash {
	if alg == "RSAES_OAEP_SHA_1" {
		return sha1.New()
	}
	return sha256.New()
}

func (s *Server) encrypt(body []byte, e *Request) (any, *apiError) {
	var in cryptIn
	k, err := s.decodeKey(body, e, &in, s.resolve)
	if err != nil {
		return nil, err
	}
	if len(in.Plaintext) == 0 || len(in.Plaintext) > 4096 {
		return nil, errf(codeValidation, "Plaintext must be 1 to 4096 bytes.")
	}
	if err := s.usable(k, "ENCRYPT_DECRYPT"); err != nil {
		return nil, err
	}
	alg := in.EncryptionAlgorithm
	if alg == "" {
		alg = "SYMMETRIC_DEFAULT"
	}
	if !slices.Contains(k.info().enc, alg) {
		return nil, errf(codeInvalidKeyUsage, "The encryption algorithm %s is not valid for %s (%s); valid: %s.", alg, k.arn, k.spec, strings.Join(k.info().enc, ", "))
	}
	cur := k.current()
	var blob []byte
	if k.info().class == "symmetric" {
		gcm := newGCM(cur.secret)
		nonce := make([]byte, gcm.NonceSize())
		_, _ = rand.Read(nonce)
		mid, _ := hex.DecodeString(cur.id)
		blob = append([]byte(blobMagic), byte(len(k.id)))
		blob = append(blob, k.id...)
		blob = append(blob, mid...)
		blob = append(blob, nonce...)
		blob = gcm.Seal(blob, nonce, in.Plaintext, contextAAD(k.id, in.EncryptionContext))
	} else {
		if len(in.EncryptionContext) > 0 {
			return nil, errf(codeValidation, "EncryptionContext is not supported with asymmetric KMS keys.")
		}
		h := oaepHash(alg)
		if max := cur.priv.rsa.Size() - 2*h.Size() - 2; len(in.Plaintext) > max {
			return nil, errf(codeValidation, "%s with %s encrypts at most %d bytes.", alg, k.spec, max)
		}
		out, oerr := rsa.EncryptOAEP(h, rand.Reader, &cur.priv.rsa.PublicKey, in.Plaintext, nil)
		if oerr != nil {
			return nil, errf(codeInternal, "encrypting: %v", oerr)
		}
		blob = out
	}
	return map[string]any{"CiphertextBlob": blob, "KeyId": k.arn, "EncryptionAlgorithm": alg}, nil
}

func newGCM(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // 32-byte keys only reach here
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

func (s *Server) decrypt(body []byte, e *Request) (any, *apiError) {
	var in cryptIn
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	alg := in.EncryptionAlgorithm
	if alg == "" {
		alg = "SYMMETRIC_DEFAULT"
	}
	bad := errf(codeInvalidCiphertext, "The ciphertext is invalid, was not made by this key, or the encryption context does not match.")
	if len(in.CiphertextBlob) == 0 {
		return nil, errf(codeValidation, "CiphertextBlob is required.")
	}
	if alg != "SYMMETRIC_DEFAULT" {
		if in.KeyId == "" {
			return nil, errf(codeValidation, "KeyId is required to decrypt with an asymmetric KMS key.")
		}
		k, err := s.resolve(in.KeyId)
		if err != nil {
			return nil, err
		}
		e.KeyARN = k.arn
		if err := s.usable(k, "ENCRYPT_DECRYPT"); err != nil {
			return nil, err
		}
		if !slices.Contains(k.info().enc, alg) {
			return nil, errf(codeInvalidKeyUsage, "The encryption algorithm %s is not valid for %s (%s).", alg, k.arn, k.spec)
		}
		out, oerr := rsa.DecryptOAEP(oaepHash(alg), nil, k.current().priv.rsa, in.CiphertextBlob, nil)
		if oerr != nil {
			return nil, bad
		}
		return map[string]any{"KeyId": k.arn, "Plaintext": out, "EncryptionAlgorithm": alg}, nil
	}
	b := in.CiphertextBlob
	if !bytes.HasPrefix(b, []byte(blobMagic)) || len(b) < len(blobMagic)+1 {
		return nil, bad
	}
	b = b[len(blobMagic):]
	n := int(b[0])
	if len(b) < 1+n+32+12+16 {
		return nil, bad
	}
	mid, nonce, ct := hex.EncodeToString(b[1+n:1+n+32]), b[1+n+32:1+n+32+12], b[1+n+32+12:]
	owner, ok := s.keys[string(b[1:1+n])]
	if !ok {
		return nil, bad
	}
	k := owner
	if in.KeyId != "" {
		named, err := s.resolve(in.KeyId)
		if err != nil {
			return nil, err
		}
		if named.id != owner.id {
			e.KeyARN = named.arn
			return nil, errf(codeIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	}
	e.KeyARN = k.arn
	if err := s.usable(k, "ENCRYPT_DECRYPT"); err != nil {
		return nil, err
	}
	var m *keyMaterial
	for _, x := range k.materials {
		if x.id == mid && !x.pending() {
			m = x
		}
	}
	if m == nil || !m.imported {
		return nil, bad
	}
	pt, gerr := newGCM(m.secret).Open(nil, nonce, ct, contextAAD(k.id, in.EncryptionContext))
	if gerr != nil {
		return nil, bad
	}
	return map[string]any{"KeyId": k.arn, "Plaintext": pt, "EncryptionAlgorithm": alg, "KeyMaterialId": m.id}, nil
}

var macHash = map[string]func() hash.Hash{
	"HMAC_SHA_224": sha256.New224, "HMAC_SHA_256": sha256.New, "HMAC_SHA_384": sha512.New384, "HMAC_SHA_512": sha512.New,
}

type macIn struct {
	KeyId        string
	Message      []byte
	MacAlgorithm string
	Mac          []byte
}

func (s *Server) mac(body []byte, e *Request) (*key, []byte, macIn, *apiError) {
	var in macIn
	if err := decode(body, &in); err != nil {
		return nil, nil, in, err
	}
	k, err := s.resolve(in.KeyId)
	if err != nil {
		return nil, nil, in, err
	}
	e.KeyARN = k.arn
	if len(in.Message) == 0 || len(in.Message) > 4096 {
		return nil, nil, in, errf(codeValidation, "Message must be 1 to 4096 bytes.")
	}
	if err := s.usable(k, "GENERATE_VERIFY_MAC"); err != nil {
		return nil, nil, in, err
	}
	if in.MacAlgorithm != k.info().mac {
		return nil, nil, in, errf(codeInvalidKeyUsage, "The MAC algorithm %q is not valid for %s (%s); valid: %s.", in.MacAlgorithm, k.arn, k.spec, k.info().mac)
	}
	h := hmac.New(macHash[in.MacAlgorithm], k.current().secret)
	h.Write(in.Message)
	return k, h.Sum(nil), in, nil
}

func (s *Server) generateMac(body []byte, e *Request) (any, *apiError) {
	k, mac, in, err := s.mac(body, e)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyId": k.arn, "Mac": mac, "MacAlgorithm": in.MacAlgorithm}, nil
}

func (s *Server) verifyMac(body []byte, e *Request) (any, *apiError) {
	k, mac, in, err := s.mac(body, e)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(mac, in.Mac) != 1 {
		return nil, errf(codeInvalidMac, "The MAC is not valid for the message and key.")
	}
	return map[string]any{"KeyId": k.arn, "MacValid": true, "MacAlgorithm": in.MacAlgorithm}, nil
}

func (s *Server) getPublicKey(body []byte, e *Request) (any, *apiError) {
	var in keyIDIn
	k, err := s.decodeKey(body, e, &in, s.resolve)
	if err != nil {
		return nil, err
	}
	info := k.info()
	if info.class != "rsa" && info.class != "ecc" {
		return nil, errf(codeUnsupported, "%s is %s: only asymmetric KMS keys have a public key.", k.arn, k.spec)
	}
	switch st := s.state(k); st {
	case "Enabled":
	case "Disabled":
		return nil, errf(codeDisabled, "%s is disabled.", k.arn)
	default:
		return nil, errf(codeInvalidState, "%s is %s and not available for this operation.", k.arn, st)
	}
	out := map[string]any{"KeyId": k.arn, "PublicKey": k.current().priv.spki, "CustomerMasterKeySpec": k.spec, "KeySpec": k.spec, "KeyUsage": k.usage}
	switch k.usage {
	case "SIGN_VERIFY":
		out["SigningAlgorithms"] = info.signing
	case "ENCRYPT_DECRYPT":
		out["EncryptionAlgorithms"] = info.enc
	case "KEY_AGREEMENT":
		out["KeyAgreementAlgorithms"] = []string{"ECDH"}
	}
	return out, nil
}

type signIn struct {
	KeyId            string
	Message          []byte
	MessageType      string
	SigningAlgorithm string
	Signature        []byte
}

func signingHash(alg string) crypto.Hash {
	switch {
	case strings.HasSuffix(alg, "SHA_384"):
		return crypto.SHA384
	case strings.HasSuffix(alg, "SHA_512"):
		return crypto.SHA512
	}
	return crypto.SHA256
}

// signPrep checks a Sign/Verify request and returns the key and digest.
func (s *Server) signPrep(body []byte, e *Request) (*key, *privateKey, []byte, signIn, *apiError) {
	var in signIn
	if err := decode(body, &in); err != nil {
		return nil, nil, nil, in, err
	}
	k, err := s.resolve(in.KeyId)
	if err != nil {
		return nil, nil, nil, in, err
	}
	e.KeyARN = k.arn
	if len(in.Message) == 0 || len(in.Message) > 4096 {
		return nil, nil, nil, in, errf(codeValidation, "Message must be 1 to 4096 bytes.")
	}
	if err := s.usable(k, "SIGN_VERIFY"); err != nil {
		return nil, nil, nil, in, err
	}
	if !slices.Contains(k.info().signing, in.SigningAlgorithm) {
		return nil, nil, nil, in, errf(codeInvalidKeyUsage, "The signing algorithm %q is not valid for %s (%s); valid: %s.", in.SigningAlgorithm, k.arn, k.spec, strings.Join(k.info().signing, ", "))
	}
	h := signingHash(in.SigningAlgorithm)
	var digest []byte
	switch in.MessageType {
	case "", "RAW":
		hh := h.New()
		hh.Write(in.Message)
		digest = hh.Sum(nil)
	case "DIGEST":
		if len(in.Message) != h.Size() {
			return nil, nil, nil, in, errf(codeValidation, "Digest is invalid length for algorithm %s: it must be %d bytes.", in.SigningAlgorithm, h.Size())
		}
		digest = in.Message
	default:
		return nil, nil, nil, in, errf(codeValidation, "1 validation error detected: Value '%s' at 'messageType' failed to satisfy constraint: Member must satisfy enum value set: [RAW, DIGEST, EXTERNAL_MU]", in.MessageType)
	}
	return k, k.current().priv, digest, in, nil
}

func (s *Server) sign(body []byte, e *Request) (any, *apiError) {
	k, p, digest, in, err := s.signPrep(body, e)
	if err != nil {
		return nil, err
	}
	h := signingHash(in.SigningAlgorithm)
	var sig []byte
	var serr error
	switch {
	case strings.HasPrefix(in.SigningAlgorithm, "RSASSA_PSS_"):
		sig, serr = rsa.SignPSS(rand.Reader, p.rsa, h, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case strings.HasPrefix(in.SigningAlgorithm, "RSASSA_PKCS1_V1_5_"):
		sig, serr = rsa.SignPKCS1v15(rand.Reader, p.rsa, h, digest)
	case p.ec != nil:
		sig, serr = ecdsa.SignASN1(rand.Reader, p.ec, digest)
	default:
		r, sv, kerr := k1Sign(p.k1d, digest)
		if kerr == nil {
			sig, kerr = asn1.Marshal(struct{ R, S *big.Int }{r, sv})
		}
		serr = kerr
	}
	if serr != nil {
		return nil, errf(codeInternal, "signing: %v", serr)
	}
	return map[string]any{"KeyId": k.arn, "Signature": sig, "SigningAlgorithm": in.SigningAlgorithm}, nil
}

func (s *Server) verify(body []byte, e *Request) (any, *apiError) {
	k, p, digest, in, err := s.signPrep(body, e)
	if err != nil {
		return nil, err
	}
	h := signingHash(in.SigningAlgorithm)
	ok := false
	switch {
	case strings.HasPrefix(in.SigningAlgorithm, "RSASSA_PSS_"):
		ok = rsa.VerifyPSS(&p.rsa.PublicKey, h, digest, in.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case strings.HasPrefix(in.SigningAlgorithm, "RSASSA_PKCS1_V1_5_"):
		ok = rsa.VerifyPKCS1v15(&p.rsa.PublicKey, h, digest, in.Signature) == nil
	case p.ec != nil:
		ok = ecdsa.VerifyASN1(&p.ec.PublicKey, digest, in.Signature)
	default:
		var rs struct{ R, S *big.Int }
		if rest, uerr := asn1.Unmarshal(in.Signature, &rs); uerr == nil && len(rest) == 0 {
			ok = k1Verify(p.k1pub, digest, rs.R, rs.S)
		}
	}
	if !ok {
		return nil, errf(codeInvalidSignature, "The signature is not valid for the message and key.")
	}
	return map[string]any{"KeyId": k.arn, "SignatureValid": true, "SigningAlgorithm": in.SigningAlgorithm}, nil
}

// Package keymaterial reads plaintext key material as Secrets Manager (or an
// operator's file) holds it and checks that it fits the KMS key it is meant
// for.
//
// The rules are those of the KMS developer guide, "Requirements for imported
// key material":
//
//   - SYMMETRIC_DEFAULT: exactly 256 bits (32 bytes) of binary data.
//   - HMAC_224/256/384/512: at least the length the key spec names and at
//     most 1024 bits: 28-128, 32-128, 48-128 and 64-128 bytes.
//   - RSA_2048/3072/4096: a two-prime RSA private key with that modulus size.
//   - ECC_NIST_P256/P384/P521, ECC_SECG_P256K1: a private key on that named
//     curve (explicit curve parameters are refused).
//
// Asymmetric keys are returned as PKCS#8 DER (RFC 5208), which is what KMS
// imports, whatever form they came in (PKCS#8, PKCS#1 or SEC1; DER, base64
// or PEM).
//
// No error of this package contains any byte of the material, in any
// encoding: messages describe the key spec, sizes and shapes only. Errors
// from the parsers of the standard library are never wrapped, since some of
// them quote the input; they are described instead.
package keymaterial

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// ErrInvalid is wrapped by every error about material that does not fit.
// Its messages describe shape (lengths, encodings), never content.
var ErrInvalid = errors.New("invalid key material")

// ErrAmbiguous is wrapped (with ErrInvalid) by FromFileAs's error for a
// file that reads validly both as raw bytes and as base64: naming the
// encoding resolves it.
var ErrAmbiguous = errors.New("ambiguous")

// MaxInputSize bounds every input (file, SecretBinary, SecretString). The
// largest supported material, an RSA_4096 private key in PEM, is about
// 3.3 KiB.
const MaxInputSize = 16 << 10

type kind int

const (
	kindUnknown kind = iota
	kindSymmetric
	kindHMAC
	kindRSA
	kindEC
)

// spec describes what one KMS key spec accepts.
type spec struct {
	kind     kind
	min, max int // byte lengths, symmetric and HMAC
	bits     int // RSA modulus size
	curve    *curveInfo
}

var specs = map[types.KeySpec]spec{
	types.KeySpecSymmetricDefault: {kind: kindSymmetric, min: 32, max: 32},
	types.KeySpecHmac224:          {kind: kindHMAC, min: 28, max: 128},
	types.KeySpecHmac256:          {kind: kindHMAC, min: 32, max: 128},
	types.KeySpecHmac384:          {kind: kindHMAC, min: 48, max: 128},
	types.KeySpecHmac512:          {kind: kindHMAC, min: 64, max: 128},
	types.KeySpecRsa2048:          {kind: kindRSA, bits: 2048},
	types.KeySpecRsa3072:          {kind: kindRSA, bits: 3072},
	types.KeySpecRsa4096:          {kind: kindRSA, bits: 4096},
	types.KeySpecEccNistP256:      {kind: kindEC, curve: curveP256},
	types.KeySpecEccNistP384:      {kind: kindEC, curve: curveP384},
	types.KeySpecEccNistP521:      {kind: kindEC, curve: curveP521},
	types.KeySpecEccSecgP256k1:    {kind: kindEC, curve: curveSecp256k1},
}

// SupportedKeySpecs lists the key specs this package reads material for, in
// a stable order.
func SupportedKeySpecs() []types.KeySpec {
	return []types.KeySpec{
		types.KeySpecSymmetricDefault,
		types.KeySpecHmac224, types.KeySpecHmac256, types.KeySpecHmac384, types.KeySpecHmac512,
		types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096,
		types.KeySpecEccNistP256, types.KeySpecEccNistP384, types.KeySpecEccNistP521,
		types.KeySpecEccSecgP256k1,
	}
}

// IsAsymmetric reports whether keySpec names an asymmetric key pair (RSA_*,
// ECC_*, SM2, ML_DSA_*, ML_KEM_*), whose material is a private key, as
// opposed to SYMMETRIC_DEFAULT and HMAC_*, whose material is raw bytes. It
// is false for an unknown key spec.
func IsAsymmetric(keySpec types.KeySpec) bool {
	s := string(keySpec)
	return strings.HasPrefix(s, "RSA_") || strings.HasPrefix(s, "ECC_") ||
		s == string(types.KeySpecSm2) || strings.HasPrefix(s, "ML_DSA_") || strings.HasPrefix(s, "ML_KEM_")
}

// lookup returns the rules for keySpec, or an error naming what is allowed.
func lookup(keySpec types.KeySpec) (spec, error) {
	if s, ok := specs[keySpec]; ok {
		return s, nil
	}
	switch {
	case keySpec == types.KeySpecSm2:
		return spec{}, fmt.Errorf("%w: key spec SM2: SM2 key material is imported in China Regions only, which this tool does not support", ErrInvalid)
	case strings.HasPrefix(string(keySpec), "ML_DSA_"), strings.HasPrefix(string(keySpec), "ML_KEM_"):
		return spec{}, fmt.Errorf("%w: key spec %s: KMS does not support importing key material for it", ErrInvalid, keySpec)
	}
	names := make([]string, 0, len(specs))
	for _, k := range SupportedKeySpecs() {
		names = append(names, string(k))
	}
	return spec{}, fmt.Errorf("%w: key spec %q is not supported; allowed: %s", ErrInvalid, keySpec, strings.Join(names, ", "))
}

// FromSecret returns the canonical bytes to import for a key of keySpec from
// a secret's SecretBinary or SecretString. SecretBinary (used when not
// empty) holds raw bytes (SYMMETRIC_DEFAULT, HMAC_*) or a DER private key
// (PKCS#8, PKCS#1 RSA or SEC1 EC; a PEM private key uploaded as binary is
// accepted too). SecretString holds those bytes in base64,
// or a PEM private key (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY).
// Asymmetric keys are returned as PKCS#8 DER. The caller zeroes the result
// with Zero when done.
func FromSecret(keySpec types.KeySpec, secretBinary []byte, secretString *string) ([]byte, error) {
	s, err := lookup(keySpec)
	if err != nil {
		return nil, err
	}
	switch {
	case len(secretBinary) > 0:
		if len(secretBinary) > MaxInputSize {
			return nil, fmt.Errorf("%w: %s: SecretBinary is %d bytes, more than any supported key material (%d)", ErrInvalid, keySpec, len(secretBinary), MaxInputSize)
		}
		if (s.kind == kindRSA || s.kind == kindEC) && isPEM(secretBinary) {
			// PEM uploaded as a binary secret (fileb://key.pem): unambiguous
			// for private keys, since DER starts with a SEQUENCE tag.
			return fromPEM(keySpec, s, secretBinary, "SecretBinary")
		}
		return fromBinary(keySpec, s, secretBinary, "SecretBinary")
	case secretString != nil:
		str := *secretString
		if len(str) > MaxInputSize {
			return nil, fmt.Errorf("%w: %s: SecretString is %d characters, more than any supported key material (%d)", ErrInvalid, keySpec, len(str), MaxInputSize)
		}
		if isPEM([]byte(str)) {
			// The conversion copies the string; the copy is zeroed.
			buf := []byte(str)
			defer Zero(buf)
			return fromPEM(keySpec, s, buf, "SecretString")
		}
		if strings.TrimSpace(str) == "" {
			return nil, fmt.Errorf("%w: %s: SecretString is empty", ErrInvalid, keySpec)
		}
		raw, err := decodeBase64([]byte(str))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: SecretString is neither PEM nor base64 (%d characters)", ErrInvalid, keySpec, len(str))
		}
		defer Zero(raw)
		return fromBinary(keySpec, s, raw, "SecretString (base64-decoded)")
	default:
		return nil, fmt.Errorf("%w: %s: the secret has neither SecretBinary nor SecretString", ErrInvalid, keySpec)
	}
}

// Encoding says how a file holds key material.
type Encoding int

const (
	// Auto detects PEM, then base64, then raw bytes (see FromFile).
	Auto Encoding = iota
	// Raw is binary: the key bytes themselves, or DER for asymmetric keys.
	Raw
	// Base64 is standard base64 (padding optional, whitespace ignored) of
	// what Raw would hold.
	Base64
	// PEM is a PEM private key: PRIVATE KEY, RSA PRIVATE KEY or
	// EC PRIVATE KEY (an EC PARAMETERS block before it is ignored).
	PEM
)

// String returns the name ParseEncoding accepts.
func (e Encoding) String() string {
	switch e {
	case Auto:
		return "auto"
	case Raw:
		return "raw"
	case Base64:
		return "base64"
	case PEM:
		return "pem"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// ParseEncoding reads "auto", "raw", "base64" or "pem".
func ParseEncoding(s string) (Encoding, error) {
	for _, e := range []Encoding{Auto, Raw, Base64, PEM} {
		if strings.EqualFold(s, e.String()) {
			return e, nil
		}
	}
	return Auto, fmt.Errorf("encoding %q: allowed: auto, raw, base64, pem", s)
}

// FromFile is FromFileAs with Auto: the file may hold raw bytes (or DER),
// base64 of them, or PEM. Auto decides so:
//   - data starting with "-----BEGIN" (after blanks) is PEM;
//   - data that is not entirely base64 (alphabet, padding, whitespace) is raw;
//   - base64 text containing whitespace (a trailing newline, line breaks) is
//     base64: a raw key with a newline in it is not plausible;
//   - otherwise (pure base64 alphabet, no whitespace) both readings are
//     tried: if exactly one fits keySpec it is used, and if both fit, the
//     file is refused as ambiguous: name the encoding with FromFileAs.
func FromFile(keySpec types.KeySpec, data []byte) ([]byte, error) {
	return FromFileAs(keySpec, data, Auto)
}

// FromFileAs returns the canonical material for keySpec from a file's
// content in the given encoding. The caller keeps data (and may zero it);
// intermediate buffers are zeroed here. The caller zeroes the result.
func FromFileAs(keySpec types.KeySpec, data []byte, enc Encoding) ([]byte, error) {
	s, err := lookup(keySpec)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: %s: the material file is empty", ErrInvalid, keySpec)
	}
	if len(data) > MaxInputSize {
		return nil, fmt.Errorf("%w: %s: the material file is %d bytes, more than any supported key material (%d)", ErrInvalid, keySpec, len(data), MaxInputSize)
	}
	switch enc {
	case Raw:
		return fromBinary(keySpec, s, data, "the material file (raw)")
	case PEM:
		return fromPEM(keySpec, s, data, "the material file")
	case Base64:
		raw, err := decodeBase64(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: the material file is not base64 (%d bytes)", ErrInvalid, keySpec, len(data))
		}
		defer Zero(raw)
		return fromBinary(keySpec, s, raw, "the material file (base64-decoded)")
	case Auto:
	default:
		return nil, fmt.Errorf("%w: %s: unknown encoding %d", ErrInvalid, keySpec, int(enc))
	}

	if isPEM(data) {
		return fromPEM(keySpec, s, data, "the material file")
	}
	if !isBase64Text(data) {
		return fromBinary(keySpec, s, data, "the material file (raw)")
	}
	raw, b64err := decodeBase64(data)
	if b64err != nil {
		return fromBinary(keySpec, s, data, "the material file (raw)")
	}
	defer Zero(raw)
	if bytes.ContainsAny(data, " \t\r\n\v\f") {
		return fromBinary(keySpec, s, raw, "the material file (base64-decoded)")
	}
	fromB64, errB64 := fromBinary(keySpec, s, raw, "the material file (base64-decoded)")
	fromRaw, errRaw := fromBinary(keySpec, s, data, "the material file (raw)")
	switch {
	case errB64 == nil && errRaw == nil:
		Zero(fromB64)
		Zero(fromRaw)
		return nil, fmt.Errorf("%w: %s: the material file is %w: it fits as %d raw bytes and as base64 of %d bytes; state the encoding (raw or base64)", ErrInvalid, keySpec, ErrAmbiguous, len(data), len(raw))
	case errB64 == nil:
		return fromB64, nil
	case errRaw == nil:
		return fromRaw, nil
	default:
		return nil, fmt.Errorf("%w: %s: the material file fits neither as %d raw bytes nor as base64 of %d bytes: %w", ErrInvalid, keySpec, len(data), len(raw), errB64)
	}
}

// fromBinary checks raw material (symmetric, HMAC) or parses a DER private
// key (asymmetric). It never keeps b.
func fromBinary(keySpec types.KeySpec, s spec, b []byte, what string) ([]byte, error) {
	switch s.kind {
	case kindSymmetric, kindHMAC:
		if len(b) < s.min || len(b) > s.max {
			return nil, lengthError(keySpec, s, len(b), what)
		}
		return append([]byte(nil), b...), nil
	case kindRSA, kindEC:
		return parsePrivateKey(keySpec, s, b, what, formatAny)
	}
	return nil, fmt.Errorf("%w: %s: key spec not supported", ErrInvalid, keySpec)
}

func lengthError(keySpec types.KeySpec, s spec, n int, what string) error {
	if s.min == s.max {
		return fmt.Errorf("%w: %s material must be exactly %d bytes (%d bits); %s is %d bytes", ErrInvalid, keySpec, s.min, s.min*8, what, n)
	}
	return fmt.Errorf("%w: %s material must be %d to %d bytes (%d to %d bits); %s is %d bytes", ErrInvalid, keySpec, s.min, s.max, s.min*8, s.max*8, what, n)
}

func isPEM(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN"))
}

// fromPEM decodes PEM private keys. A leading EC PARAMETERS block (as
// `openssl ecparam -genkey` writes) is skipped; exactly one private key
// block must follow, with nothing but blanks after it.
func fromPEM(keySpec types.KeySpec, s spec, data []byte, what string) ([]byte, error) {
	if s.kind != kindRSA && s.kind != kindEC {
		return nil, fmt.Errorf("%w: %s: %s is PEM, but %s material is raw bytes (give them raw or in base64)", ErrInvalid, keySpec, what, keySpec)
	}
	rest := data
	var block *pem.Block
	for {
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: %s: %s has no complete PEM block", ErrInvalid, keySpec, what)
		}
		if block.Type != "EC PARAMETERS" {
			break
		}
		// Curve parameters are public; the private key block names the curve.
		Zero(block.Bytes)
	}
	defer Zero(block.Bytes)
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s: %s has data after its PEM private key block; give one key per file", ErrInvalid, keySpec, what)
	}
	if len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: %s: %s is a PEM block with headers (legacy encrypted PEM?); give an unencrypted key", ErrInvalid, keySpec, what)
	}
	var f format
	switch block.Type {
	case "PRIVATE KEY":
		f = formatPKCS8
	case "RSA PRIVATE KEY":
		f = formatPKCS1
	case "EC PRIVATE KEY":
		f = formatSEC1
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%w: %s: %s is an encrypted PKCS#8 key; decrypt it first (openssl pkcs8 -topk8 -nocrypt)", ErrInvalid, keySpec, what)
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("%w: %s: %s holds a public key or certificate (PEM type %s); KMS imports the private key", ErrInvalid, keySpec, what, block.Type)
	default:
		return nil, fmt.Errorf("%w: %s: %s is a PEM block of an unsupported type; allowed: PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY", ErrInvalid, keySpec, what)
	}
	return parsePrivateKey(keySpec, s, block.Bytes, what+" (PEM "+block.Type+")", f)
}

// isBase64Text reports whether data consists only of the standard base64
// alphabet, '=' padding and whitespace, with at least one non-blank byte.
func isBase64Text(data []byte) bool {
	seen := false
	for _, c := range data {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			seen = true
		case c == ' ', c == '\t', c == '\r', c == '\n', c == '\v', c == '\f':
		default:
			return false
		}
	}
	return seen
}

// decodeBase64 decodes standard base64, padded or not, ignoring whitespace.
// The caller zeroes the result. Its error never quotes the input.
func decodeBase64(data []byte) ([]byte, error) {
	compact := make([]byte, 0, len(data))
	for _, c := range data {
		switch c {
		case ' ', '\t', '\r', '\n', '\v', '\f':
		default:
			compact = append(compact, c)
		}
	}
	defer Zero(compact)
	if len(compact) == 0 {
		return nil, errors.New("empty")
	}
	enc := base64.StdEncoding
	if len(compact)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(compact)))
	n, err := enc.Decode(out, compact)
	if err != nil {
		Zero(out)
		return nil, errors.New("not base64")
	}
	return out[:n], nil
}

// Zero overwrites b so plaintext does not linger in memory.
func Zero(b []byte) {
	clear(b)
}

package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

const wrapUsage = `Usage: kms-reimport wrap --public-key FILE --key-spec SPEC --material FILE --out FILE [flags]

Encrypts ("wraps") key material with the wrapping public key that
GetParametersForImport returned, offline, with the same code as the Lambdas
(keymaterial.FromFileAs, wrapping.Check, wrapping.ParsePublicKey, wrapping.Wrap). The
output file is the EncryptedKeyMaterial for ImportKeyMaterial:
  aws kms import-key-material --encrypted-key-material fileb://OUT ...

Flags:
  --public-key FILE          wrapping public key: DER (WrappingPublicKey.bin from the
                             console), PEM (PUBLIC KEY), or base64 as written by
                             'aws kms get-parameters-for-import --query PublicKey --output text'
  --key-spec SPEC            KeySpec of the KMS key: SYMMETRIC_DEFAULT, HMAC_224, HMAC_256,
                             HMAC_384, HMAC_512, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256,
                             ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1
  --material FILE            key material: raw bytes (or DER private key), base64 of them,
                             or a PEM private key (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY)
  --material-encoding ENC    auto (default), raw, base64 or pem; auto refuses a file that
                             reads validly both as raw bytes and as base64
  --out FILE                 where to write the wrapped material (created with mode 0600)
  --wrapping-algorithm ALG   the WrappingAlgorithm given to GetParametersForImport:
                             RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256,
                             RSA_AES_KEY_WRAP_SHA_1 (default: RSAES_OAEP_SHA_256 for symmetric
                             and HMAC keys, RSA_AES_KEY_WRAP_SHA_256 for RSA and ECC keys)
  --wrapping-key-spec SPEC   RSA_2048, RSA_3072 or RSA_4096 (default: from the key's size)
  --allow-legacy-pkcs1       permit RSAES_PKCS1_V1_5 for SYMMETRIC_DEFAULT material (KMS
                             stopped accepting it on 2023-10-10; for older systems only)
  -h, --help                 show this help

Exit codes: 0 wrapped, 1 failed to write the output, 2 bad usage or invalid input.
`

type wrapFlags struct {
	publicKey, keySpec, material, encoding, out, algorithm, wrappingKeySpec string
	allowLegacy                                                             bool
}

// usageError is bad usage or bad input: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func badInput(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func runWrap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wrap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f wrapFlags
	fs.StringVar(&f.publicKey, "public-key", "", "")
	fs.StringVar(&f.keySpec, "key-spec", "", "")
	fs.StringVar(&f.material, "material", "", "")
	fs.StringVar(&f.encoding, "material-encoding", "auto", "")
	fs.StringVar(&f.out, "out", "", "")
	fs.StringVar(&f.algorithm, "wrapping-algorithm", "", "")
	fs.StringVar(&f.wrappingKeySpec, "wrapping-key-spec", "", "")
	fs.BoolVar(&f.allowLegacy, "allow-legacy-pkcs1", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, wrapUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "kms-reimport wrap: %v (see 'kms-reimport wrap --help')\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kms-reimport wrap: unexpected argument %q: all inputs are flags (see 'kms-reimport wrap --help')\n", fs.Arg(0))
		return exitUsage
	}
	summary, err := doWrap(f)
	if err != nil {
		fmt.Fprintf(stderr, "kms-reimport wrap: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailure
	}
	io.WriteString(stdout, summary)
	return exitOK
}

func doWrap(f wrapFlags) (string, error) {
	var missing []string
	for _, r := range []struct{ name, val string }{{"--public-key", f.publicKey}, {"--key-spec", f.keySpec}, {"--material", f.material}, {"--out", f.out}} {
		if r.val == "" {
			missing = append(missing, r.name)
		}
	}
	if len(missing) > 0 {
		return "", badInput("missing %s (see --help)", strings.Join(missing, ", "))
	}
	keySpec := types.KeySpec(f.keySpec)
	known := false
	for _, ks := range keymaterial.SupportedKeySpecs() {
		known = known || ks == keySpec
	}
	if !known {
		names := make([]string, 0, 12)
		for _, ks := range keymaterial.SupportedKeySpecs() {
			names = append(names, string(ks))
		}
		return "", badInput("--key-spec %q: allowed: %s", f.keySpec, strings.Join(names, ", "))
	}
	enc, err := keymaterial.ParseEncoding(f.encoding)
	if err != nil {
		return "", badInput("--material-encoding: %v", err)
	}

	pubData, err := os.ReadFile(f.publicKey)
	if err != nil {
		return "", badInput("--public-key: %v", err)
	}
	spec := types.WrappingKeySpec(f.wrappingKeySpec)
	if spec == "" {
		_, inferred, err := wrapping.ParseAnyPublicKey(pubData)
		if err != nil {
			return "", badInput("--public-key %s: %v", f.publicKey, err)
		}
		spec = inferred
	}
	pub, err := wrapping.ParsePublicKey(pubData, spec)
	if err != nil {
		return "", badInput("--public-key %s: %v", f.publicKey, err)
	}

	alg := types.AlgorithmSpec(f.algorithm)
	if alg == "" {
		alg, _ = wrapping.Defaults(keySpec)
	}

	raw, err := os.ReadFile(f.material)
	if err != nil {
		return "", badInput("--material: %v", err)
	}
	m, err := keymaterial.FromFileAs(keySpec, raw, enc)
	keymaterial.Zero(raw)
	if err != nil {
		if strings.Contains(err.Error(), "ambiguous") {
			return "", badInput("--material %s: %v (use --material-encoding raw or base64)", f.material, err)
		}
		return "", badInput("--material %s: %v", f.material, err)
	}
	defer keymaterial.Zero(m)

	fingerprint := ""
	if keymaterial.IsAsymmetric(keySpec) {
		spki, err := keymaterial.PublicKeyDER(keySpec, m)
		if err != nil {
			return "", badInput("--material %s: %v", f.material, err)
		}
		sum := sha256.Sum256(spki)
		fingerprint = hex.EncodeToString(sum[:])
	}

	if err := wrapping.Check(keySpec, alg, spec, len(m), f.allowLegacy); err != nil {
		if alg == types.AlgorithmSpecRsaesPkcs1V15 && !f.allowLegacy {
			return "", badInput("%v (--allow-legacy-pkcs1)", err)
		}
		return "", badInput("%v", err)
	}
	ct, err := wrapping.WrapWithOptions(pub, alg, m, rand.Reader, wrapping.Options{AllowLegacyPKCS1: f.allowLegacy})
	if err != nil {
		return "", err
	}
	if err := writePrivate(f.out, ct); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "wrapped %s key material (%d bytes) with %s under a %s wrapping key (%d bits)\n", keySpec, len(m), alg, spec, keySize(pub))
	fmt.Fprintf(&b, "wrote %d bytes of EncryptedKeyMaterial to %s\n", len(ct), f.out)
	if fingerprint != "" {
		fmt.Fprintf(&b, "public key SHA-256 (DER SubjectPublicKeyInfo, compare with GetPublicKey): %s\n", fingerprint)
	}
	return b.String(), nil
}

func keySize(pub *rsa.PublicKey) int { return pub.N.BitLen() }

// writePrivate writes data to path with mode 0600, also when the file
// existed with a wider mode.
func writePrivate(path string, data []byte) error {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := file.Chmod(0o600); err != nil {
		file.Close()
		return err
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

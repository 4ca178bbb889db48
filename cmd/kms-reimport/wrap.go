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
	"io/fs"
	"os"
	"path/filepath"
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
  --out FILE                 where to write the wrapped material, mode 0600, through a
                             temporary file in the same directory renamed into place;
                             refused if it is the --material or --public-key file under
                             any name (same path, symbolic or hard link), if it is a
                             symbolic link, or if it exists and --force is not given
  --force                    replace an existing --out file
  --wrapping-algorithm ALG   the WrappingAlgorithm given to GetParametersForImport:
                             RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256,
                             RSA_AES_KEY_WRAP_SHA_1 (default: RSAES_OAEP_SHA_256 for symmetric
                             and HMAC keys, RSA_AES_KEY_WRAP_SHA_256 for RSA and ECC keys)
  --wrapping-key-spec SPEC   RSA_2048, RSA_3072 or RSA_4096 (default: from the key's size)
  --allow-legacy-pkcs1       permit RSAES_PKCS1_V1_5 for SYMMETRIC_DEFAULT material (KMS
                             stopped accepting it on 2023-10-10; for older systems only)
  -h, --help                 show this help

Exit codes: 0 wrapped, 1 failed to write the output, 2 bad usage or invalid input
(including an --out refused as above).
`

type wrapFlags struct {
	publicKey, keySpec, material, encoding, out, algorithm, wrappingKeySpec string
	allowLegacy, force                                                      bool
}

// usageError is bad usage or bad input: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func badInput(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func runWrap(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("wrap", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var f wrapFlags
	flags.StringVar(&f.publicKey, "public-key", "", "")
	flags.StringVar(&f.keySpec, "key-spec", "", "")
	flags.StringVar(&f.material, "material", "", "")
	flags.StringVar(&f.encoding, "material-encoding", "auto", "")
	flags.StringVar(&f.out, "out", "", "")
	flags.StringVar(&f.algorithm, "wrapping-algorithm", "", "")
	flags.StringVar(&f.wrappingKeySpec, "wrapping-key-spec", "", "")
	flags.BoolVar(&f.allowLegacy, "allow-legacy-pkcs1", false, "")
	flags.BoolVar(&f.force, "force", false, "")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, wrapUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "kms-reimport wrap: %v (see 'kms-reimport wrap --help')\n", err)
		return exitUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "kms-reimport wrap: unexpected argument %q: all inputs are flags (see 'kms-reimport wrap --help')\n", flags.Arg(0))
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
	keySpec, enc, err := checkWrapFlags(f)
	if err != nil {
		return "", err
	}
	pub, spec, err := readPublicKey(f)
	if err != nil {
		return "", err
	}
	alg := types.AlgorithmSpec(f.algorithm)
	if alg == "" {
		alg, _ = wrapping.Defaults(keySpec)
	}
	m, fingerprint, err := readMaterial(f, keySpec, enc)
	if err != nil {
		return "", err
	}
	defer keymaterial.Zero(m)

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
	if err := writeOut(f, ct); err != nil {
		return "", err
	}

	var b strings.Builder
	fmt.Fprintf(&b, "wrapped %s key material (%d bytes) with %s under a %s wrapping key (%d bits)\n", keySpec, len(m), alg, spec, keySize(pub))
	fmt.Fprintf(&b, "wrote %d bytes of EncryptedKeyMaterial to %s\n", len(ct), f.out)
	if fingerprint != "" {
		fmt.Fprintf(&b, "public key SHA-256 (DER SubjectPublicKeyInfo, compare with GetPublicKey): %s\n", fingerprint)
	}
	return b.String(), nil
}

// checkWrapFlags checks what needs no file read: the required flags, --out
// (a refused --out costs nothing), --key-spec and --material-encoding.
func checkWrapFlags(f wrapFlags) (types.KeySpec, keymaterial.Encoding, error) {
	var missing []string
	for _, r := range []struct{ name, val string }{{"--public-key", f.publicKey}, {"--key-spec", f.keySpec}, {"--material", f.material}, {"--out", f.out}} {
		if r.val == "" {
			missing = append(missing, r.name)
		}
	}
	if len(missing) > 0 {
		return "", 0, badInput("missing %s (see --help)", strings.Join(missing, ", "))
	}
	if err := checkOut(f); err != nil {
		return "", 0, err
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
		return "", 0, badInput("--key-spec %q: allowed: %s", f.keySpec, strings.Join(names, ", "))
	}
	enc, err := keymaterial.ParseEncoding(f.encoding)
	if err != nil {
		return "", 0, badInput("--material-encoding: %v", err)
	}
	return keySpec, enc, nil
}

// readPublicKey reads --public-key as a wrapping key of --wrapping-key-spec,
// or of the spec its size gives when that flag is not set.
func readPublicKey(f wrapFlags) (*rsa.PublicKey, types.WrappingKeySpec, error) {
	pubData, err := os.ReadFile(f.publicKey)
	if err != nil {
		return nil, "", badInput("--public-key: %v", err)
	}
	spec := types.WrappingKeySpec(f.wrappingKeySpec)
	if spec == "" {
		_, inferred, err := wrapping.ParseAnyPublicKey(pubData)
		if err != nil {
			return nil, "", badInput("--public-key %s: %v", f.publicKey, err)
		}
		spec = inferred
	}
	pub, err := wrapping.ParsePublicKey(pubData, spec)
	if err != nil {
		return nil, "", badInput("--public-key %s: %v", f.publicKey, err)
	}
	return pub, spec, nil
}

// readMaterial reads --material as material of keySpec (the caller zeroes
// it) and, for an asymmetric key, the SHA-256 of its DER public key (hex).
func readMaterial(f wrapFlags, keySpec types.KeySpec, enc keymaterial.Encoding) ([]byte, string, error) {
	raw, err := os.ReadFile(f.material)
	if err != nil {
		return nil, "", badInput("--material: %v", err)
	}
	m, err := keymaterial.FromFileAs(keySpec, raw, enc)
	keymaterial.Zero(raw)
	switch {
	case errors.Is(err, keymaterial.ErrAmbiguous):
		return nil, "", badInput("--material %s: %v (use --material-encoding raw or base64)", f.material, err)
	case err != nil:
		return nil, "", badInput("--material %s: %v", f.material, err)
	}
	if !keymaterial.IsAsymmetric(keySpec) {
		return m, "", nil
	}
	spki, err := keymaterial.PublicKeyDER(keySpec, m)
	if err != nil {
		keymaterial.Zero(m)
		return nil, "", badInput("--material %s: %v", f.material, err)
	}
	sum := sha256.Sum256(spki)
	return m, hex.EncodeToString(sum[:]), nil
}

func keySize(pub *rsa.PublicKey) int { return pub.N.BitLen() }

// checkOut refuses an --out that would destroy an input or write somewhere
// else than named: the --material or --public-key file under any name (the
// same path, a hard link, or an input that is a symbolic link to it: the
// material would be replaced by its own ciphertext, maybe its only copy),
// a symbolic link (not followed), anything but a regular file, and an
// existing file unless --force is given.
func checkOut(f wrapFlags) error {
	fi, err := os.Lstat(f.out)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return badInput("--out %s is a symbolic link; it is not followed: give the path of a regular file", f.out)
	}
	for _, in := range []struct{ flag, path string }{{"--material", f.material}, {"--public-key", f.publicKey}} {
		if st, err := os.Stat(in.path); err == nil && os.SameFile(fi, st) {
			return badInput("--out %s is the same file as %s %s: writing would replace it with the ciphertext; give another --out", f.out, in.flag, in.path)
		}
	}
	if !fi.Mode().IsRegular() {
		return badInput("--out %s is not a regular file (%s); give the path of a file", f.out, fi.Mode().Type())
	}
	if !f.force {
		return badInput("--out %s already exists; give --force to replace it", f.out)
	}
	return nil
}

// writeOut writes data to a temporary file (mode 0600) in --out's directory
// and puts it in place: a hard link when --out must not exist (which fails,
// rather than replaces, if a file appeared since checkOut), a rename with
// --force. Either way an existing name is replaced, never written through,
// and a failure leaves no partial output.
func writeOut(f wrapFlags, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(f.out), "."+filepath.Base(f.out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	name := tmp.Name()
	defer os.Remove(name) // after the link or rename, only the temporary name
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	if !f.force {
		err := os.Link(name, f.out)
		if err == nil {
			return nil
		}
		if errors.Is(err, fs.ErrExist) {
			return badInput("--out %s already exists; give --force to replace it", f.out)
		}
		// No hard links on this file system: check again, then rename.
		if _, err := os.Lstat(f.out); !errors.Is(err, fs.ErrNotExist) {
			return badInput("--out %s already exists; give --force to replace it", f.out)
		}
	} else if err := checkOut(f); err != nil {
		return err
	}
	if err := os.Rename(name, f.out); err != nil {
		return fmt.Errorf("--out %s: %w", f.out, err)
	}
	return nil
}

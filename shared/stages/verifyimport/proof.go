package verifyimport

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"hash"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
)

// secretVersion is the secret version holding the key's current material
// (the plan resolved it: flow.Plan.SecretVersionID).
type secretVersion struct{ SecretID, SecretVersionID string }

// prove shows the key works with the material of the pinned secret
// version, in the way its key type allows:
//
//   - SYMMETRIC_DEFAULT: Encrypt/Decrypt round trip of a random probe;
//   - HMAC_*: GenerateMac of a random message equals an HMAC computed here
//     with the material;
//   - RSA_*, ECC_*: GetPublicKey equals the public half of the material;
//     then for SIGN_VERIFY a Sign of a random message verifies here, and
//     for ENCRYPT_DECRYPT (RSA) a probe encrypted here with the public key
//     decrypts in KMS.
//
// The material is read in this function only and zeroed before it returns.
// The proof names what was shown, never a byte of the material.
func (st *Stage) prove(ctx context.Context, md *types.KeyMetadata, r secretVersion, execID string) (string, error) {
	arn, spec := *md.Arn, md.KeySpec
	switch {
	case spec == types.KeySpecSymmetricDefault:
		return st.roundTrip(ctx, arn, execID)
	case strings.HasPrefix(string(spec), "HMAC_"):
		return st.macProof(ctx, arn, spec, r)
	case keymaterial.IsAsymmetric(spec):
		return st.asymmetricProof(ctx, md, r)
	}
	return "", flow.Errorf(flow.VerificationFailed, "key %s has key spec %s, which this stage cannot verify", arn, spec)
}

func (st *Stage) readMaterial(ctx context.Context, spec types.KeySpec, r secretVersion) ([]byte, error) {
	if st.Secrets == nil {
		return nil, flow.Errorf(flow.Internal, "the verify stage has no Secrets Manager client; it needs one for %s keys", spec)
	}
	m, _, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, r.SecretVersionID, "", spec)
	return m, err
}

// macAlgorithms maps an HMAC key spec to its one MAC algorithm.
var macAlgorithms = map[types.KeySpec]struct {
	alg types.MacAlgorithmSpec
	h   func() hash.Hash
}{
	types.KeySpecHmac224: {types.MacAlgorithmSpecHmacSha224, sha256.New224},
	types.KeySpecHmac256: {types.MacAlgorithmSpecHmacSha256, sha256.New},
	types.KeySpecHmac384: {types.MacAlgorithmSpecHmacSha384, sha512.New384},
	types.KeySpecHmac512: {types.MacAlgorithmSpecHmacSha512, sha512.New},
}

func randomProbe() ([]byte, error) {
	p := make([]byte, 32)
	if _, err := rand.Read(p); err != nil {
		return nil, flow.Wrap(flow.Internal, err, "random probe")
	}
	return p, nil
}

func (st *Stage) macProof(ctx context.Context, arn string, spec types.KeySpec, r secretVersion) (string, error) {
	ma, ok := macAlgorithms[spec]
	if !ok {
		return "", flow.Errorf(flow.VerificationFailed, "key %s: no MAC algorithm for %s", arn, spec)
	}
	msg, err := randomProbe()
	if err != nil {
		return "", err
	}
	out, err := st.home(arn).GenerateMac(ctx, &kms.GenerateMacInput{KeyId: &arn, Message: msg, MacAlgorithm: ma.alg})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "GenerateMac with %s", arn)
	}
	m, err := st.readMaterial(ctx, spec, r)
	if err != nil {
		return "", err
	}
	h := hmac.New(ma.h, m)
	keymaterial.Zero(m)
	h.Write(msg)
	if !hmac.Equal(out.Mac, h.Sum(nil)) {
		return "", flow.Errorf(flow.VerificationFailed, "GenerateMac (%s) with %s differs from the HMAC of secret %q version %s: KMS does not hold that material", ma.alg, arn, r.SecretID, r.SecretVersionID)
	}
	return fmt.Sprintf("GenerateMac (%s) of a %d-byte random message equals a local HMAC with the material of secret version %s", ma.alg, len(msg), r.SecretVersionID), nil
}

// signingAlgorithm is the algorithm the proof signs with, per key spec.
func signingAlgorithm(spec types.KeySpec) (types.SigningAlgorithmSpec, crypto.Hash) {
	switch spec {
	case types.KeySpecEccNistP384:
		return types.SigningAlgorithmSpecEcdsaSha384, crypto.SHA384
	case types.KeySpecEccNistP521:
		return types.SigningAlgorithmSpecEcdsaSha512, crypto.SHA512
	case types.KeySpecEccNistP256, types.KeySpecEccSecgP256k1:
		return types.SigningAlgorithmSpecEcdsaSha256, crypto.SHA256
	}
	return types.SigningAlgorithmSpecRsassaPssSha256, crypto.SHA256
}

func (st *Stage) asymmetricProof(ctx context.Context, md *types.KeyMetadata, r secretVersion) (string, error) {
	arn, spec := *md.Arn, md.KeySpec
	m, err := st.readMaterial(ctx, spec, r)
	if err != nil {
		return "", err
	}
	want, err := keymaterial.PublicKeyDER(spec, m)
	keymaterial.Zero(m)
	if err != nil {
		return "", flow.Wrap(flow.InvalidSecret, err, "public key of secret %q version %s", r.SecretID, r.SecretVersionID)
	}
	pk, err := st.home(arn).GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &arn})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "GetPublicKey for %s", arn)
	}
	if !bytes.Equal(pk.PublicKey, want) {
		return "", flow.Errorf(flow.VerificationFailed, "GetPublicKey for %s is not the public half of secret %q version %s", arn, r.SecretID, r.SecretVersionID)
	}
	proof := fmt.Sprintf("GetPublicKey equals the public key of the material of secret version %s", r.SecretVersionID)
	msg, err := randomProbe()
	if err != nil {
		return "", err
	}
	switch md.KeyUsage {
	case types.KeyUsageTypeSignVerify:
		alg, h := signingAlgorithm(spec)
		out, err := st.home(arn).Sign(ctx, &kms.SignInput{KeyId: &arn, Message: msg, MessageType: types.MessageTypeRaw, SigningAlgorithm: alg})
		if err != nil {
			return "", flow.FromAWS(err, flow.VerificationFailed, "Sign with %s", arn)
		}
		hh := h.New()
		hh.Write(msg)
		if err := verifySignature(spec, want, alg, hh.Sum(nil), out.Signature); err != nil {
			return "", flow.Wrap(flow.VerificationFailed, err, "the %s signature of %s does not verify with the material's public key", alg, arn)
		}
		return proof + fmt.Sprintf("; Sign (%s) of a %d-byte random message verifies locally", alg, len(msg)), nil
	case types.KeyUsageTypeEncryptDecrypt:
		p, err := x509.ParsePKIXPublicKey(want)
		if err != nil {
			return "", flow.Wrap(flow.Internal, err, "public key of %s", arn)
		}
		rp, ok := p.(*rsa.PublicKey)
		if !ok {
			return "", flow.Errorf(flow.VerificationFailed, "key %s has usage ENCRYPT_DECRYPT but a %T public key", arn, p)
		}
		ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, rp, msg, nil)
		if err != nil {
			return "", flow.Wrap(flow.Internal, err, "encrypting the probe for %s", arn)
		}
		dec, err := st.home(arn).Decrypt(ctx, &kms.DecryptInput{KeyId: &arn, CiphertextBlob: ct, EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
		if err != nil {
			return "", flow.FromAWS(err, flow.VerificationFailed, "Decrypt with %s", arn)
		}
		if !bytes.Equal(dec.Plaintext, msg) {
			return "", flow.Errorf(flow.VerificationFailed, "Decrypt with %s of a probe encrypted to its public key returned different bytes", arn)
		}
		return proof + fmt.Sprintf("; a %d-byte random probe encrypted locally (RSAES_OAEP_SHA_256) decrypts in KMS", len(msg)), nil
	}
	return proof, nil
}

// verifySignature checks a KMS signature with the public key derived from
// the material.
func verifySignature(spec types.KeySpec, spki []byte, alg types.SigningAlgorithmSpec, digest, sig []byte) error {
	if spec == types.KeySpecEccSecgP256k1 {
		return keymaterial.VerifySecp256k1(spki, digest, sig)
	}
	p, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return fmt.Errorf("parsing the public key: %w", err)
	}
	switch k := p.(type) {
	case *rsa.PublicKey:
		_, h := signingAlgorithm(spec)
		return rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fmt.Errorf("ECDSA verification failed")
		}
		return nil
	}
	return fmt.Errorf("unexpected public key type %T", p)
}

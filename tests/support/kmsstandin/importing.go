package kmsstandin

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"hash"
	"slices"
	"sync"
	"time"
)

// importToken is what an ImportToken stands for: the stand-in hands out an
// opaque random handle and keeps the rest.
type importToken struct {
	keyID   string
	alg     string
	spec    string
	priv    *rsa.PrivateKey
	validTo time.Time
}

// tokenValidity is how long GetParametersForImport's answer is valid.
const tokenValidity = 24 * time.Hour

// maxValidTo is how far ahead ValidTo may be.
const maxValidTo = 365 * 24 * time.Hour

var wrappingSpecBits = map[string]int{"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}

// wrapPool keeps a few RSA wrapping key pairs per size: generating a
// 4096-bit key takes a second or more, so GetParametersForImport hands out
// pooled pairs in turn, each generated on first use.
type wrapPool struct {
	mu   sync.Mutex
	size int
	keys map[int][]*rsa.PrivateKey
	next map[int]int
}

func newWrapPool(size int) *wrapPool {
	return &wrapPool{size: size, keys: map[int][]*rsa.PrivateKey{}, next: map[int]int{}}
}

func (p *wrapPool) get(bits int) (*rsa.PrivateKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.keys[bits]) < p.size {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, err
		}
		p.keys[bits] = append(p.keys[bits], k)
		return k, nil
	}
	i := p.next[bits] % p.size
	p.next[bits]++
	return p.keys[bits][i], nil
}

// Prewarm generates one wrapping key pair of each size in the background,
// so the first GetParametersForImport answers quickly.
func (s *Server) Prewarm() {
	go func() {
		for _, bits := range []int{4096, 3072, 2048} {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				return
			}
			s.wrap.mu.Lock()
			if len(s.wrap.keys[bits]) < s.wrap.size {
				s.wrap.keys[bits] = append(s.wrap.keys[bits], k)
			}
			s.wrap.mu.Unlock()
		}
	}()
}

// wrappingAllowed says whether the developer guide's "Select a wrapping
// algorithm" table allows alg/spec for a key of keySpec, and if not why.
func wrappingAllowed(keySpec, alg, spec string) string {
	class := keySpecs[keySpec].class
	switch alg {
	case "RSAES_PKCS1_V1_5":
		return "As of October 10, 2023, KMS does not support the RSAES_PKCS1_V1_5 wrapping algorithm."
	case "SM2PKE":
		return "The SM2PKE wrapping algorithm is available in China Regions only."
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256":
		if class == "rsa" {
			return "To import an RSA private key, you must use an RSA_AES wrapping algorithm."
		}
		if keySpec == "ECC_NIST_P521" && spec == "RSA_2048" {
			return "You cannot use the " + alg + " wrapping algorithm with the RSA_2048 wrapping key spec to wrap ECC_NIST_P521 key material."
		}
	case "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256":
		if class != "rsa" && class != "ecc" {
			return alg + " is supported for wrapping RSA and ECC key material only, not " + keySpec + " key material."
		}
	default:
		return "1 validation error detected: Value '" + alg + "' at 'wrappingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256, RSA_AES_KEY_WRAP_SHA_1, SM2PKE, RSAES_PKCS1_V1_5]"
	}
	return ""
}

func (s *Server) getParametersForImport(body []byte, e *Request) (any, *apiError) {
	var in struct {
		KeyId             string
		WrappingAlgorithm string
		WrappingKeySpec   string
	}
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	if in.WrappingAlgorithm == "" || in.WrappingKeySpec == "" {
		return nil, errf(codeValidation, "WrappingAlgorithm and WrappingKeySpec are required.")
	}
	if k.origin != "EXTERNAL" {
		return nil, errf(codeUnsupported, "%s origin is %s which is not valid for this operation.", k.arn, k.origin)
	}
	if k.deletion != nil {
		return nil, errf(codeInvalidState, "%s is pending deletion.", k.arn)
	}
	bits, ok := wrappingSpecBits[in.WrappingKeySpec]
	if !ok {
		if in.WrappingKeySpec == "SM2" {
			return nil, errf(codeValidation, "The SM2 wrapping key spec is available in China Regions only.")
		}
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'wrappingKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, RSA_3072, RSA_4096, SM2]", in.WrappingKeySpec)
	}
	if why := wrappingAllowed(k.spec, in.WrappingAlgorithm, in.WrappingKeySpec); why != "" {
		return nil, errf(codeValidation, "%s", why)
	}
	priv, gerr := s.wrap.get(bits)
	if gerr != nil {
		return nil, errf(codeInternal, "generating the wrapping key: %v", gerr)
	}
	pub, merr := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if merr != nil {
		return nil, errf(codeInternal, "encoding the wrapping key: %v", merr)
	}
	now := s.clock()
	for id, t := range s.tokens {
		if now.After(t.validTo.Add(time.Hour)) {
			delete(s.tokens, id)
		}
	}
	tok := make([]byte, 48)
	_, _ = rand.Read(tok)
	validTo := now.UTC().Add(tokenValidity)
	s.tokens[hex.EncodeToString(tok)] = &importToken{keyID: k.id, alg: in.WrappingAlgorithm, spec: in.WrappingKeySpec, priv: priv, validTo: validTo}
	return map[string]any{"KeyId": k.arn, "ImportToken": tok, "PublicKey": pub, "ParametersValidTo": ts(validTo)}, nil
}

type importIn struct {
	KeyId                  string
	ImportToken            []byte
	EncryptedKeyMaterial   []byte
	ValidTo                *epoch
	ExpirationModel        string
	ImportType             string
	KeyMaterialId          string
	KeyMaterialDescription string
}

func (s *Server) importKeyMaterial(body []byte, e *Request) (any, *apiError) {
	var in importIn
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	if len(in.ImportToken) == 0 || len(in.EncryptedKeyMaterial) == 0 {
		return nil, errf(codeValidation, "ImportToken and EncryptedKeyMaterial are required.")
	}
	if k.origin != "EXTERNAL" {
		return nil, errf(codeUnsupported, "%s origin is %s which is not valid for this operation.", k.arn, k.origin)
	}
	// The ImportKeyMaterial reference: "its KeyState must be PendingImport
	// or Enabled" (so not Disabled, PendingDeletion or Creating).
	if st := s.state(k); st != "PendingImport" && st != "Enabled" {
		return nil, errf(codeInvalidState, "%s is %s and not available for this operation: ImportKeyMaterial needs a key in state PendingImport or Enabled.", k.arn, st)
	}
	now := s.clock()

	// Expiration: the default model is KEY_MATERIAL_EXPIRES, which needs a
	// ValidTo in the future and at most 365 days ahead; the stand-in keeps
	// whole seconds.
	model := in.ExpirationModel
	if model == "" {
		model = "KEY_MATERIAL_EXPIRES"
	}
	var validTo *time.Time
	switch model {
	case "KEY_MATERIAL_EXPIRES":
		if in.ValidTo == nil {
			return nil, errf(codeValidation, "A ValidTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
		}
		v := in.ValidTo.Time.UTC().Truncate(time.Second)
		if !v.After(now) {
			return nil, errf(codeValidation, "ValidTo must be in the future.")
		}
		if v.After(now.Add(maxValidTo)) {
			return nil, errf(codeValidation, "ValidTo must be at most 365 days from now.")
		}
		validTo = &v
	case "KEY_MATERIAL_DOES_NOT_EXPIRE":
		if in.ValidTo != nil {
			return nil, errf(codeValidation, "A ValidTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
		}
	default:
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'expirationModel' failed to satisfy constraint: Member must satisfy enum value set: [KEY_MATERIAL_DOES_NOT_EXPIRE, KEY_MATERIAL_EXPIRES]", model)
	}

	info := k.info()
	symmetric := info.class == "symmetric"
	if !symmetric && (in.ImportType != "" || in.KeyMaterialId != "") {
		return nil, errf(codeValidation, "ImportType and KeyMaterialId are valid only for symmetric encryption keys; %s is %s: omit them.", k.arn, k.spec)
	}
	switch in.ImportType {
	case "", "EXISTING_KEY_MATERIAL":
	case "NEW_KEY_MATERIAL":
		if in.KeyMaterialId != "" {
			return nil, errf(codeValidation, "You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL.")
		}
		if k.primary != nil {
			return nil, errf(codeUnsupported, "%s is a multi-Region replica key: import new key material into its primary %s, then the same material into this replica with ImportType EXISTING_KEY_MATERIAL.", k.arn, k.primary.arn)
		}
	default:
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'importType' failed to satisfy constraint: Member must satisfy enum value set: [NEW_KEY_MATERIAL, EXISTING_KEY_MATERIAL]", in.ImportType)
	}

	tok, ok := s.tokens[hex.EncodeToString(in.ImportToken)]
	if !ok || tok.keyID != k.id {
		return nil, errf(codeInvalidToken, "The import token is invalid for %s.", k.arn)
	}
	if !now.Before(tok.validTo) {
		return nil, errf(codeExpiredToken, "The import token expired at %s.", tok.validTo.Format(time.RFC3339))
	}
	secret, uerr := unwrap(tok, in.EncryptedKeyMaterial)
	if uerr != nil {
		return nil, uerr
	}
	defer clear(secret)
	var priv *privateKey
	switch info.class {
	case "symmetric":
		if len(secret) != 32 {
			return nil, errf(codeValidation, "The key material for a SYMMETRIC_DEFAULT key must be 256 bits; got %s.", describeLen(len(secret)))
		}
	case "hmac":
		if len(secret) < info.hmacMin || len(secret) > hmacMax {
			return nil, errf(codeValidation, "The key material for an %s key must be %d to %d bytes; got %s.", k.spec, info.hmacMin, hmacMax, describeLen(len(secret)))
		}
	default:
		p, perr := parsePrivate(k.spec, secret)
		if perr != nil {
			return nil, perr
		}
		priv = p
	}
	identity := secret
	if priv != nil {
		identity = priv.identity()
	}
	id := materialID(k.id, identity)

	reimport := func(m *keyMaterial) {
		m.imported, m.expiration, m.validTo = true, model, validTo
		if in.KeyMaterialDescription != "" {
			m.description = in.KeyMaterialDescription
		}
	}
	fresh := func(state string) *keyMaterial {
		m := &keyMaterial{id: id, secret: slices.Clone(identity), state: state, priv: priv, description: in.KeyMaterialDescription}
		reimport(m)
		return m
	}
	var bound *keyMaterial
	switch {
	case k.primary != nil:
		// A replica takes only material its primary has and that it has
		// learned (multi-Region shared properties sync with a delay, see
		// ReplicaSyncDelay).
		if in.KeyMaterialId != "" && in.KeyMaterialId != id {
			return nil, errf(codeIncorrectMaterial, "The key material you are importing is not the key material identified by KeyMaterialId %s.", in.KeyMaterialId)
		}
		bound = k.material(id)
		if bound == nil {
			return nil, errf(codeIncorrectMaterial, "The key material you are importing (KeyMaterialId %s) is not associated with the replica key %s: a replica takes only key material imported into its primary %s, and learns a new key material id only some time after the primary's import.", id, k.arn, k.primary.arn)
		}
		s.w.touch(k, now)
		if bound.secret == nil {
			bound.secret, bound.priv = slices.Clone(identity), priv
		}
		reimport(bound)
		s.w.recheck(k.primary, now)
	case len(k.materials) == 0:
		if in.ImportType == "EXISTING_KEY_MATERIAL" {
			return nil, errf(codeIncorrectMaterial, "No key material is associated with %s yet: import it with ImportType NEW_KEY_MATERIAL (or omit ImportType).", k.arn)
		}
		s.w.touch(k, now)
		bound = fresh(matCurrent)
		k.materials = []*keyMaterial{bound}
		k.enabled = true
		s.w.syncReplicas(k, now)
	case !symmetric:
		m := k.materials[0]
		if subtle.ConstantTimeCompare(m.secret, identity) != 1 {
			return nil, errf(codeIncorrectMaterial, "The key material you are importing is not the key material previously imported into %s.", k.arn)
		}
		s.w.touch(k, now)
		reimport(m)
		bound = m
	case in.ImportType == "NEW_KEY_MATERIAL":
		for _, m := range k.materials {
			if m.id == id {
				// IncorrectKeyMaterialException's reference: "KMS expected
				// new key material but the key material being imported is
				// already associated with the KMS key".
				return nil, errf(codeIncorrectMaterial, "This key material is already associated with %s (KeyMaterialId %s): reimport it with ImportType EXISTING_KEY_MATERIAL.", k.arn, id)
			}
			if m.pending() {
				return nil, errf(codeValidation, "%s already has key material pending rotation (KeyMaterialId %s, %s): rotate it with RotateKeyOnDemand or delete it with DeleteImportedKeyMaterial first.", k.arn, m.id, m.state)
			}
		}
		s.w.touch(k, now)
		bound = fresh(matPendingRotation)
		k.materials = append(k.materials, bound)
		// With replicas it waits for them: PENDING_MULTI_REGION_IMPORT_AND_ROTATION.
		s.w.recheck(k, now)
		s.w.syncReplicas(k, now)
	default: // EXISTING_KEY_MATERIAL, or omitted after the first import
		if in.KeyMaterialId != "" && in.KeyMaterialId != id {
			return nil, errf(codeIncorrectMaterial, "The key material you are importing is not the key material identified by KeyMaterialId %s.", in.KeyMaterialId)
		}
		bound = k.material(id)
		if bound == nil {
			return nil, errf(codeIncorrectMaterial, "The key material you are importing is not associated with %s.", k.arn)
		}
		s.w.touch(k, now)
		reimport(bound)
	}
	out := map[string]any{"KeyId": k.arn}
	if symmetric {
		out["KeyMaterialId"] = bound.id
	}
	return out, nil
}

// unwrap decrypts EncryptedKeyMaterial with the token's private key, as
// the token's wrapping algorithm says. It never says why an unwrap failed
// beyond that it did.
func unwrap(tok *importToken, enc []byte) ([]byte, *apiError) {
	bad := errf(codeInvalidCiphertext, "The key material could not be decrypted with the wrapping key and %s.", tok.alg)
	var h hash.Hash
	switch tok.alg {
	case "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_1":
		h = sha1.New()
	default:
		h = sha256.New()
	}
	switch tok.alg {
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256":
		out, err := rsa.DecryptOAEP(h, nil, tok.priv, enc, nil)
		if err != nil {
			return nil, bad
		}
		return out, nil
	case "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256":
		n := tok.priv.Size()
		if len(enc) <= n {
			return nil, bad
		}
		aesKey, err := rsa.DecryptOAEP(h, nil, tok.priv, enc[:n], nil)
		if err != nil || len(aesKey) != 32 {
			return nil, bad
		}
		defer clear(aesKey)
		out, err := kwpUnwrap(aesKey, enc[n:])
		if err != nil {
			return nil, bad
		}
		return out, nil
	}
	return nil, bad
}

func (s *Server) deleteImportedKeyMaterial(body []byte, e *Request) (any, *apiError) {
	var in struct {
		KeyId         string
		KeyMaterialId string
	}
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	if k.origin != "EXTERNAL" {
		return nil, errf(codeUnsupported, "%s origin is %s which is not valid for this operation.", k.arn, k.origin)
	}
	if k.creating {
		return nil, errf(codeInvalidState, "%s is Creating and not available for this operation.", k.arn)
	}
	// Allowed pending deletion too: the reference says it then leaves the
	// key state PendingDeletion.
	if in.KeyMaterialId != "" && k.info().class != "symmetric" {
		return nil, errf(codeValidation, "KeyMaterialId is valid only for symmetric encryption keys.")
	}
	var m *keyMaterial
	if in.KeyMaterialId == "" {
		m = k.current()
	} else {
		for _, x := range k.materials {
			if x.id == in.KeyMaterialId {
				m = x
			}
		}
	}
	if m == nil {
		return nil, errf(codeNotFound, "No such key material for %s.", k.arn)
	}
	now := s.clock()
	s.w.touch(k, now)
	if m.pending() && k.primary == nil {
		// Not permanently associated: deleting it removes it (from the
		// replicas too, once the change reaches them).
		k.materials = slices.DeleteFunc(k.materials, func(x *keyMaterial) bool { return x == m })
		if k.rotating != nil && k.rotating.toID == m.id {
			k.rotating = nil // nothing left to rotate to
		}
		s.w.syncReplicas(k, now)
	} else {
		// On a replica only this key's copy goes; the primary and the
		// other replicas are unchanged.
		m.imported, m.validTo, m.expiration = false, nil, ""
	}
	out := map[string]any{"KeyId": k.arn}
	if k.info().class == "symmetric" {
		out["KeyMaterialId"] = m.id
	}
	return out, nil
}

package kmsstandin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// specInfo is what the API reference allows for one key spec.
type specInfo struct {
	class   string   // symmetric, hmac, rsa, ecc
	usages  []string // allowed KeyUsage values, the first is the default
	hmacMin int      // HMAC material length range, bytes
	bits    int      // RSA modulus size
	curve   string   // ECC curve name
	signing []string
	enc     []string // encryption algorithms for ENCRYPT_DECRYPT
	mac     string
}

var rsaSigning = []string{"RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
	"RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512"}
var rsaEnc = []string{"RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"}

var keySpecs = map[string]specInfo{
	"SYMMETRIC_DEFAULT": {class: "symmetric", usages: []string{"ENCRYPT_DECRYPT"}, enc: []string{"SYMMETRIC_DEFAULT"}},
	"HMAC_224":          {class: "hmac", usages: []string{"GENERATE_VERIFY_MAC"}, hmacMin: 28, mac: "HMAC_SHA_224"},
	"HMAC_256":          {class: "hmac", usages: []string{"GENERATE_VERIFY_MAC"}, hmacMin: 32, mac: "HMAC_SHA_256"},
	"HMAC_384":          {class: "hmac", usages: []string{"GENERATE_VERIFY_MAC"}, hmacMin: 48, mac: "HMAC_SHA_384"},
	"HMAC_512":          {class: "hmac", usages: []string{"GENERATE_VERIFY_MAC"}, hmacMin: 64, mac: "HMAC_SHA_512"},
	"RSA_2048":          {class: "rsa", usages: []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY"}, bits: 2048, signing: rsaSigning, enc: rsaEnc},
	"RSA_3072":          {class: "rsa", usages: []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY"}, bits: 3072, signing: rsaSigning, enc: rsaEnc},
	"RSA_4096":          {class: "rsa", usages: []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY"}, bits: 4096, signing: rsaSigning, enc: rsaEnc},
	"ECC_NIST_P256":     {class: "ecc", usages: []string{"SIGN_VERIFY", "KEY_AGREEMENT"}, curve: "P-256", signing: []string{"ECDSA_SHA_256"}},
	"ECC_NIST_P384":     {class: "ecc", usages: []string{"SIGN_VERIFY", "KEY_AGREEMENT"}, curve: "P-384", signing: []string{"ECDSA_SHA_384"}},
	"ECC_NIST_P521":     {class: "ecc", usages: []string{"SIGN_VERIFY", "KEY_AGREEMENT"}, curve: "P-521", signing: []string{"ECDSA_SHA_512"}},
	"ECC_SECG_P256K1":   {class: "ecc", usages: []string{"SIGN_VERIFY"}, curve: "secp256k1", signing: []string{"ECDSA_SHA_256"}},
}

// hmacMax is the longest HMAC key KMS imports (1024 bits).
const hmacMax = 128

// Key material import and rotation states, as RotationsListEntry names them.
const (
	matCurrent         = "CURRENT"
	matNonCurrent      = "NON_CURRENT"
	matPendingRotation = "PENDING_ROTATION"
	// matPendingMulti: imported (NEW_KEY_MATERIAL) into a multi-Region
	// primary but not yet into every replica.
	matPendingMulti = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
)

// pending says whether material is not (yet) permanently associated with
// its key: imported for a rotation that has not completed.
func (m *keyMaterial) pending() bool {
	return m.state == matPendingRotation || m.state == matPendingMulti
}

// keyMaterial is one key material of a key.
type keyMaterial struct {
	id          string
	secret      []byte // canonical bytes: raw (symmetric, HMAC) or PKCS#8 DER
	imported    bool
	expiration  string // KEY_MATERIAL_EXPIRES | KEY_MATERIAL_DOES_NOT_EXPIRE
	validTo     *time.Time
	state       string
	rotatedAt   *time.Time
	description string
	priv        *privateKey // parsed, asymmetric only
}

type key struct {
	id, arn     string
	created     time.Time
	description string
	spec        string
	usage       string
	origin      string
	enabled     bool // administrative: false after DisableKey
	deletion    *time.Time
	window      int32
	multiRegion bool
	region      string // the Region of the Server holding the key
	// replicas of a multi-Region primary: Region -> replica ARN. A
	// replica in a Region some Server of the same world serves is a key
	// there (primary set); one in any other Region is only recorded: it
	// lives in another KMS (in the tests, a local-kms per Region).
	replicas map[string]string
	// externalImports: of the replicas recorded only, which key material
	// ids were imported into each (Region -> ids), as a test reports with
	// POST /_standin/replica-imports.
	externalImports map[string]map[string]bool
	// primary of a replica key (nil for every other key).
	primary *key
	// creating: a new replica, until the first sync reaches it.
	creating  bool
	materials []*keyMaterial // in association order
	tags      []Tag
	// rotating is the on-demand rotation in progress, if any.
	rotating *rotation
	// onDemandRotations started over the key's life.
	onDemandRotations int
	// history: the key before each change of the last StaleReadWindow.
	history []snapshot
}

// rotation is an on-demand rotation in progress.
type rotation struct {
	started time.Time
	toID    string // the imported material being made current (EXTERNAL)
}

func (k *key) material(id string) *keyMaterial {
	for _, m := range k.materials {
		if m.id == id {
			return m
		}
	}
	return nil
}

func (k *key) info() specInfo { return keySpecs[k.spec] }

// expire marks material whose ValidTo has passed as deleted (KMS deletes
// expired material; the key needs the same material again).
func (s *Server) expire(k *key) {
	now := s.clock()
	for _, m := range k.materials {
		if m.imported && m.validTo != nil && !now.Before(*m.validTo) {
			m.imported = false
		}
	}
}

func (k *key) current() *keyMaterial {
	for _, m := range k.materials {
		if m.state == matCurrent {
			return m
		}
	}
	return nil
}

// state is the KeyState as DescribeKey reports it.
func (s *Server) state(k *key) string {
	s.expire(k)
	if k.creating {
		return "Creating"
	}
	if k.deletion != nil {
		return "PendingDeletion"
	}
	if k.current() == nil {
		return "PendingImport"
	}
	for _, m := range k.materials {
		if !m.pending() && !m.imported {
			return "PendingImport"
		}
	}
	if !k.enabled {
		return "Disabled"
	}
	return "Enabled"
}

// usable checks a key can be used in a cryptographic operation.
func (s *Server) usable(k *key, usage string) *apiError {
	switch st := s.state(k); st {
	case "Enabled":
	case "Disabled":
		return errf(codeDisabled, "%s is disabled.", k.arn)
	default:
		return errf(codeInvalidState, "%s is %s and not available for this operation.", k.arn, st)
	}
	if k.usage != usage {
		return errf(codeInvalidKeyUsage, "%s key usage is %s which is not valid for this operation.", k.arn, k.usage)
	}
	return nil
}

// resolve finds a key by key id, key ARN, alias name or alias ARN.
func (s *Server) resolve(id string) (*key, *apiError) {
	if id == "" {
		return nil, errf(codeValidation, "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
	}
	orig := id
	prefix := "arn:aws:kms:" + s.region + ":" + s.account + ":"
	if strings.HasPrefix(id, "arn:") {
		rest, ok := strings.CutPrefix(id, prefix)
		if !ok {
			return nil, errf(codeNotFound, "Invalid arn %s", orig)
		}
		id = rest
		if kid, ok := strings.CutPrefix(rest, "key/"); ok {
			id = kid
		}
	}
	if strings.HasPrefix(id, "alias/") {
		kid, ok := s.aliases[id]
		if !ok {
			return nil, errf(codeNotFound, "Alias %s%s is not found.", prefix, id)
		}
		id = kid
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, errf(codeNotFound, "Key '%s%s' does not exist", prefix+"key/", id)
	}
	return k, nil
}

// decodeKey decodes a request into in, resolves the key its KeyId names
// with resolve (s.resolve takes an alias, s.resolveKeyOnly does not) and
// logs the key's ARN: how every operation on one key begins.
func (s *Server) decodeKey(body []byte, e *Request, in any, resolve func(string) (*key, *apiError)) (*key, *apiError) {
	if err := decode(body, in); err != nil {
		return nil, err
	}
	var id keyIDIn
	_ = json.Unmarshal(body, &id) // decoded above: the body is valid
	k, err := resolve(id.KeyId)
	if err != nil {
		return nil, err
	}
	e.KeyARN = k.arn
	return k, nil
}

// keyOf decodes a request that names only a key (KeyId), resolves it and
// logs its ARN.
func (s *Server) keyOf(body []byte, e *Request) (*key, *apiError) {
	return s.decodeKey(body, e, &keyIDIn{}, s.resolveKeyOnly)
}

// resolveKeyOnly is resolve for operations that take no alias.
func (s *Server) resolveKeyOnly(id string) (*key, *apiError) {
	if strings.HasPrefix(id, "alias/") || strings.Contains(id, ":alias/") {
		return nil, errf(codeNotFound, "%s is an alias; this operation takes a key id or key ARN", id)
	}
	return s.resolve(id)
}

type createKeyIn struct {
	Description           string
	KeyUsage              string
	KeySpec               string
	CustomerMasterKeySpec string
	Origin                string
	CustomKeyStoreId      string
	MultiRegion           *bool
	XksKeyId              string
	Tags                  []Tag
}

// Tag is a KMS resource tag (CreateKey, ReplicateKey, ListResourceTags):
// the local stack's IAM gate reads them for aws:ResourceTag/*.
type Tag struct{ TagKey, TagValue string }

func (s *Server) createKey(body []byte, e *Request) (any, *apiError) {
	var in createKeyIn
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	spec := in.KeySpec
	if spec == "" {
		spec = in.CustomerMasterKeySpec
	} else if in.CustomerMasterKeySpec != "" {
		return nil, errf(codeValidation, "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated.")
	}
	if spec == "" {
		spec = "SYMMETRIC_DEFAULT"
	}
	info, ok := keySpecs[spec]
	if !ok {
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: the stand-in supports %s", spec, strings.Join(sortedSpecs(), ", "))
	}
	usage := in.KeyUsage
	if usage == "" {
		usage = "ENCRYPT_DECRYPT" // the API's default, whatever the spec
	}
	if !slices.Contains(info.usages, usage) {
		return nil, errf(codeValidation, "KeyUsage %s is not compatible with KeySpec %s; valid: %s", usage, spec, strings.Join(info.usages, ", "))
	}
	origin := in.Origin
	if origin == "" {
		origin = "AWS_KMS"
	}
	switch origin {
	case "AWS_KMS", "EXTERNAL":
	case "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE":
		return nil, errf(codeUnsupported, "Origin %s needs a custom key store, which the stand-in does not have.", origin)
	default:
		return nil, errf(codeValidation, "1 validation error detected: Value '%s' at 'origin' failed to satisfy constraint: Member must satisfy enum value set: [EXTERNAL_KEY_STORE, AWS_CLOUDHSM, AWS_KMS, EXTERNAL]", origin)
	}
	if in.CustomKeyStoreId != "" || in.XksKeyId != "" {
		return nil, errf(codeUnsupported, "The stand-in has no custom key stores.")
	}
	if len(in.Description) > 8192 {
		return nil, errf(codeValidation, "Description is longer than 8192 characters.")
	}
	mr := in.MultiRegion != nil && *in.MultiRegion
	id := newUUID()
	if mr {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = "mrk-" + hex.EncodeToString(b[:])
	}
	k := &key{
		id: id, arn: s.keyARN(id), created: s.clock().UTC(), description: in.Description,
		spec: spec, usage: usage, origin: origin, enabled: true, multiRegion: mr, region: s.region, tags: in.Tags,
	}
	if origin == "AWS_KMS" {
		secret, err := generateMaterial(spec)
		if err != nil {
			return nil, errf(codeInternal, "generating key material: %v", err)
		}
		m := &keyMaterial{id: materialID(k.id, secret), secret: secret, imported: true, state: matCurrent}
		if info.class == "rsa" || info.class == "ecc" {
			p, aerr := parsePrivate(spec, secret)
			if aerr != nil {
				return nil, errf(codeInternal, "generated key: %s", aerr.Msg)
			}
			m.priv = p
		}
		k.materials = []*keyMaterial{m}
	}
	s.keys[id] = k
	s.order = append(s.order, id)
	s.w.created(k, s.clock())
	e.KeyARN = k.arn
	return map[string]any{"KeyMetadata": s.metadata(k)}, nil
}

func sortedSpecs() []string {
	out := make([]string, 0, len(keySpecs))
	for k := range keySpecs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *Server) keyARN(id string) string {
	return "arn:aws:kms:" + s.region + ":" + s.account + ":key/" + id
}

// metadata is KeyMetadata as the API reference describes it.
func (s *Server) metadata(k *key) map[string]any {
	st := s.state(k)
	info := k.info()
	md := map[string]any{
		"AWSAccountId":          s.account,
		"KeyId":                 k.id,
		"Arn":                   k.arn,
		"CreationDate":          ts(k.created),
		"Enabled":               st == "Enabled",
		"Description":           k.description,
		"KeyUsage":              k.usage,
		"KeyState":              st,
		"Origin":                k.origin,
		"KeyManager":            "CUSTOMER",
		"CustomerMasterKeySpec": k.spec,
		"KeySpec":               k.spec,
		"MultiRegion":           k.multiRegion,
	}
	switch {
	case k.usage == "ENCRYPT_DECRYPT":
		md["EncryptionAlgorithms"] = info.enc
	case k.usage == "SIGN_VERIFY":
		md["SigningAlgorithms"] = info.signing
	case k.usage == "GENERATE_VERIFY_MAC":
		md["MacAlgorithms"] = []string{info.mac}
	case k.usage == "KEY_AGREEMENT":
		md["KeyAgreementAlgorithms"] = []string{"ECDH"}
	}
	if k.deletion != nil {
		md["DeletionDate"] = ts(*k.deletion)
		md["PendingDeletionWindowInDays"] = k.window
	}
	if k.origin == "EXTERNAL" {
		// ExpirationModel and ValidTo describe the imported material: the
		// earliest ValidTo of the material permanently associated.
		if cur := k.current(); cur != nil && cur.imported {
			md["ExpirationModel"] = cur.expiration
			var earliest *time.Time
			for _, m := range k.materials {
				if !m.pending() && m.imported && m.validTo != nil && (earliest == nil || m.validTo.Before(*earliest)) {
					earliest = m.validTo
				}
			}
			if earliest != nil {
				md["ValidTo"] = ts(*earliest)
			}
		}
	}
	// Every symmetric key with (AWS_KMS or EXTERNAL) material has one,
	// single- and multi-Region, primary and replica alike.
	if cur := k.current(); cur != nil && info.class == "symmetric" {
		md["CurrentKeyMaterialId"] = cur.id
	}
	if k.multiRegion {
		typ, primary := "PRIMARY", k
		if k.primary != nil {
			typ, primary = "REPLICA", k.primary
		}
		md["MultiRegionConfiguration"] = map[string]any{
			"MultiRegionKeyType": typ,
			"PrimaryKey":         map[string]string{"Arn": primary.arn, "Region": primary.region},
			"ReplicaKeys":        replicaKeys(primary),
		}
	}
	return md
}

func replicaKeys(k *key) []map[string]string {
	out := []map[string]string{}
	regions := make([]string, 0, len(k.replicas))
	for r := range k.replicas {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, r := range regions {
		out = append(out, map[string]string{"Arn": k.replicas[r], "Region": r})
	}
	return out
}

type keyIDIn struct {
	KeyId string
}

func (s *Server) describeKey(body []byte, e *Request) (any, *apiError) {
	var in keyIDIn
	k, err := s.decodeKey(body, e, &in, s.resolve)
	if err != nil {
		return nil, err
	}
	v, err := s.read(k)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyMetadata": s.metadata(v)}, nil
}

// read is k as an eventually consistent read sees it (see world.view):
// NotFoundException if it was created within the stale-read window.
func (s *Server) read(k *key) (*key, *apiError) {
	v := s.w.view(k)
	if v == nil {
		return nil, errf(codeNotFound, "Key '%s' does not exist", k.arn)
	}
	return v, nil
}

type aliasIn struct {
	AliasName   string
	TargetKeyId string
}

func (s *Server) createAlias(body []byte, e *Request) (any, *apiError) {
	var in aliasIn
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(in.AliasName, "alias/") || len(in.AliasName) <= len("alias/") || len(in.AliasName) > 256 {
		return nil, errf(codeValidation, "Alias must start with the prefix \"alias/\" and be 1 to 256 characters long.")
	}
	if strings.HasPrefix(in.AliasName, "alias/aws/") {
		return nil, errf(codeInvalidAliasName, "Alias names that begin with alias/aws/ are reserved.")
	}
	for _, c := range strings.TrimPrefix(in.AliasName, "alias/") {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/_-", c)) {
			return nil, errf(codeValidation, "Alias %s contains the character %q; allowed: letters, digits, /, _ and -.", in.AliasName, c)
		}
	}
	if _, ok := s.aliases[in.AliasName]; ok {
		return nil, errf(codeAlreadyExists, "An alias with the name %s%s already exists", "arn:aws:kms:"+s.region+":"+s.account+":", in.AliasName)
	}
	k, err := s.resolveKeyOnly(in.TargetKeyId)
	if err != nil {
		return nil, err
	}
	if k.deletion != nil {
		return nil, errf(codeInvalidState, "%s is pending deletion.", k.arn)
	}
	e.KeyARN = k.arn
	s.aliases[in.AliasName] = k.id
	return map[string]any{}, nil
}

func (s *Server) deleteAlias(body []byte, e *Request) (any, *apiError) {
	var in aliasIn
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	kid, ok := s.aliases[in.AliasName]
	if !ok {
		return nil, errf(codeNotFound, "Alias %s is not found.", in.AliasName)
	}
	e.KeyARN = s.keyARN(kid)
	delete(s.aliases, in.AliasName)
	return map[string]any{}, nil
}

func (s *Server) listAliases(body []byte, e *Request) (any, *apiError) {
	var in struct{ KeyId string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	var want string
	if in.KeyId != "" {
		k, err := s.resolveKeyOnly(in.KeyId)
		if err != nil {
			return nil, err
		}
		want, e.KeyARN = k.id, k.arn
	}
	names := make([]string, 0, len(s.aliases))
	for n := range s.aliases {
		names = append(names, n)
	}
	slices.Sort(names)
	out := []map[string]any{}
	for _, n := range names {
		if want != "" && s.aliases[n] != want {
			continue
		}
		out = append(out, map[string]any{"AliasName": n, "AliasArn": "arn:aws:kms:" + s.region + ":" + s.account + ":" + n, "TargetKeyId": s.aliases[n]})
	}
	return map[string]any{"Aliases": out, "Truncated": false}, nil
}

type pageIn struct {
	Limit  *int32
	Marker string
}

// page returns the slice of n items a Limit/Marker pair selects and the
// next marker ("" when done).
func page(n int, in pageIn, def int) (int, int, string, *apiError) {
	limit := def
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > 1000 {
			return 0, 0, "", errf(codeValidation, "1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000", *in.Limit)
		}
		limit = int(*in.Limit)
	}
	start := 0
	if in.Marker != "" {
		v, err := strconv.Atoi(in.Marker)
		if err != nil || v < 0 || v > n {
			return 0, 0, "", errf(codeInvalidMarker, "Invalid marker %q", in.Marker)
		}
		start = v
	}
	end := min(start+limit, n)
	next := ""
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

func (s *Server) listKeys(body []byte, _ *Request) (any, *apiError) {
	var in pageIn
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	start, end, next, err := page(len(s.order), in, 100)
	if err != nil {
		return nil, err
	}
	keys := []map[string]string{}
	for _, id := range s.order[start:end] {
		keys = append(keys, map[string]string{"KeyId": id, "KeyArn": s.keyARN(id)})
	}
	out := map[string]any{"Keys": keys, "Truncated": next != ""}
	if next != "" {
		out["NextMarker"] = next
	}
	return out, nil
}

func (s *Server) enableKey(body []byte, e *Request) (any, *apiError) {
	return s.setEnabled(body, e, true)
}

func (s *Server) disableKey(body []byte, e *Request) (any, *apiError) {
	return s.setEnabled(body, e, false)
}

func (s *Server) setEnabled(body []byte, e *Request, on bool) (any, *apiError) {
	k, err := s.keyOf(body, e)
	if err != nil {
		return nil, err
	}
	switch st := s.state(k); st {
	case "Enabled", "Disabled":
	default:
		return nil, errf(codeInvalidState, "%s is %s and cannot be enabled or disabled.", k.arn, st)
	}
	s.w.touch(k, s.clock())
	k.enabled = on
	return map[string]any{}, nil
}

func (s *Server) scheduleKeyDeletion(body []byte, e *Request) (any, *apiError) {
	var in struct {
		KeyId               string
		PendingWindowInDays *int32
	}
	k, err := s.decodeKey(body, e, &in, s.resolveKeyOnly)
	if err != nil {
		return nil, err
	}
	w := int32(30)
	if in.PendingWindowInDays != nil {
		w = *in.PendingWindowInDays
		if w < 7 || w > 30 {
			return nil, errf(codeValidation, "PendingWindowInDays must be between 7 and 30, inclusive.")
		}
	}
	if k.deletion != nil {
		return nil, errf(codeInvalidState, "%s is pending deletion.", k.arn)
	}
	d := s.clock().UTC().Add(time.Duration(w) * 24 * time.Hour)
	s.w.touch(k, s.clock())
	k.deletion, k.window = &d, w
	return map[string]any{"KeyId": k.arn, "DeletionDate": ts(d), "KeyState": "PendingDeletion", "PendingWindowInDays": w}, nil
}

func (s *Server) cancelKeyDeletion(body []byte, e *Request) (any, *apiError) {
	k, err := s.keyOf(body, e)
	if err != nil {
		return nil, err
	}
	if k.deletion == nil {
		return nil, errf(codeInvalidState, "%s is not pending deletion.", k.arn)
	}
	s.w.touch(k, s.clock())
	k.deletion, k.window = nil, 0
	k.enabled = false // a key whose deletion is canceled is Disabled
	return map[string]any{"KeyId": k.arn}, nil
}

// materialID is the stand-in's key material identifier: derived, as the
// API reference says KMS's is, from the key id and the material (64 hex
// characters).
func materialID(keyID string, secret []byte) string {
	return hex.EncodeToString(sha256Sum([]byte("kms-standin material id\x00"+keyID+"\x00"), secret))
}

func describeLen(n int) string { return fmt.Sprintf("%d bytes", n) }

// listResourceTags answers the key's tags (no paging: a key has at most
// 50).
func (s *Server) listResourceTags(body []byte, e *Request) (any, *apiError) {
	k, err := s.keyOf(body, e)
	if err != nil {
		return nil, err
	}
	tags := k.tags
	if tags == nil {
		tags = []Tag{}
	}
	return map[string]any{"Tags": tags, "Truncated": false}, nil
}

// Package kmsstandin is a stand-in for the parts of AWS KMS that no local
// emulator covers: keys with imported material of every importable key spec
// (SYMMETRIC_DEFAULT, HMAC_*, RSA_*, ECC_*), every non-legacy wrapping
// algorithm and wrapping key spec, ImportType/KeyMaterialId, ListKeyRotations,
// RotateKeyOnDemand and multi-Region primary keys.
//
// It is test support code, not an emulator of AWS's: it answers as the KMS
// API reference documents each operation, in the KMS JSON 1.1 protocol
// (POST /, X-Amz-Target: TrentService.<Operation>), so unmodified SDK
// clients reach it through AWS_ENDPOINT_URL_KMS. Errors are
// {"__type":"<Code>","message":"..."} with HTTP 400, which the AWS SDKs map
// to their typed exceptions.
//
// It unwraps what a client sends with its own code (Go's standard library
// and an AES key wrap with padding written from RFC 5649 in kwp.go), so it
// shares neither code nor a crypto library with the product's wrap
// package (kwp_test.go asserts this), and keeps the material only in
// memory.
//
// Every request is logged (operation, resolved key ARN and non-secret
// parameters; never material, tokens, plaintext, MACs or signatures) and
// the log is readable at GET /_standin/requests.
package kmsstandin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options configure a Server.
type Options struct {
	Region  string // default eu-west-2
	Account string // default 111122223333
	// Now is the clock (default time.Now). The debug endpoint
	// POST /_standin/clock?advance=<duration> moves it forward.
	Now func() time.Time
	// WrappingKeyPool is how many distinct RSA wrapping key pairs are kept
	// per wrapping key spec (default 4): GetParametersForImport hands them
	// out in turn, generating each on first use.
	WrappingKeyPool int

	// Behaviours of real AWS, on by default (zero values pick the
	// defaults, Off turns a delay or window off). Each has an environment
	// variable in the command (EnvOptions); docs/kms-standin.md has the
	// details.

	// RotationDelay is how long a rotation started by RotateKeyOnDemand
	// takes to complete (default DefaultRotationDelay, 1.5s). Until then
	// GetKeyRotationStatus reports OnDemandRotationStartDate, the imported
	// material stays PENDING_ROTATION and the old material CURRENT.
	RotationDelay time.Duration
	// StaleReadWindow is how long after a change to a key DescribeKey,
	// ListKeyRotations and GetKeyRotationStatus still answer with the key
	// as it was before (default DefaultStaleReadWindow, 750ms; right after
	// CreateKey they answer NotFoundException).
	StaleReadWindow time.Duration
	// ReplicaSyncDelay is how long a multi-Region key's shared properties
	// take to reach its replicas (default DefaultReplicaSyncDelay, 1s): a
	// new replica stays Creating that long, and learns a KeyMaterialId
	// imported into the primary (or a rotation) that long after.
	ReplicaSyncDelay time.Duration
	// MaxOnDemandRotations is how many on-demand rotations a key may have
	// over its life (default DefaultMaxOnDemandRotations, 25; negative: no
	// limit). Past it RotateKeyOnDemand answers LimitExceededException.
	MaxOnDemandRotations int
}

// Server is the stand-in for one Region. It is an http.Handler; the zero
// value is not usable: call New (and InRegion for further Regions of the
// same partition, which multi-Region keys replicate into).
type Server struct {
	w               *world
	region, account string

	keys    map[string]*key // by key id
	order   []string        // key ids in creation order
	aliases map[string]string
	tokens  map[string]*importToken
	log     []Request
	seq     int
	// faults are injected errors per operation (POST /_standin/faults).
	faults map[string]*fault

	wrap *wrapPool
}

// New returns a Server with no keys.
func New(o Options) *Server {
	if o.Region == "" {
		o.Region = "eu-west-2"
	}
	if o.Account == "" {
		o.Account = "111122223333"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WrappingKeyPool <= 0 {
		o.WrappingKeyPool = 4
	}
	w := &world{now: o.Now, account: o.Account, opts: o, knobs: resolveKnobs(o), servers: map[string]*Server{}, wrap: newWrapPool(o.WrappingKeyPool)}
	return w.server(o.Region)
}

func (w *world) server(region string) *Server {
	if s := w.servers[region]; s != nil {
		return s
	}
	s := &Server{
		w: w, region: region, account: w.account,
		keys: map[string]*key{}, aliases: map[string]string{}, tokens: map[string]*importToken{}, faults: map[string]*fault{},
		wrap: w.wrap,
	}
	w.servers[region] = s
	return s
}

// InRegion returns the stand-in of another Region of the same partition,
// creating it on first use: it shares this one's clock and knobs, and
// ReplicateKey into its Region creates a real replica key there, whose
// imports, states and key material ids the stand-in tracks. (ReplicateKey
// into a Region no Server of the partition serves only records the
// replica's ARN: that replica lives in another KMS, see
// POST /_standin/replica-imports.)
func (s *Server) InRegion(region string) *Server {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.server(region)
}

// Region is the Region the stand-in puts in ARNs.
func (s *Server) Region() string { return s.region }

// Account is the account id the stand-in puts in ARNs.
func (s *Server) Account() string { return s.account }

// Behaviour describes the effective knobs, for logs.
func (s *Server) Behaviour() string { return s.w.knobs.String() }

func (s *Server) clock() time.Time { return s.w.clock() }

// Advance moves the stand-in's clock forward (for material expiry; it
// also lets pending rotations, replica syncs and stale reads run out). It
// is the clock of every Region of the partition.
func (s *Server) Advance(d time.Duration) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.offset += d
}

// Request is one entry of the request log.
type Request struct {
	Seq       int            `json:"seq"`
	Time      time.Time      `json:"time"`
	Operation string         `json:"operation"`
	KeyARN    string         `json:"keyArn,omitempty"`
	Params    map[string]any `json:"params,omitempty"`
	// Error is the error code returned, empty on success.
	Error string `json:"error,omitempty"`
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ResetRequests empties the request log.
func (s *Server) ResetRequests() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.log = nil
}

// apiError is an error answered as {"__type","message"}.
type apiError struct {
	Code, Msg string
	Status    int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Msg }

func errf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Msg: fmt.Sprintf(format, args...), Status: http.StatusBadRequest}
}

// Error codes, as the KMS API reference names them.
const (
	codeValidation         = "ValidationException"
	codeNotFound           = "NotFoundException"
	codeInvalidState       = "KMSInvalidStateException"
	codeUnsupported        = "UnsupportedOperationException"
	codeDisabled           = "DisabledException"
	codeInvalidKeyUsage    = "InvalidKeyUsageException"
	codeIncorrectKey       = "IncorrectKeyException"
	codeIncorrectMaterial  = "IncorrectKeyMaterialException"
	codeExpiredToken       = "ExpiredImportTokenException"
	codeInvalidToken       = "InvalidImportTokenException"
	codeInvalidCiphertext  = "InvalidCiphertextException"
	codeInvalidMac         = "KMSInvalidMacException"
	codeInvalidSignature   = "KMSInvalidSignatureException"
	codeAlreadyExists      = "AlreadyExistsException"
	codeInvalidAliasName   = "InvalidAliasNameException"
	codeInvalidMarker      = "InvalidMarkerException"
	codeUnknownOperation   = "UnknownOperationException"
	codeSerialization      = "SerializationException"
	codeInternal           = "KMSInternalException"
	codeLimitExceeded      = "LimitExceededException"
	codeConflict           = "ConflictException"
	codeInvalidArn         = "InvalidArnException"
	codeMalformedPolicyDoc = "MalformedPolicyDocumentException"
)

// GateHeader marks a request of the local stack's IAM gate
// (infra/local/iamgate) reading a key's facts.
const GateHeader = "X-Kms-Reimport-Iam-Gate"

// handler runs one operation: it decodes req, fills the log entry's key
// and returns the response object.
type handler func(s *Server, body []byte, e *Request) (any, *apiError)

var operations = map[string]handler{
	"CreateKey":                 (*Server).createKey,
	"CreateAlias":               (*Server).createAlias,
	"DeleteAlias":               (*Server).deleteAlias,
	"ListAliases":               (*Server).listAliases,
	"DescribeKey":               (*Server).describeKey,
	"ListResourceTags":          (*Server).listResourceTags,
	"ListKeys":                  (*Server).listKeys,
	"EnableKey":                 (*Server).enableKey,
	"DisableKey":                (*Server).disableKey,
	"ScheduleKeyDeletion":       (*Server).scheduleKeyDeletion,
	"CancelKeyDeletion":         (*Server).cancelKeyDeletion,
	"GetParametersForImport":    (*Server).getParametersForImport,
	"ImportKeyMaterial":         (*Server).importKeyMaterial,
	"DeleteImportedKeyMaterial": (*Server).deleteImportedKeyMaterial,
	"ListKeyRotations":          (*Server).listKeyRotations,
	"RotateKeyOnDemand":         (*Server).rotateKeyOnDemand,
	"GetKeyRotationStatus":      (*Server).getKeyRotationStatus,
	"ReplicateKey":              (*Server).replicateKey,
	"Encrypt":                   (*Server).encrypt,
	"Decrypt":                   (*Server).decrypt,
	"GenerateMac":               (*Server).generateMac,
	"VerifyMac":                 (*Server).verifyMac,
	"GetPublicKey":              (*Server).getPublicKey,
	"Sign":                      (*Server).sign,
	"Verify":                    (*Server).verify,
}

// Operations lists the operations the stand-in answers, sorted.
func Operations() []string {
	out := make([]string, 0, len(operations))
	for k := range operations {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// loggedParams are the request fields copied into the log as sent. Secret
// or bulky fields (ImportToken, EncryptedKeyMaterial, Plaintext, Message,
// Mac, Signature, CiphertextBlob, Policy) never are: sizedParams records
// their length only.
var loggedParams = []string{
	"KeyId", "TargetKeyId", "AliasName", "ReplicaRegion", "KeySpec", "CustomerMasterKeySpec", "KeyUsage", "Origin", "MultiRegion",
	"Description", "WrappingAlgorithm", "WrappingKeySpec", "ExpirationModel", "ValidTo", "ImportType",
	"KeyMaterialId", "KeyMaterialDescription", "EncryptionAlgorithm", "EncryptionContext", "SigningAlgorithm",
	"MessageType", "MacAlgorithm", "IncludeKeyMaterial", "PendingWindowInDays", "Limit", "Marker",
}

var sizedParams = []string{"EncryptedKeyMaterial", "Plaintext", "Message", "CiphertextBlob", "Mac", "Signature"}

func logParams(body []byte) map[string]any {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return nil
	}
	out := map[string]any{}
	for _, k := range loggedParams {
		if v, ok := raw[k]; ok {
			var x any
			d := json.NewDecoder(strings.NewReader(string(v)))
			d.UseNumber()
			if d.Decode(&x) == nil {
				if k == "ValidTo" {
					if n, ok := x.(json.Number); ok {
						if t, err := parseEpoch(n); err == nil {
							x = t.UTC().Format(time.RFC3339Nano)
						}
					}
				}
				out[k] = x
			}
		}
	}
	for _, k := range sizedParams {
		if v, ok := raw[k]; ok {
			var b []byte
			if json.Unmarshal(v, &b) == nil {
				out[k+"Bytes"] = len(b)
			}
		}
	}
	return out
}

// ServeHTTP answers KMS JSON 1.1 requests and the debug endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_standin/") {
		s.debug(w, r)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if r.Method != http.MethodPost || !ok {
		writeErr(w, errf(codeUnknownOperation, "expected POST / with X-Amz-Target: TrentService.<Operation>, got %s %s with X-Amz-Target %q", r.Method, r.URL.Path, target))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErr(w, errf(codeSerialization, "reading the request body: %v", err))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	h, ok := operations[op]
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.settle()
	// The local stack's IAM gate reads keys (DescribeKey,
	// ListResourceTags) to decide a function's request: not the product's
	// calls, so neither logged nor given an injected fault.
	gate := r.Header.Get(GateHeader) != ""
	if !gate {
		s.seq++
	}
	entry := Request{Seq: s.seq, Time: s.clock().UTC(), Operation: op, Params: logParams(body)}
	var out any
	var aerr *apiError
	if f := s.faults[op]; ok && !gate && f != nil && f.count > 0 {
		f.count--
		aerr = errf(f.code, "injected by the test (POST /_standin/faults)")
		var in keyIDIn
		if json.Unmarshal(body, &in) == nil {
			if k, kerr := s.resolve(in.KeyId); kerr == nil {
				entry.KeyARN = k.arn
			}
		}
	} else if !ok {
		aerr = errf(codeUnknownOperation, "the stand-in does not implement %s (it implements: %s)", op, strings.Join(Operations(), ", "))
	} else {
		out, aerr = h(s, body, &entry)
	}
	if aerr != nil {
		entry.Error = aerr.Code
	}
	if !gate {
		s.log = append(s.log, entry)
	}
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		writeErr(w, &apiError{Code: codeInternal, Msg: "encoding the response: " + err.Error(), Status: 500})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", newUUID())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", newUUID())
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"__type": e.Code, "message": e.Msg})
	_, _ = w.Write(b)
}

// debug serves GET/DELETE /_standin/requests,
// POST /_standin/clock?advance=<Go duration>, POST/DELETE /_standin/faults,
// POST /_standin/replica-imports and GET /_standin/health.
func (s *Server) debug(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/_standin/requests" && r.Method == http.MethodGet:
		reqs := s.Requests()
		if k := r.URL.Query().Get("keyArn"); k != "" {
			var f []Request
			for _, q := range reqs {
				if q.KeyARN == k {
					f = append(f, q)
				}
			}
			reqs = f
		}
		if reqs == nil {
			reqs = []Request{}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"requests": reqs})
	case r.URL.Path == "/_standin/requests" && r.Method == http.MethodDelete:
		s.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_standin/clock" && r.Method == http.MethodPost:
		d, err := time.ParseDuration(r.URL.Query().Get("advance"))
		if err != nil || d < 0 {
			http.Error(w, `{"error":"advance must be a non-negative Go duration, e.g. 25h"}`, http.StatusBadRequest)
			return
		}
		s.Advance(d)
		s.w.mu.Lock()
		now := s.clock()
		s.w.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"now": now.UTC()})
	case r.URL.Path == "/_standin/faults" && r.Method == http.MethodPost:
		q := r.URL.Query()
		n, err := strconv.Atoi(q.Get("count"))
		if q.Get("operation") == "" || q.Get("code") == "" || err != nil || n < 1 {
			http.Error(w, `{"error":"want ?operation=<Operation>&code=<ErrorCode>&count=<n>"}`, http.StatusBadRequest)
			return
		}
		s.w.mu.Lock()
		s.faults[q.Get("operation")] = &fault{code: q.Get("code"), count: n}
		s.w.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_standin/faults" && r.Method == http.MethodDelete:
		s.w.mu.Lock()
		s.faults = map[string]*fault{}
		s.w.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_standin/replica-imports" && r.Method == http.MethodPost:
		s.replicaImported(w, r)
	case r.URL.Path == "/_standin/health":
		k := s.w.knobs
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "region": s.region, "account": s.account,
			"rotationDelay": k.rotationDelay.String(), "staleReadWindow": k.staleWindow.String(),
			"replicaSyncDelay": k.syncDelay.String(), "maxOnDemandRotations": k.maxRotations})
	default:
		http.Error(w, `{"error":"unknown debug endpoint; try GET /_standin/requests"}`, http.StatusNotFound)
	}
}

// fault is an error the next count requests of an operation get.
type fault struct {
	code  string
	count int
}

// decode reads a request body into v; unknown fields are ignored as the
// service does.
func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return errf(codeSerialization, "the request body is not valid for this operation: %v", err)
	}
	return nil
}

// epoch is a timestamp in the JSON protocol's form: seconds since the
// epoch, as a number (fractions allowed).
type epoch struct{ time.Time }

func (t epoch) MarshalJSON() ([]byte, error) {
	ms := t.UnixMilli()
	return []byte(strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)), nil
}

func (t *epoch) UnmarshalJSON(b []byte) error {
	v, err := parseEpoch(json.Number(strings.TrimSpace(string(b))))
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

func parseEpoch(n json.Number) (time.Time, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q is not a number of seconds since the epoch", string(n))
	}
	sec := int64(f)
	nsec := int64((f - float64(sec)) * 1e9)
	return time.Unix(sec, nsec).UTC(), nil
}

func ts(t time.Time) *epoch { return &epoch{t} }

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

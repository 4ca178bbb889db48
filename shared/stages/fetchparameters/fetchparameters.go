// Package fetchparameters is the first stage: it validates the request, checks
// the key and the material, then calls GetParametersForImport and records
// the answer in a token record. Only a reference to that record leaves the
// stage.
package fetchparameters

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// KMS is the part of KMS this stage calls.
type KMS interface {
	kmsaccess.Describer
	GetParametersForImport(context.Context, *kms.GetParametersForImportInput, ...func(*kms.Options)) (*kms.GetParametersForImportOutput, error)
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Rotations
}

// Stage fetches import parameters.
type Stage struct {
	KMS     KMS
	Secrets keymaterial.SecretReader
	Tokens  *records.Tokens
	// Leases, when set, makes sure one execution at a time works on a key.
	Leases   *records.Leases
	Settings settings.Settings
	Now      func() time.Time
	// Materials is the material map (keys with several materials).
	Materials *records.Materials
	// SecretWriter stores generated material (generateMaterial).
	SecretWriter SecretWriter
	// Regions gives the KMS client of a replica's Region; nil uses KMS
	// for every Region.
	Regions RegionalKMS
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	out, err := st.run(ctx, s)
	if err != nil && st.Leases != nil && out.Key != nil && flow.NameOf(err) != flow.RotationInProgress {
		// A failed fetch gives back the lease it took (a retry takes it
		// again): record-failure gets the state from before this stage and
		// may not know the key's ARN, and the key must not stay locked.
		if rerr := st.Leases.Release(ctx, out.Key.ARN, s.Execution.ID); rerr != nil {
			telemetry.Logger(ctx).Warn("lease not released", "error", rerr.Error())
		}
	}
	return out, err
}

func (st *Stage) run(ctx context.Context, s flow.State) (flow.State, error) {
	if s.Execution.ID == "" {
		return s, flow.Errorf(flow.InvalidInput, "field \"execution.id\" is empty; the state machine passes $$.Execution.Id")
	}
	if s.Request == nil {
		r, err := flow.ParseRequest(s.Input, st.now(), st.Settings.RequestOptions())
		if err != nil {
			return s, err
		}
		s.Request = r
	}
	s.Input = nil
	if s.Plan != nil {
		// Back for the plan's next item (or fresh parameters for this one).
		if st.Leases != nil && s.Key != nil {
			var held *records.LeaseHeld
			if err := st.Leases.Acquire(ctx, s.Key.ARN, s.Execution.ID, st.now()); errors.As(err, &held) {
				return s, flow.Wrap(flow.RotationInProgress, err, "rotation already in progress")
			} else if err != nil {
				return s, flow.FromAWS(err, flow.Internal, "lease of %s", s.Key.ARN)
			}
		}
		return st.fetchItem(ctx, s)
	}
	fetches := 0
	if s.Token != nil {
		fetches = s.Token.Fetches
	}
	if fetches >= st.Settings.MaxTokenFetches {
		return s, flow.Errorf(flow.TokenRefreshLimitExceeded, "import parameters were fetched %d times in this execution (limit %d); each token was too close to expiry when the import stage got it", fetches, st.Settings.MaxTokenFetches)
	}
	r := s.Request

	md, err := kmsaccess.Describe(ctx, st.KMS, r.KeyID)
	if err != nil {
		return s, err
	}
	if err := kmsaccess.CheckImportable(md); err != nil {
		return s, err
	}
	arn := *md.Arn
	log := telemetry.Logger(ctx).With("keyArn", arn)
	if st.Leases != nil {
		// Taken (or, on a token refresh, extended) before anything else is
		// read or spent for this key.
		var held *records.LeaseHeld
		if err := st.Leases.Acquire(ctx, arn, s.Execution.ID, st.now()); errors.As(err, &held) {
			return s, flow.Wrap(flow.RotationInProgress, err, "rotation already in progress")
		} else if err != nil {
			return s, flow.FromAWS(err, flow.Internal, "lease of %s", arn)
		}
	}
	if s.Key == nil {
		s.Key = &flow.Key{ARN: arn, KeySpec: string(md.KeySpec), KeyUsage: string(md.KeyUsage), StateBefore: string(md.KeyState), ValidToBefore: md.ValidTo}
	} else if s.Key.ARN != arn {
		return s, flow.Errorf(flow.InvalidInput, "key %q now resolves to %s, not %s as earlier in this execution", r.KeyID, arn, s.Key.ARN)
	}

	if plan, err := wantsPlan(r, md); err != nil {
		return s, err
	} else if plan {
		if err := st.plan(ctx, &s, md); err != nil {
			return s, err
		}
		return st.fetchItem(ctx, s)
	}

	// The material is checked before any import token is asked for, so a
	// wrong secret costs nothing and changes nothing. The version read is
	// pinned for the rest of the execution.
	m, version, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, r.SecretVersionID, r.SecretVersionStage, md.KeySpec)
	if err != nil {
		return s, err
	}
	n := len(m)
	var pub []byte
	if keymaterial.IsAsymmetric(md.KeySpec) {
		// Derives the public key (for secp256k1 too), which also proves the
		// private key is whole.
		pub, err = keymaterial.PublicKeyDER(md.KeySpec, m)
	}
	keymaterial.Zero(m)
	if err != nil {
		return s, flow.Wrap(flow.InvalidSecret, err, "secret %q version %s does not hold a usable %s private key", r.SecretID, version, md.KeySpec)
	}
	r.SecretVersionID = version
	if pub != nil && md.KeyState == types.KeyStateEnabled {
		if err := st.samePublicKey(ctx, arn, r, pub); err != nil {
			return s, err
		}
	}

	if err := chooseWrapping(r, md.KeySpec, n); err != nil {
		return s, err
	}

	out, err := st.KMS.GetParametersForImport(ctx, &kms.GetParametersForImportInput{
		KeyId:             &arn,
		WrappingAlgorithm: types.AlgorithmSpec(r.WrappingAlgorithm),
		WrappingKeySpec:   types.WrappingKeySpec(r.WrappingKeySpec),
	})
	if err != nil {
		return s, gpiErr(err, arn, r)
	}
	if out.ParametersValidTo == nil || len(out.ImportToken) == 0 || len(out.PublicKey) == 0 {
		return s, flow.Errorf(flow.Internal, "GetParametersForImport for %s returned an incomplete answer", arn)
	}
	issued := st.now().UTC()
	id := newID()
	rec := records.Token{
		KeyARN:            arn,
		TokenID:           id,
		WrappingAlgorithm: r.WrappingAlgorithm,
		WrappingKeySpec:   r.WrappingKeySpec,
		IssuedAt:          issued,
		ParametersValidTo: out.ParametersValidTo.UTC(),
		ExecutionID:       s.Execution.ID,
		Status:            records.TokenIssued,
		SecretVersionID:   version,
		PublicKey:         out.PublicKey,
		ImportToken:       out.ImportToken,
	}
	rec.SK = records.TokenSK(issued, id)
	if err := st.Tokens.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording import parameters for %s", arn)
	}
	clear(out.ImportToken)
	s.Token = &flow.TokenRef{ID: rec.SK, ParametersValidTo: rec.ParametersValidTo, Fetches: fetches + 1}
	log.Info("import parameters fetched", "tokenId", rec.SK, "parametersValidTo", rec.ParametersValidTo,
		"wrappingAlgorithm", r.WrappingAlgorithm, "wrappingKeySpec", r.WrappingKeySpec, "secretVersionId", version, "fetch", fetches+1)
	return s, nil
}

// gpiErr names a GetParametersForImport error.
func gpiErr(err error, arn string, r *flow.Request) error {
	var is *types.KMSInvalidStateException
	var uo *types.UnsupportedOperationException
	switch {
	case errors.As(err, &is), errors.As(err, &uo):
		return flow.Wrap(flow.KeyNotEligible, err, "GetParametersForImport for %s", arn)
	case flow.AWSCode(err) == "ValidationException":
		return flow.Wrap(flow.UnsupportedWrapping, err, "GetParametersForImport for %s with %s/%s", arn, r.WrappingAlgorithm, r.WrappingKeySpec)
	}
	return flow.FromAWS(err, flow.Internal, "GetParametersForImport for %s", arn)
}

// samePublicKey refuses material whose public key differs from the one
// the key already has: KMS would refuse it (IncorrectKeyMaterial), and the
// refusal is cheaper before a token is fetched.
func (st *Stage) samePublicKey(ctx context.Context, arn string, r *flow.Request, pub []byte) error {
	out, err := st.KMS.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: &arn})
	if err != nil {
		return flow.FromAWS(err, flow.Internal, "GetPublicKey for %s", arn)
	}
	if !bytes.Equal(out.PublicKey, pub) {
		return flow.Errorf(flow.InvalidSecret, "secret %q version %s holds a private key whose public key (SHA-256 %s) differs from the public key of %s (SHA-256 %s): it is not the material already bound to the key",
			r.SecretID, r.SecretVersionID, Fingerprint(pub), arn, Fingerprint(out.PublicKey))
	}
	return nil
}

// Fingerprint is a short, loggable SHA-256 fingerprint of a public key.
func Fingerprint(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// chooseWrapping fills in the defaults for the key type and checks the
// combination before any token is requested.
func chooseWrapping(r *flow.Request, spec types.KeySpec, materialLen int) error {
	alg, ks := wrapping.Defaults(spec)
	if r.WrappingAlgorithm == "" && r.WrappingKeySpec == "" {
		r.WrappingDefaulted = true
	}
	if r.WrappingAlgorithm == "" {
		r.WrappingAlgorithm = string(alg)
	}
	if r.WrappingKeySpec == "" {
		r.WrappingKeySpec = string(ks)
	}
	if err := wrapping.Check(spec, types.AlgorithmSpec(r.WrappingAlgorithm), types.WrappingKeySpec(r.WrappingKeySpec), materialLen, r.AllowLegacyWrapping); err != nil {
		return flow.Wrap(flow.UnsupportedWrapping, err, "wrapping %s material", spec)
	}
	return nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

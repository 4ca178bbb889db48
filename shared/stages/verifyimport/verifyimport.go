// Package verifyimport is the last stage: it proves the key is Enabled with
// the expiry asked for and that it works, then writes the import record.
package verifyimport

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/wrapmaterial"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// KMS is the part of KMS this stage calls.
type KMS interface {
	kmsaccess.Describer
	Encrypt(context.Context, *kms.EncryptInput, ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(context.Context, *kms.DecryptInput, ...func(*kms.Options)) (*kms.DecryptOutput, error)
	GenerateMac(context.Context, *kms.GenerateMacInput, ...func(*kms.Options)) (*kms.GenerateMacOutput, error)
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(context.Context, *kms.SignInput, ...func(*kms.Options)) (*kms.SignOutput, error)
}

// Stage verifies an import and records it.
type Stage struct {
	KMS KMS
	// Secrets is read for HMAC and asymmetric keys, whose proof compares
	// KMS's answer with one computed from the pinned secret version.
	Secrets keymaterial.SecretReader
	Audit   *records.Imports
	// Registry, when set, keeps the key's renewal status (and registers it
	// when the request asks to).
	Registry *registry.Store
	// Leases, when set, gets the key's lease back.
	Leases *records.Leases
	// Tokens, when set, settles token records a retried stage left behind.
	Tokens *records.Tokens
	Now    func() time.Time
	// Plan path (docs/rotation.md): RotateKeyOnDemand and ListKeyRotations
	// on the primary, DescribeKey of replicas in their Regions, and the
	// material map.
	Rotator   Rotator
	Regions   RegionalKMS
	Materials *records.Materials
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	if s.Plan != nil {
		return st.runPlan(ctx, s)
	}
	if err := wrapmaterial.Needs(s); err != nil {
		return s, err
	}
	if s.Import == nil {
		return s, flow.Errorf(flow.InvalidInput, "field \"import\" is missing; this stage runs after the import stage")
	}
	r, k := s.Request, s.Key
	md, err := kmsaccess.Describe(ctx, st.KMS, k.ARN)
	if err != nil {
		return s, err
	}
	if md.KeyState != types.KeyStateEnabled {
		return s, flow.Errorf(flow.VerificationFailed, "key %s is %s after the import, not Enabled", k.ARN, md.KeyState)
	}
	if err := checkExpiry(md, r); err != nil {
		return s, err
	}
	proof, err := st.prove(ctx, md, r, s.Execution.ID)
	if err != nil {
		return s, err
	}

	rec := records.Import{
		SK:                records.ImportSK(s.Execution.StartTime, s.Execution.ID),
		KeyARN:            k.ARN,
		KeyID:             r.KeyID,
		RecordedAt:        st.now().UTC(),
		ImportedAt:        &s.Import.ImportedAt,
		Outcome:           records.ImportSucceeded,
		ExpirationModel:   r.ExpirationModel,
		ValidTo:           md.ValidTo,
		ValidToBefore:     k.ValidToBefore,
		KeyStateBefore:    k.StateBefore,
		KeyStateAfter:     string(md.KeyState),
		SecretID:          r.SecretID,
		SecretVersionID:   r.SecretVersionID,
		WrappingAlgorithm: r.WrappingAlgorithm,
		WrappingKeySpec:   r.WrappingKeySpec,
		WrappingDefaulted: r.WrappingDefaulted,
		TokenID:           s.Token.ID,
		TokenFetches:      s.Token.Fetches,
		ExecutionID:       s.Execution.ID,
		Verification:      proof,
	}
	if err := st.Audit.Put(ctx, rec); err != nil {
		return s, flow.FromAWS(err, flow.Internal, "recording the import of %s", k.ARN)
	}
	if err := st.bookkeep(ctx, s, md.ValidTo, rec.RecordedAt); err != nil {
		return s, err
	}
	s.Verified = &flow.Verification{KeyState: string(md.KeyState), ValidTo: md.ValidTo, RoundTrip: proof, AuditID: rec.SK}
	telemetry.Logger(ctx).Info("import verified and recorded", "keyState", md.KeyState, "validTo", md.ValidTo, "auditId", rec.SK)
	return s, nil
}

func checkExpiry(md *types.KeyMetadata, r *flow.Request) error {
	switch r.ExpirationModel {
	case flow.DoesNotExpire:
		if md.ExpirationModel != types.ExpirationModelTypeKeyMaterialDoesNotExpire {
			return flow.Errorf(flow.VerificationFailed, "key %s has expiration model %q after the import, want %s", *md.Arn, md.ExpirationModel, flow.DoesNotExpire)
		}
	default:
		if md.ValidTo == nil || !md.ValidTo.Equal(*r.ValidTo) {
			got := "none"
			if md.ValidTo != nil {
				got = md.ValidTo.UTC().Format(time.RFC3339)
			}
			return flow.Errorf(flow.VerificationFailed, "key %s has ValidTo %s after the import, want %s", *md.Arn, got, r.ValidTo.Format(time.RFC3339))
		}
	}
	return nil
}

// roundTrip encrypts a random probe under the key and decrypts it again.
func (st *Stage) roundTrip(ctx context.Context, arn, execID string) (string, error) {
	probe := make([]byte, 32)
	if _, err := rand.Read(probe); err != nil {
		return "", flow.Wrap(flow.Internal, err, "random probe")
	}
	ec := map[string]string{"purpose": "kms-reimport verification", "execution": execID}
	enc, err := st.KMS.Encrypt(ctx, &kms.EncryptInput{KeyId: &arn, Plaintext: probe, EncryptionContext: ec})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "Encrypt with %s", arn)
	}
	dec, err := st.KMS.Decrypt(ctx, &kms.DecryptInput{KeyId: &arn, CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil {
		return "", flow.FromAWS(err, flow.VerificationFailed, "Decrypt with %s", arn)
	}
	if !bytes.Equal(dec.Plaintext, probe) {
		return "", flow.Errorf(flow.VerificationFailed, "Encrypt/Decrypt round trip with %s returned different bytes", arn)
	}
	return fmt.Sprintf("Encrypt/Decrypt round trip of a %d-byte random probe: equal", len(probe)), nil
}

// bookkeep registers the key (when asked), notes the success in the
// registry, gives the lease back and counts the renewal.
func (st *Stage) bookkeep(ctx context.Context, s flow.State, validTo *time.Time, at time.Time) error {
	r, k := s.Request, s.Key
	if st.Tokens != nil {
		// Tokens a crashed and retried stage left behind are never used.
		for _, arn := range keysOf(s) {
			if _, err := st.Tokens.AbandonExecution(ctx, arn, s.Execution.ID, "superseded: the execution imported with another token"); err != nil {
				return flow.FromAWS(err, flow.Internal, "settling the token records of %s", arn)
			}
		}
	}
	if st.Registry != nil {
		if r.Register {
			e := registry.Entry{KeyARN: k.ARN, SecretID: r.SecretID, SecretVersionStage: r.SecretVersionStage,
				NoExpiry: r.ExpirationModel == flow.DoesNotExpire, RenewBefore: r.RenewBefore,
				WrappingAlgorithm: r.WrappingAlgorithm, WrappingKeySpec: r.WrappingKeySpec}
			if r.WrappingDefaulted {
				e.WrappingAlgorithm, e.WrappingKeySpec = "", "" // keep choosing the best
			}
			if !e.NoExpiry {
				e.ValidFor = r.ValidFor
			}
			if r.RotateEvery != "" {
				e.RotateEvery, e.NewMaterialStage, e.GenerateMaterial = r.RotateEvery, r.NewMaterialStage, r.GenerateMaterial
			}
			if err := st.Registry.Put(ctx, e); err != nil {
				return flow.FromAWS(err, flow.Internal, "registering %s", k.ARN)
			}
		}
		if err := st.Registry.RecordSuccess(ctx, k.ARN, s.Execution.ID, at, validTo); err != nil {
			return flow.FromAWS(err, flow.Internal, "noting the renewal of %s", k.ARN)
		}
	}
	if st.Leases != nil {
		if err := st.Leases.Release(ctx, k.ARN, s.Execution.ID); err != nil {
			return flow.FromAWS(err, flow.Internal, "releasing the lease of %s", k.ARN)
		}
	}
	ms := []telemetry.Metric{{Name: "KeysRenewed", Value: 1, Unit: telemetry.Count}}
	if validTo != nil {
		ms = append(ms, telemetry.Metric{Name: "DaysUntilExpiry", Value: math.Round(time.Until(*validTo).Hours()/24*100) / 100, Unit: telemetry.None})
	}
	telemetry.Emit(telemetry.Service, ms...)
	return nil
}

// keysOf lists the key ARNs an execution fetched tokens for: the key and,
// with a plan, each replica.
func keysOf(s flow.State) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if s.Key != nil {
		add(s.Key.ARN)
	}
	if s.Plan != nil {
		for _, it := range s.Plan.Items {
			add(it.KeyARN)
		}
	}
	return out
}

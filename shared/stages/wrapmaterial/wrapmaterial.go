// Package wrapmaterial is the second stage: it reads the pinned secret version,
// wraps the material with the public key of the token record and stores the
// wrapped bytes beside the token. Plaintext exists only inside Run.
package wrapmaterial

import (
	"context"
	"crypto/rand"
	"errors"
	"io"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/keymaterial"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
	"github.com/kms-reimport/kms-reimport/shared/wrapping"
)

// Tokens is the part of the token store this stage calls: the public key
// read (projected: no token bytes), the wrapped bytes stored.
type Tokens interface {
	Get(ctx context.Context, keyARN, sk string) (*records.Token, error)
	SetWrapped(ctx context.Context, keyARN, sk string, encrypted []byte, secretVersionID string) error
}

// Stage wraps key material.
type Stage struct {
	Secrets keymaterial.SecretReader
	Tokens  Tokens
	Rand    io.Reader
}

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, s flow.State) (flow.State, error) {
	if err := s.CheckToken(); err != nil {
		return s, err
	}
	r, k, tok := s.Request, s.Key, s.Progress.Token
	version := s.Current().SecretVersionID // this item's material
	rec, err := st.Tokens.Get(ctx, k.ARN, tok.ID)
	if err != nil {
		return s, tokenErr(err)
	}
	if rec.Status != records.TokenIssued && rec.Status != records.TokenWrapped {
		return s, flow.Errorf(flow.TokenStateConflict, "token record %s is %s; only an issued token can be wrapped for", rec.SK, rec.Status)
	}
	pub, err := wrapping.ParsePublicKey(rec.PublicKey, types.WrappingKeySpec(rec.WrappingKeySpec))
	if err != nil {
		return s, flow.Wrap(flow.UnsupportedWrapping, err, "public key of token record %s", rec.SK)
	}
	m, _, err := keymaterial.ReadSecret(ctx, st.Secrets, r.SecretID, version, "", types.KeySpec(k.KeySpec))
	if err != nil {
		return s, err
	}
	random := st.Rand
	if random == nil {
		random = rand.Reader
	}
	enc, err := wrapping.WrapWithOptions(pub, types.AlgorithmSpec(rec.WrappingAlgorithm), m, random, wrapping.Options{AllowLegacyPKCS1: r.AllowLegacyWrapping})
	keymaterial.Zero(m)
	if err != nil {
		return s, flow.Wrap(flow.UnsupportedWrapping, err, "wrapping %s material of secret %q version %s", k.KeySpec, r.SecretID, version)
	}
	if err := st.Tokens.SetWrapped(ctx, k.ARN, rec.SK, enc, version); err != nil {
		return s, tokenErr(err)
	}
	tok.Wrapped = true
	telemetry.Logger(ctx).Info("key material wrapped", "tokenId", rec.SK, "wrappingAlgorithm", rec.WrappingAlgorithm,
		"wrappingKeySpec", rec.WrappingKeySpec, "secretVersionId", version, "wrappedBytes", len(enc))
	return s, nil
}

// tokenErr names a token store error.
func tokenErr(err error) error {
	if errors.Is(err, records.ErrConflict) {
		return flow.Wrap(flow.TokenStateConflict, err, "token record")
	}
	return flow.FromAWS(err, flow.Internal, "token record")
}

package wrapmaterial

import (
	"context"
	"fmt"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

// memTokens is an in-memory token store with the conditions of
// records.Tokens for what this stage calls.
type memTokens map[string]*records.Token

func (m memTokens) Get(_ context.Context, keyARN, sk string) (*records.Token, error) {
	r, ok := m[sk]
	if !ok || r.KeyARN != keyARN {
		return nil, fmt.Errorf("%w: token record %s not found", records.ErrConflict, sk)
	}
	c := *r
	c.ImportToken, c.EncryptedKeyMaterial = nil, nil // a projected read
	return &c, nil
}

func (m memTokens) SetWrapped(_ context.Context, keyARN, sk string, encrypted []byte, version string) error {
	r, ok := m[sk]
	if !ok || r.KeyARN != keyARN || (r.Status != records.TokenIssued && r.Status != records.TokenWrapped) {
		return fmt.Errorf("%w: token record %s is missing or not in a status that allows this", records.ErrConflict, sk)
	}
	r.Status, r.EncryptedKeyMaterial, r.SecretVersionID = records.TokenWrapped, append([]byte(nil), encrypted...), version
	return nil
}

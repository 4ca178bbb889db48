package fetchparameters

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

// memTokens is an in-memory token store: what the stage calls of it.
type memTokens struct {
	mu   sync.Mutex
	recs []records.Token
}

func (m *memTokens) SettleOthers(_ context.Context, keyARN, execID string, _ time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for i, r := range m.recs {
		if r.KeyARN == keyARN && r.ExecutionID != execID && (r.Status == records.TokenIssued || r.Status == records.TokenWrapped) {
			m.recs[i].Status, m.recs[i].ImportToken, m.recs[i].EncryptedKeyMaterial = records.TokenExpired, nil, nil
			n++
		}
	}
	return n, nil
}

func (m *memTokens) Put(_ context.Context, r records.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.recs {
		if o.KeyARN == r.KeyARN && o.SK == r.SK {
			return fmt.Errorf("%w: token record %s exists", records.ErrConflict, r.SK)
		}
	}
	r.ImportToken = append([]byte(nil), r.ImportToken...) // the stage clears its copy
	m.recs = append(m.recs, r)
	return nil
}

func (m *memTokens) list(keyARN string) []records.Token {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []records.Token
	for _, r := range m.recs {
		if r.KeyARN == keyARN {
			out = append(out, r)
		}
	}
	return out
}

// memLeases is an in-memory lease store with the conditions of
// records.Leases: one owner per key until it releases it.
type memLeases struct {
	mu     sync.Mutex
	owners map[string]string
}

func (m *memLeases) Acquire(_ context.Context, arn, owner string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owners == nil {
		m.owners = map[string]string{}
	}
	if o, held := m.owners[arn]; held && o != owner {
		return &records.LeaseHeld{Owner: o}
	}
	m.owners[arn] = owner
	return nil
}

func (m *memLeases) Release(_ context.Context, arn, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owners[arn] == owner {
		delete(m.owners, arn)
	}
	return nil
}

// memMaterials is a material map.
type memMaterials map[string]map[string]records.Material

func (m memMaterials) List(_ context.Context, keyARN string) (map[string]records.Material, error) {
	out := map[string]records.Material{}
	for id, r := range m[keyARN] {
		out[id] = r
	}
	return out, nil
}

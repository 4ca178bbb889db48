package verifyimport

import (
	"context"
	"sync"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// In-memory stores for the stage's unit tests: the stores' own behaviour
// (conditions, projections) is tested on DynamoDB Local in tests/stores.

type memAudit struct {
	mu   sync.Mutex
	recs []records.Import
}

func (m *memAudit) Put(_ context.Context, r records.Import) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, old := range m.recs {
		if old.KeyARN == r.KeyARN && old.SK == r.SK {
			return records.ErrRecorded
		}
	}
	m.recs = append(m.recs, r)
	return nil
}

func (m *memAudit) List(_ context.Context, arn string) ([]records.Import, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []records.Import
	for _, r := range m.recs {
		if r.KeyARN == arn {
			out = append(out, r)
		}
	}
	return out, nil
}

type memTokens struct{ abandoned []string }

func (m *memTokens) AbandonExecution(_ context.Context, keyARN, _, _ string) (int, error) {
	m.abandoned = append(m.abandoned, keyARN)
	return 0, nil
}

type memLeases struct{ fenced, released int }

func (m *memLeases) Fence(context.Context, string, string, time.Time) error { m.fenced++; return nil }
func (m *memLeases) Release(context.Context, string, string) error          { m.released++; return nil }

type memMaterials struct{ m map[string]records.Material }

func (m *memMaterials) List(context.Context, string) (map[string]records.Material, error) {
	out := map[string]records.Material{}
	for k, v := range m.m {
		out[k] = v
	}
	return out, nil
}

func (m *memMaterials) Put(_ context.Context, r records.Material) error {
	if m.m == nil {
		m.m = map[string]records.Material{}
	}
	m.m[r.KeyMaterialID] = r
	return nil
}

type memRegistry struct{ renewals []registry.Renewal }

func (m *memRegistry) RecordRenewal(_ context.Context, r registry.Renewal) (bool, error) {
	m.renewals = append(m.renewals, r)
	return true, nil
}

// The material map keeps the material map of keys that hold several key
// materials: which secret version holds each KeyMaterialId, so a renewal
// reimports every material from its own version. One item per material,
// in the key's partition (pk KEY#<primary key ARN>, sk MATERIAL#<id>); no
// material and no token, only references.

package records

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// States of a material, as the product tracks them.
const (
	// MaterialPendingRotation: imported as NEW_KEY_MATERIAL, RotateKeyOnDemand not
	// yet done. A rerun only rotates.
	MaterialPendingRotation = "pending-rotation"
	MaterialCurrent         = "current"
	MaterialNonCurrent      = "non-current"
	// MaterialImported: reimported by an execution whose verify stage has not
	// run yet (it sets the state KMS reports).
	MaterialImported = "imported"
)

// Material maps one KeyMaterialId to the secret version holding it.
type Material struct {
	PK              string    `dynamodbav:"pk"`
	SK              string    `dynamodbav:"sk"`
	Type            string    `dynamodbav:"type"`
	KeyARN          string    `dynamodbav:"keyArn"`
	KeyMaterialID   string    `dynamodbav:"keyMaterialId"`
	SecretID        string    `dynamodbav:"secretId"`
	SecretVersionID string    `dynamodbav:"secretVersionId"`
	State           string    `dynamodbav:"state"`
	Generated       bool      `dynamodbav:"generated,omitempty"`
	FirstImportedAt time.Time `dynamodbav:"firstImportedAt"`
	LastImportedAt  time.Time `dynamodbav:"lastImportedAt"`
	// ValidTo per Region (primary and replicas) after the last import.
	ValidTo     map[string]time.Time `dynamodbav:"validTo,omitempty"`
	RotatedAt   *time.Time           `dynamodbav:"rotatedAt,omitempty"`
	ExecutionID string               `dynamodbav:"executionId"`
}

// Materials reads and writes the material map.
type Materials struct {
	DB    DB
	Table string
}

// MaterialSK is the sort key of a material's record.
func MaterialSK(id string) string { return "MATERIAL#" + id }

// Put writes r (replacing the record of the same material).
func (s *Materials) Put(ctx context.Context, r Material) error {
	r.PK, r.SK, r.Type = PK(r.KeyARN), MaterialSK(r.KeyMaterialID), "material"
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("encoding material record: %w", err)
	}
	if _, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.Table, Item: item}); err != nil {
		return fmt.Errorf("writing material record %s: %w", r.SK, err)
	}
	return nil
}

// Merge writes r, keeping the state, first import time and ValidTo of
// an existing record of the same material.
func (s *Materials) Merge(ctx context.Context, r Material) error {
	all, err := s.List(ctx, r.KeyARN)
	if err != nil {
		return err
	}
	if old, ok := all[r.KeyMaterialID]; ok {
		r.State, r.FirstImportedAt, r.ValidTo, r.RotatedAt, r.Generated = old.State, old.FirstImportedAt, old.ValidTo, old.RotatedAt, old.Generated
	}
	return s.Put(ctx, r)
}

// List returns a key's material records by KeyMaterialId.
func (s *Materials) List(ctx context.Context, keyARN string) (map[string]Material, error) {
	recs, err := List[Material](ctx, s.DB, s.Table, keyARN, "MATERIAL#")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Material, len(recs))
	for _, r := range recs {
		out[r.KeyMaterialID] = r
	}
	return out, nil
}

// MaterialByVersion finds the material a secret version holds, if mapped.
func MaterialByVersion(m map[string]Material, versionID string) (Material, bool) {
	for _, r := range m {
		if r.SecretVersionID == versionID {
			return r, true
		}
	}
	return Material{}, false
}

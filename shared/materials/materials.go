// Package materials keeps the material map of keys that hold several key
// materials: which secret version holds each KeyMaterialId, so a renewal
// reimports every material from its own version. One item per material,
// in the key's partition (pk KEY#<primary key ARN>, sk MATERIAL#<id>); no
// material and no token, only references.
package materials

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/kms-reimport/kms-reimport/shared/keyrecords"

	"github.com/kms-reimport/kms-reimport/shared/tokens"
)

// States of a material, as the product tracks them.
const (
	// PendingRotation: imported as NEW_KEY_MATERIAL, RotateKeyOnDemand not
	// yet done. A rerun only rotates.
	PendingRotation = "pending-rotation"
	Current         = "current"
	NonCurrent      = "non-current"
	// Imported: reimported by an execution whose verify stage has not
	// run yet (it sets the state KMS reports).
	Imported = "imported"
)

// DB is the part of DynamoDB this package uses.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Record maps one KeyMaterialId to the secret version holding it.
type Record struct {
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

// Store reads and writes the material map.
type Store struct {
	DB    DB
	Table string
}

// SK is the sort key of a material's record.
func SK(id string) string { return "MATERIAL#" + id }

// Put writes r (replacing the record of the same material).
func (s *Store) Put(ctx context.Context, r Record) error {
	r.PK, r.SK, r.Type = tokens.PK(r.KeyARN), SK(r.KeyMaterialID), "material"
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
func (s *Store) Merge(ctx context.Context, r Record) error {
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
func (s *Store) List(ctx context.Context, keyARN string) (map[string]Record, error) {
	recs, err := keyrecords.List[Record](ctx, s.DB, s.Table, keyARN, "MATERIAL#")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Record, len(recs))
	for _, r := range recs {
		out[r.KeyMaterialID] = r
	}
	return out, nil
}

// ByVersion finds the material a secret version holds, if mapped.
func ByVersion(m map[string]Record, versionID string) (Record, bool) {
	for _, r := range m {
		if r.SecretVersionID == versionID {
			return r, true
		}
	}
	return Record{}, false
}

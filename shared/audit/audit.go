// Package audit keeps the import records an auditor reads: one per
// execution and key, success or failure, with no material and no token.
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/kms-reimport/kms-reimport/shared/keyrecords"

	"github.com/kms-reimport/kms-reimport/shared/tokens"
)

// Outcomes of an import.
const (
	Succeeded = "succeeded"
	Failed    = "failed"
)

// DB is the part of DynamoDB this package uses.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Record is one import record.
type Record struct {
	PK                string     `dynamodbav:"pk"`
	SK                string     `dynamodbav:"sk"`
	Type              string     `dynamodbav:"type"`
	KeyARN            string     `dynamodbav:"keyArn"`
	KeyID             string     `dynamodbav:"keyId,omitempty"`
	RecordedAt        time.Time  `dynamodbav:"recordedAt"`
	ImportedAt        *time.Time `dynamodbav:"importedAt,omitempty"`
	Outcome           string     `dynamodbav:"outcome"`
	ExpirationModel   string     `dynamodbav:"expirationModel,omitempty"`
	ValidTo           *time.Time `dynamodbav:"validTo,omitempty"`
	ValidToBefore     *time.Time `dynamodbav:"validToBefore,omitempty"`
	KeyStateBefore    string     `dynamodbav:"keyStateBefore,omitempty"`
	KeyStateAfter     string     `dynamodbav:"keyStateAfter,omitempty"`
	SecretID          string     `dynamodbav:"secretId,omitempty"`
	SecretVersionID   string     `dynamodbav:"secretVersionId,omitempty"`
	WrappingAlgorithm string     `dynamodbav:"wrappingAlgorithm,omitempty"`
	WrappingKeySpec   string     `dynamodbav:"wrappingKeySpec,omitempty"`
	WrappingDefaulted bool       `dynamodbav:"wrappingDefaulted,omitempty"`
	TokenID           string     `dynamodbav:"tokenId,omitempty"`
	TokenFetches      int        `dynamodbav:"tokenFetches,omitempty"`
	ExecutionID       string     `dynamodbav:"executionId"`
	Verification      string     `dynamodbav:"verification,omitempty"`
	Stage             string     `dynamodbav:"stage,omitempty"`
	ErrorName         string     `dynamodbav:"errorName,omitempty"`
	Cause             string     `dynamodbav:"cause,omitempty"`
	ExpiresAt         int64      `dynamodbav:"expiresAt,omitempty"`
	// For keys with several materials, rotations and multi-Region keys:
	// every material imported (KeyMaterialId <-> secret version, Region),
	// the rotation, and each Region's key state and ValidTo after.
	Materials     []Material `dynamodbav:"materials,omitempty"`
	Rotated       bool       `dynamodbav:"rotated,omitempty"`
	NewMaterialID string     `dynamodbav:"newMaterialId,omitempty"`
	Resumed       bool       `dynamodbav:"resumed,omitempty"`
	Regions       []Region   `dynamodbav:"regions,omitempty"`
}

// Material is one ImportKeyMaterial of an execution.
type Material struct {
	Region          string     `dynamodbav:"region"`
	KeyARN          string     `dynamodbav:"keyArn"`
	KeyMaterialID   string     `dynamodbav:"keyMaterialId"`
	SecretVersionID string     `dynamodbav:"secretVersionId"`
	ImportType      string     `dynamodbav:"importType"`
	ValidTo         *time.Time `dynamodbav:"validTo,omitempty"`
	TokenID         string     `dynamodbav:"tokenId,omitempty"`
	ImportedAt      *time.Time `dynamodbav:"importedAt,omitempty"`
}

// Region is the primary key or a replica after the execution.
type Region struct {
	Region      string     `dynamodbav:"region"`
	KeyARN      string     `dynamodbav:"keyArn"`
	Replica     bool       `dynamodbav:"replica,omitempty"`
	StateBefore string     `dynamodbav:"stateBefore,omitempty"`
	StateAfter  string     `dynamodbav:"stateAfter,omitempty"`
	ValidTo     *time.Time `dynamodbav:"validTo,omitempty"`
	Skipped     bool       `dynamodbav:"skipped,omitempty"`
}

// Store writes import records.
type Store struct {
	DB        DB
	Table     string
	Retention time.Duration // 0 keeps records for ever
}

// SK is the sort key of the record of one execution: stable, so a retried
// stage overwrites its own record instead of adding a second one.
func SK(executionStart, executionID string) string {
	return "IMPORT#" + executionStart + "#" + executionID
}

// Put writes r, replacing the record of the same execution if any.
func (s *Store) Put(ctx context.Context, r Record) error {
	r.PK, r.Type = tokens.PK(r.KeyARN), "import"
	if s.Retention > 0 {
		r.ExpiresAt = r.RecordedAt.Add(s.Retention).Unix()
	}
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("encoding import record: %w", err)
	}
	if _, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.Table, Item: item}); err != nil {
		return fmt.Errorf("writing import record %s: %w", r.SK, err)
	}
	return nil
}

// List returns a key's import records, oldest first.
func (s *Store) List(ctx context.Context, keyARN string) ([]Record, error) {
	return keyrecords.List[Record](ctx, s.DB, s.Table, keyARN, "IMPORT#")
}

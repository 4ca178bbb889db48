// Import records keep the import records an auditor reads: one per
// execution and key, success or failure, with no material and no token.

package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Outcomes of an import.
const (
	ImportSucceeded = "succeeded"
	ImportFailed    = "failed"
)

// Import is one import record.
type Import struct {
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
	Materials     []ImportMaterial `dynamodbav:"materials,omitempty"`
	Rotated       bool             `dynamodbav:"rotated,omitempty"`
	NewMaterialID string           `dynamodbav:"newMaterialId,omitempty"`
	Resumed       bool             `dynamodbav:"resumed,omitempty"`
	Regions       []ImportRegion   `dynamodbav:"regions,omitempty"`
}

// ImportMaterial is one ImportKeyMaterial of an execution.
type ImportMaterial struct {
	Region          string     `dynamodbav:"region"`
	KeyARN          string     `dynamodbav:"keyArn"`
	KeyMaterialID   string     `dynamodbav:"keyMaterialId"`
	SecretVersionID string     `dynamodbav:"secretVersionId"`
	ImportType      string     `dynamodbav:"importType"`
	ValidTo         *time.Time `dynamodbav:"validTo,omitempty"`
	TokenID         string     `dynamodbav:"tokenId,omitempty"`
	ImportedAt      *time.Time `dynamodbav:"importedAt,omitempty"`
}

// ImportRegion is the primary key or a replica after the execution.
type ImportRegion struct {
	Region      string     `dynamodbav:"region"`
	KeyARN      string     `dynamodbav:"keyArn"`
	Replica     bool       `dynamodbav:"replica,omitempty"`
	StateBefore string     `dynamodbav:"stateBefore,omitempty"`
	StateAfter  string     `dynamodbav:"stateAfter,omitempty"`
	ValidTo     *time.Time `dynamodbav:"validTo,omitempty"`
	Skipped     bool       `dynamodbav:"skipped,omitempty"`
}

// Imports writes import records.
type Imports struct {
	DB        DB
	Table     string
	Retention time.Duration // 0 keeps records for ever
}

// ImportSK is the sort key of the record of one execution: stable, so a
// retried stage finds its own record (Put refuses a second, ErrRecorded)
// instead of adding another.
func ImportSK(executionStart, executionID string) string {
	return "IMPORT#" + executionStart + "#" + executionID
}

// Put writes r once (ErrRecorded after); a failed record replaces a
// succeeded one of the same execution.
func (s *Imports) Put(ctx context.Context, r Import) error {
	r.PK, r.Type = PK(r.KeyARN), "import"
	if s.Retention > 0 {
		r.ExpiresAt = r.RecordedAt.Add(s.Retention).Unix()
	}
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("encoding import record: %w", err)
	}
	// The audit trail is never overwritten: one record per execution and
	// key, written once; except that a failed execution's record replaces
	// a success record its verify stage wrote before a later step failed:
	// a success record never stands for a failed execution.
	in := &dynamodb.PutItemInput{TableName: &s.Table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}
	if r.Outcome == ImportFailed {
		in.ConditionExpression = aws.String("attribute_not_exists(pk) OR outcome = :ok")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":ok": str(ImportSucceeded)}
	}
	_, err = s.DB.PutItem(ctx, in)
	var exists *types.ConditionalCheckFailedException
	if errors.As(err, &exists) {
		return fmt.Errorf("%w: import record %s of %s", ErrRecorded, r.SK, r.KeyARN)
	}
	if err != nil {
		return fmt.Errorf("writing import record %s: %w", r.SK, err)
	}
	return nil
}

// ErrRecorded: an import record of this execution exists already.
var ErrRecorded = errors.New("import record exists already")

// List returns a key's import records, oldest first.
func (s *Imports) List(ctx context.Context, keyARN string) ([]Import, error) {
	return List[Import](ctx, s.DB, s.Table, keyARN, "IMPORT#")
}

// Package records keeps what the product writes about one KMS key in the
// DynamoDB table: token records (every GetParametersForImport answer),
// import records (the audit trail), the material map (which secret version
// holds each KeyMaterialId) and the key's lease. Every item of a key lives
// in its partition KEY#<arn>; the sort key starts with the kind (TOKEN#,
// IMPORT#, MATERIAL#, LEASE). One key scheme, one pager, one DB interface.
package records

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// PK is the partition key of everything recorded about one KMS key.
func PK(keyARN string) string { return "KEY#" + keyARN }

// DB is the part of DynamoDB the records use (the registry declares its
// own, registry.DB); *dynamodb.Client satisfies it.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Querier is the part of DB that List needs.
type Querier interface {
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Readable lists every attribute a read returns: all but the import token
// and the wrapped key material, which only the import stage reads
// (GetWithToken). template.yaml's TableRecords mapping grants reads of
// exactly these (dynamodb:Attributes), and a test keeps the two equal.
var Readable = []string{
	"cause",
	"currentValidTo",
	"errorName",
	"executionId",
	"expirationModel",
	"expiresAt",
	"firstImportedAt",
	"generateMaterial",
	"generated",
	"importType",
	"importedAt",
	"issuedAt",
	"keyArn",
	"keyId",
	"keyMaterialId",
	"keyStateAfter",
	"keyStateBefore",
	"lastError",
	"lastErrorStage",
	"lastExecution",
	"lastFailure",
	"lastImportedAt",
	"lastRotation",
	"lastSuccess",
	"materials",
	"newMaterialId",
	"newMaterialStage",
	"nextDue",
	"noExpiry",
	"outcome",
	"parametersValidTo",
	"pk",
	"publicKey",
	"recordedAt",
	"region",
	"regions",
	"registeredAt",
	"renewBefore",
	"replicas",
	"resumed",
	"rotateEvery",
	"rotated",
	"rotatedAt",
	"secretId",
	"secretVersionId",
	"secretVersionStage",
	"sk",
	"stage",
	"state",
	"status",
	"steps",
	"statusReason",
	"targetKeyArn",
	"tokenFetches",
	"tokenId",
	"type",
	"updatedAt",
	"validFor",
	"validTo",
	"validToBefore",
	"verification",
	"version",
	"wrappingAlgorithm",
	"wrappingDefaulted",
	"wrappingKeySpec",
}

// Projection is the ProjectionExpression of Readable, with its names
// (several are reserved words in DynamoDB expressions).
func Projection() (*string, map[string]string) {
	names := make(map[string]string, len(Readable))
	parts := make([]string, len(Readable))
	for i, a := range Readable {
		n := fmt.Sprintf("#p%d", i)
		names[n], parts[i] = a, n
	}
	return aws.String(strings.Join(parts, ", ")), names
}

// itemKey is the primary key of one item of a key's partition.
func itemKey(keyARN, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(PK(keyARN)), "sk": str(sk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// List returns the key's records of one kind, in sort key order.
func List[T any](ctx context.Context, db Querier, table, keyARN, prefix string) ([]T, error) {
	var recs []T
	in := &dynamodb.QueryInput{
		TableName:              &table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :t)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: PK(keyARN)},
			":t":  &types.AttributeValueMemberS{Value: prefix},
		},
		ConsistentRead: aws.Bool(true),
	}
	in.ProjectionExpression, in.ExpressionAttributeNames = Projection()
	p := dynamodb.NewQueryPaginator(db, in)
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s records of %s: %w", prefix, keyARN, err)
		}
		var page []T
		if err := attributevalue.UnmarshalListOfMaps(out.Items, &page); err != nil {
			return nil, fmt.Errorf("decoding %s records: %w", prefix, err)
		}
		recs = append(recs, page...)
	}
	return recs, nil
}

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// PK is the partition key of everything recorded about one KMS key.
func PK(keyARN string) string { return "KEY#" + keyARN }

// DB is the part of DynamoDB the records (and the registry) use;
// *dynamodb.Client satisfies it.
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

// itemKey is the primary key of one item of a key's partition.
func itemKey(keyARN, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(PK(keyARN)), "sk": str(sk)}
}

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// List returns the key's records of one kind, in sort key order.
func List[T any](ctx context.Context, db Querier, table, keyARN, prefix string) ([]T, error) {
	var recs []T
	p := dynamodb.NewQueryPaginator(db, &dynamodb.QueryInput{
		TableName:              &table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :t)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: PK(keyARN)},
			":t":  &types.AttributeValueMemberS{Value: prefix},
		},
		ConsistentRead: aws.Bool(true),
	})
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

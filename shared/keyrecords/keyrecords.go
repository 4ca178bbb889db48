// Package keyrecords reads the records kept about one KMS key: every item
// of the key's partition (KEY#<arn>) whose sort key starts with a kind's
// prefix (TOKEN#, IMPORT#, MATERIAL#), strongly consistent, all pages.
package keyrecords

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

// Querier is the part of DynamoDB this package uses.
type Querier interface {
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

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

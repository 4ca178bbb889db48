// Package lease makes sure two executions never work on the same key at
// once: a conditional write of a per-key lease item that expires, so a
// lease left by a crashed execution is taken over once it lapses.
package lease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kms-reimport/kms-reimport/shared/tokens"
)

// SK is the sort key of a key's lease item.
const SK = "LEASE"

// DB is the part of DynamoDB this package uses.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// Held is returned when another execution holds the key's lease.
type Held struct {
	KeyARN string
	Owner  string
	Until  time.Time
}

func (h *Held) Error() string {
	return fmt.Sprintf("key %s is being rotated by %s (lease until %s)", h.KeyARN, h.Owner, h.Until.UTC().Format(time.RFC3339))
}

// Store takes and gives back leases.
type Store struct {
	DB       DB
	Table    string
	Duration time.Duration
}

func key(arn string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: tokens.PK(arn)},
		"sk": &types.AttributeValueMemberS{Value: SK},
	}
}

// Acquire takes (or, for the same owner, extends) the lease of arn. It
// fails with *Held while another owner's lease is still running.
func (s *Store) Acquire(ctx context.Context, arn, owner string, now time.Time) error {
	until := now.Add(s.Duration)
	item := key(arn)
	item["type"] = &types.AttributeValueMemberS{Value: "lease"}
	item["owner"] = &types.AttributeValueMemberS{Value: owner}
	item["acquiredAt"] = &types.AttributeValueMemberS{Value: now.UTC().Format(time.RFC3339Nano)}
	item["leaseUntil"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Unix(), 10)}
	item["expiresAt"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Add(24*time.Hour).Unix(), 10)}
	_, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                &s.Table,
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(pk) OR leaseUntil < :now OR #o = :me"),
		ExpressionAttributeNames: map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			":me":  &types.AttributeValueMemberS{Value: owner},
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		h := &Held{KeyARN: arn}
		if o, ok := cf.Item["owner"].(*types.AttributeValueMemberS); ok {
			h.Owner = o.Value
		}
		if u, ok := cf.Item["leaseUntil"].(*types.AttributeValueMemberN); ok {
			if n, err := strconv.ParseInt(u.Value, 10, 64); err == nil {
				h.Until = time.Unix(n, 0)
			}
		}
		return h
	}
	if err != nil {
		return fmt.Errorf("taking the lease of %s: %w", arn, err)
	}
	return nil
}

// Release gives the lease back if owner still holds it.
func (s *Store) Release(ctx context.Context, arn, owner string) error {
	_, err := s.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &s.Table,
		Key:                       key(arn),
		ConditionExpression:       aws.String("#o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": &types.AttributeValueMemberS{Value: owner}},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return nil // not ours (any more): nothing to give back
	}
	if err != nil {
		return fmt.Errorf("releasing the lease of %s: %w", arn, err)
	}
	return nil
}

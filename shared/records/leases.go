// The lease makes sure two executions never work on the same key at
// once: a conditional write of a per-key lease item that expires, so a
// lease left by a crashed execution is taken over once it lapses.

package records

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// LeaseSK is the sort key of a key's lease item.
const LeaseSK = "LEASE"

// LeaseHeld is returned when another execution holds the key's lease.
type LeaseHeld struct {
	KeyARN string
	Owner  string
	Until  time.Time
}

func (h *LeaseHeld) Error() string {
	return fmt.Sprintf("key %s is being rotated by %s (lease until %s)", h.KeyARN, h.Owner, h.Until.UTC().Format(time.RFC3339))
}

// Leases takes and gives back leases.
type Leases struct {
	DB       DB
	Table    string
	Duration time.Duration
}

// Acquire takes (or, for the same owner, extends) the lease of arn. It
// fails with *Held while another owner's lease is still running.
func (s *Leases) Acquire(ctx context.Context, arn, owner string, now time.Time) error {
	until := now.Add(s.Duration)
	item := itemKey(arn, LeaseSK)
	item["type"] = &types.AttributeValueMemberS{Value: "lease"}
	item["owner"] = &types.AttributeValueMemberS{Value: owner}
	item["acquiredAt"] = &types.AttributeValueMemberS{Value: now.UTC().Format(time.RFC3339Nano)}
	item["leaseUntil"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Unix(), 10)}
	item["expiresAt"] = &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Add(24*time.Hour).Unix(), 10)}
	_, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                &s.Table,
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(pk) OR leaseUntil < :now OR (#o = :me AND attribute_not_exists(fenced))"),
		ExpressionAttributeNames: map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			":me":  &types.AttributeValueMemberS{Value: owner},
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		h := &LeaseHeld{KeyARN: arn}
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
func (s *Leases) Release(ctx context.Context, arn, owner string) error {
	_, err := s.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &s.Table,
		Key:                       itemKey(arn, LeaseSK),
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

// LeaseLost is returned by Fence when the caller no longer holds the
// key's lease (it lapsed and another execution took it over).
type LeaseLost struct {
	KeyARN string
	Owner  string
}

func (l *LeaseLost) Error() string {
	return fmt.Sprintf("execution %s no longer holds the lease of key %s", l.Owner, l.KeyARN)
}

// Fence proves, with a conditional write, that owner still holds the
// lease of arn, and that its execution has not ended (FenceOut), and
// extends it. It runs right before every change to KMS
// (ImportKeyMaterial, RotateKeyOnDemand): an execution whose lease lapsed
// and was taken over never changes the key, whatever it believed before.
func (s *Leases) Fence(ctx context.Context, arn, owner string, now time.Time) error {
	until := now.Add(s.Duration)
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.Table,
		Key:                      itemKey(arn, LeaseSK),
		UpdateExpression:         aws.String("SET leaseUntil = :until, expiresAt = :exp"),
		ConditionExpression:      aws.String("#o = :me AND leaseUntil >= :now AND attribute_not_exists(fenced)"),
		ExpressionAttributeNames: map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me":    &types.AttributeValueMemberS{Value: owner},
			":now":   &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)},
			":until": &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Unix(), 10)},
			":exp":   &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Add(24*time.Hour).Unix(), 10)},
		},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return &LeaseLost{KeyARN: arn, Owner: owner}
	}
	if err != nil {
		return fmt.Errorf("checking the lease of %s: %w", arn, err)
	}
	return nil
}

// FenceOut ends the lease of an execution that ended while one of its
// stages may still be running (stopped or timed out: Step Functions does
// not stop a Lambda invocation in flight): the lease is marked fenced, so
// that stage's next Fence fails and it never starts an import, and is
// held until until, past the longest an invocation already beyond its
// Fence can still run (the functions' timeout), so no other execution
// imports before a late import of this one could land. Acquire takes it
// over after until. Nothing is done if owner no longer holds it.
func (s *Leases) FenceOut(ctx context.Context, arn, owner string, until time.Time) error {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.Table,
		Key:                      itemKey(arn, LeaseSK),
		UpdateExpression:         aws.String("SET fenced = :t, leaseUntil = :until, expiresAt = :exp"),
		ConditionExpression:      aws.String("#o = :me"),
		ExpressionAttributeNames: map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me":    &types.AttributeValueMemberS{Value: owner},
			":t":     &types.AttributeValueMemberBOOL{Value: true},
			":until": &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Unix(), 10)},
			":exp":   &types.AttributeValueMemberN{Value: strconv.FormatInt(until.Add(24*time.Hour).Unix(), 10)},
		},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return nil // not ours (any more)
	}
	if err != nil {
		return fmt.Errorf("fencing the lease of %s: %w", arn, err)
	}
	return nil
}

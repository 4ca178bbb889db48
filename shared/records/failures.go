// The failure record is the one record of an ended unsuccessful
// execution, keyed by the execution's ARN (pk EXEC#<execution ARN>, sk
// FAILURE), whatever key id, alias or ARN its input named and however
// often record-failure runs for it (the execution's own Catch, then
// EventBridge's status change, delivered at least once and retried). It is
// also the outbox of the failure's effects: each step (registry, import
// record, metric, notification) is marked done on it with a conditional
// write, so a retry after a partial failure does the steps left and never
// repeats one done.

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

// FailureSK is the sort key of an execution's failure record.
const FailureSK = "FAILURE"

// ExecPK is the partition of what is recorded about one execution.
func ExecPK(executionID string) string { return "EXEC#" + executionID }

// Outcomes of a failure record.
const (
	// FailureFailed: a rotation that failed; it counts against its key.
	FailureFailed = "failed"
	// FailureRefused: the execution's input was refused (InvalidInput)
	// before anything was done; it is reported to its caller only.
	FailureRefused = "refused"
)

// Steps of a failure record's outbox, each the attribute that holds when
// it was done.
const (
	StepRegistry = "registryAt"
	StepAudit    = "auditAt"
	StepCounted  = "countedAt"
	StepNotified = "notifiedAt"
)

// Failure is the failure record of one execution.
type Failure struct {
	PK          string    `dynamodbav:"pk"`
	SK          string    `dynamodbav:"sk"`
	Type        string    `dynamodbav:"type"`
	ExecutionID string    `dynamodbav:"executionId"`
	KeyARN      string    `dynamodbav:"keyArn"`
	Outcome     string    `dynamodbav:"outcome"`
	Stage       string    `dynamodbav:"stage,omitempty"`
	ErrorName   string    `dynamodbav:"errorName"`
	Cause       string    `dynamodbav:"cause,omitempty"`
	RecordedAt  time.Time `dynamodbav:"recordedAt"`
	// Steps holds when each step was done (StepLayout), and, under
	// StepNotifyClaim, until when an invocation has claimed the
	// notification; past it, another may send it. One map attribute: the
	// roles' attribute lists (template.yaml TableRecords) stay short.
	Steps     map[string]string `dynamodbav:"steps"`
	ExpiresAt int64             `dynamodbav:"expiresAt,omitempty"`
}

// StepNotifyClaim is the step that holds the notification's claim.
const StepNotifyClaim = "notifyClaim"

// StepLayout is how steps hold times: fixed width, so that they compare
// as strings in condition expressions.
const StepLayout = "2006-01-02T15:04:05.000Z"

func stepTime(t time.Time) string { return t.UTC().Format(StepLayout) }

// Done says whether step is done.
func (f Failure) Done(step string) bool {
	_, ok := f.Steps[step]
	return ok
}

// NotifyClaimed says whether an invocation claimed the notification.
func (f Failure) NotifyClaimed() bool { return f.Done(StepNotifyClaim) }

// Failures reads and writes failure records.
type Failures struct {
	DB        DB
	Table     string
	Retention time.Duration // 0 keeps records for ever
}

func (s *Failures) key(executionID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(ExecPK(executionID)), "sk": str(FailureSK)}
}

// Open writes f as the execution's failure record unless it has one
// already, and returns the record as stored: the first writer's content
// and the steps done so far.
func (s *Failures) Open(ctx context.Context, f Failure) (Failure, error) {
	f.PK, f.SK, f.Type = ExecPK(f.ExecutionID), FailureSK, "failure"
	f.Steps = map[string]string{}
	if s.Retention > 0 {
		f.ExpiresAt = f.RecordedAt.Add(s.Retention).Unix()
	}
	item, err := attributevalue.MarshalMap(f)
	if err != nil {
		return Failure{}, fmt.Errorf("encoding failure record: %w", err)
	}
	_, err = s.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.Table, Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var cf *types.ConditionalCheckFailedException
	if err == nil {
		return f, nil
	}
	if !errors.As(err, &cf) {
		return Failure{}, fmt.Errorf("writing the failure record of %s: %w", f.ExecutionID, err)
	}
	return s.Get(ctx, f.ExecutionID)
}

// Get reads an execution's failure record (ErrNotRecorded if none).
func (s *Failures) Get(ctx context.Context, executionID string) (Failure, error) {
	in := &dynamodb.GetItemInput{TableName: &s.Table, Key: s.key(executionID), ConsistentRead: aws.Bool(true)}
	in.ProjectionExpression, in.ExpressionAttributeNames = Projection()
	out, err := s.DB.GetItem(ctx, in)
	if err != nil {
		return Failure{}, fmt.Errorf("reading the failure record of %s: %w", executionID, err)
	}
	if out.Item == nil {
		return Failure{}, fmt.Errorf("%w: %s", ErrNotRecorded, executionID)
	}
	var f Failure
	if err := attributevalue.UnmarshalMap(out.Item, &f); err != nil {
		return Failure{}, fmt.Errorf("decoding the failure record of %s: %w", executionID, err)
	}
	return f, nil
}

// ErrNotRecorded: the execution has no failure record.
var ErrNotRecorded = errors.New("no failure record")

// ErrStepDone: the step is done (or claimed) already.
var ErrStepDone = errors.New("step done already")

// MarkDone marks step done at at; ErrStepDone if it was already.
func (s *Failures) MarkDone(ctx context.Context, executionID, step string, at time.Time) error {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.Table,
		Key:                       s.key(executionID),
		UpdateExpression:          aws.String("SET steps.#s = :at"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND attribute_not_exists(steps.#s)"),
		ExpressionAttributeNames:  map[string]string{"#s": step},
		ExpressionAttributeValues: map[string]types.AttributeValue{":at": str(stepTime(at))},
	})
	return stepErr(err, executionID, step)
}

// ClaimNotify claims the notification until now+hold, unless it was sent
// or another invocation's claim still runs (ErrStepDone). The claim comes
// before the send: at most one invocation sends, and a claim left by one
// that crashed lapses so the notification is not lost.
func (s *Failures) ClaimNotify(ctx context.Context, executionID string, now time.Time, hold time.Duration) error {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.Table,
		Key:                       s.key(executionID),
		UpdateExpression:          aws.String("SET steps.#c = :until"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND attribute_not_exists(steps.#n) AND (attribute_not_exists(steps.#c) OR steps.#c < :now)"),
		ExpressionAttributeNames:  map[string]string{"#c": StepNotifyClaim, "#n": StepNotified},
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": str(stepTime(now)), ":until": str(stepTime(now.Add(hold)))},
	})
	return stepErr(err, executionID, StepNotifyClaim)
}

// ReleaseNotify gives a claim back after a send that failed, so a retry
// sends.
func (s *Failures) ReleaseNotify(ctx context.Context, executionID string) error {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                &s.Table,
		Key:                      s.key(executionID),
		UpdateExpression:         aws.String("REMOVE steps.#c"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND attribute_not_exists(steps.#n)"),
		ExpressionAttributeNames: map[string]string{"#c": StepNotifyClaim, "#n": StepNotified},
	})
	return stepErr(err, executionID, StepNotifyClaim)
}

func stepErr(err error, executionID, step string) error {
	var cf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &cf):
		return fmt.Errorf("%w: %s of %s", ErrStepDone, step, executionID)
	case err != nil:
		return fmt.Errorf("updating %s of the failure record of %s: %w", step, executionID, err)
	}
	return nil
}

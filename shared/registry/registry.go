// Package registry keeps the fleet of managed keys in DynamoDB: which
// secret holds each key's material, how long each import should last and
// how early to renew it, and how the last rotations went. The planner
// reads it to decide what is due.
package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

// PK is the partition of registry items. One partition keeps a paginated
// Query simple and consistent; a daily planner reading tens of thousands
// of small items stays far below a partition's throughput.
const PK = "REGISTRY"

// Statuses of a managed key.
const (
	Active = "active"
	// Blocked: the last rotation failed in a way only a change to the key
	// fixes (FailureEffect, blocked.go): KMS said the key is gone, disabled, pending
	// deletion or not EXTERNAL. A blocked key stays in the registry, is
	// planned again on every fleet run (renewed as soon as KMS allows) and
	// still counts towards FewestDaysLeft; a verified import or
	// registering it again makes it active. Only deregistering removes it.
	Blocked = "blocked"
	// Ineligible is what earlier versions wrote for a blocked key (and
	// then never planned it again). It is read as Blocked.
	Ineligible = "ineligible"
)

// Entry is one managed key.
type Entry struct {
	PK       string `dynamodbav:"pk"`
	SK       string `dynamodbav:"sk"`
	Type     string `dynamodbav:"type"`
	KeyARN   string `dynamodbav:"keyArn"`
	SecretID string `dynamodbav:"secretId"`
	// Policy is how the key is kept (flow.Policy.Kept): validity, renewal
	// window, wrapping, rotation; its attributes are inline.
	flow.Policy
	Status         string     `dynamodbav:"status"`
	StatusReason   string     `dynamodbav:"statusReason,omitempty"`
	RegisteredAt   time.Time  `dynamodbav:"registeredAt"`
	CurrentValidTo *time.Time `dynamodbav:"currentValidTo,omitempty"`
	LastSuccess    *time.Time `dynamodbav:"lastSuccess,omitempty"`
	LastExecution  string     `dynamodbav:"lastExecution,omitempty"`
	LastFailure    *time.Time `dynamodbav:"lastFailure,omitempty"`
	LastError      string     `dynamodbav:"lastError,omitempty"`
	LastErrorStage string     `dynamodbav:"lastErrorStage,omitempty"`
	// NextDue is when the key should next be renewed; empty means now
	// (never imported).
	NextDue      *time.Time `dynamodbav:"nextDue,omitempty"`
	LastRotation *time.Time `dynamodbav:"lastRotation,omitempty"`
	// Materials is how many key materials the key held after the last
	// success (0: not known: KMS names no materials for the key, say an HMAC or asymmetric key).
	Materials int `dynamodbav:"materials,omitempty"`
	// Replicas of a multi-Region primary, with their own ValidTo: each
	// expires independently and is renewed when due.
	Replicas []Replica `dynamodbav:"replicas,omitempty"`
	// Version counts the writes of the entry: every write is conditional
	// on the version it read and adds one (0: an entry from before
	// versions), so no write undoes one it did not see.
	Version int64 `dynamodbav:"version,omitempty"`
}

// Replica is one replica of a multi-Region key.
type Replica struct {
	Region  string     `dynamodbav:"region" json:"region"`
	KeyARN  string     `dynamodbav:"keyArn" json:"keyArn"`
	ValidTo *time.Time `dynamodbav:"validTo,omitempty" json:"validTo,omitempty"`
	State   string     `dynamodbav:"state,omitempty" json:"state,omitempty"`
}

// RegionOf returns the Region of a KMS key ARN.
// AccountOf returns the account of a key ARN, or "": an entry's account
// is derived from its key ARN (no attribute of its own), the account whose
// member role the stages assume (kmsaccess.Clients).
func AccountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// Account is the account of e's key (and of its replicas: a multi-Region
// key's replicas are in its account).
func (e Entry) Account() string { return AccountOf(e.KeyARN) }

// Budget names the KMS request quota a call on arn in region counts
// against: KMS quotas are per account and Region.
func Budget(arn, region string) string {
	if region == "" {
		region = RegionOf(arn)
	}
	return AccountOf(arn) + "/" + region
}

func RegionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[3]
}

// DueRegions lists the Regions of e (primary first, then replicas) whose
// material is due at now, and whether every Region is due.
func (e Entry) DueRegions(now time.Time) (due []string, all bool) {
	rb, _ := flow.ParseDuration(e.RenewBefore)
	isDue := func(v *time.Time) bool {
		if v == nil {
			return e.LastSuccess == nil // never imported; else no expiry
		}
		return !v.Add(-rb).After(now)
	}
	all = true
	if isDue(e.CurrentValidTo) {
		due = append(due, RegionOf(e.KeyARN))
	} else {
		all = false
	}
	for _, r := range e.Replicas {
		if isDue(r.ValidTo) {
			due = append(due, r.Region)
		} else {
			all = false
		}
	}
	return due, all
}

// RotationDue says whether the rotation policy asks for a rotation at now.
func (e Entry) RotationDue(now time.Time) bool {
	if e.RotateEvery == "" {
		return false
	}
	d, err := flow.ParseDuration(e.RotateEvery)
	if err != nil || d <= 0 {
		return false
	}
	from := e.RegisteredAt
	if e.LastRotation != nil {
		from = *e.LastRotation
	}
	return !from.Add(d).After(now)
}

// DB is the part of DynamoDB the registry uses (its own: records.DB is
// the records'); *dynamodb.Client satisfies it.
type DB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Store reads and writes registry entries.
type Store struct {
	DB    DB
	Table string
}

// ErrNotFound is returned for a key that is not registered.
var ErrNotFound = errors.New("key is not registered")

func sk(arn string) string { return "KEY#" + arn }

func key(arn string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: PK}, "sk": &types.AttributeValueMemberS{Value: sk(arn)}}
}

// Put registers (or re-registers) a key. The rotation history fields of an
// existing entry are kept; status goes back to active.
func (s *Store) Put(ctx context.Context, e Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	old, err := s.Get(ctx, e.KeyARN)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if old != nil {
		e.RegisteredAt = old.RegisteredAt
		e.CurrentValidTo, e.LastSuccess, e.LastExecution = old.CurrentValidTo, old.LastSuccess, old.LastExecution
		e.LastFailure, e.LastError, e.LastErrorStage = old.LastFailure, old.LastError, old.LastErrorStage
		e.LastRotation, e.Materials, e.Replicas = old.LastRotation, old.Materials, old.Replicas
	}
	if e.RegisteredAt.IsZero() {
		e.RegisteredAt = time.Now().UTC()
	}
	e.PK, e.SK, e.Type, e.Status, e.StatusReason = PK, sk(e.KeyARN), "registry", Active, ""
	e.NextDue = e.due()
	ok, err := s.putVersioned(ctx, old, e, false)
	if err != nil {
		return fmt.Errorf("registering %s: %w", e.KeyARN, err)
	}
	if !ok {
		return fmt.Errorf("registering %s: %w", e.KeyARN, ErrChanged)
	}
	return nil
}

// Create registers a key that is not registered: a conditional write
// (attribute_not_exists), so a registration made meanwhile by someone else
// (an operator's register, another adopt) is never replaced; then it
// returns ErrRegistered and writes nothing. Adoption registers with it.
func (s *Store) Create(ctx context.Context, e Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e.RegisteredAt = time.Now().UTC()
	e.PK, e.SK, e.Type, e.Status, e.StatusReason = PK, sk(e.KeyARN), "registry", Active, ""
	e.NextDue = e.due()
	ok, err := s.putVersioned(ctx, nil, e, false)
	if err != nil {
		return fmt.Errorf("registering %s: %w", e.KeyARN, err)
	}
	if !ok {
		return fmt.Errorf("registering %s: %w", e.KeyARN, ErrRegistered)
	}
	return nil
}

// ErrRegistered: Create found the key registered already; nothing was
// written.
var ErrRegistered = errors.New("registered meanwhile; left alone")

// ErrChanged: the entry changed between its read and the write; nothing
// was written.
var ErrChanged = errors.New("registry entry changed meanwhile; try again")

// putVersioned writes e over old (nil: no entry) only if the entry is
// still the one read: absent, or present with old's version (and, with
// sameRegistration, old's registeredAt: not deregistered and registered
// again). e gets old's version plus one. ok is false when the condition
// failed.
func (s *Store) putVersioned(ctx context.Context, old *Entry, e Entry, sameRegistration bool) (bool, error) {
	in := &dynamodb.PutItemInput{TableName: &s.Table, ConditionExpression: aws.String("attribute_not_exists(pk)")}
	if old != nil {
		e.Version = old.Version + 1
		cond, vals := "attribute_exists(pk) AND version = :v", map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: fmt.Sprint(old.Version)}}
		if old.Version == 0 {
			cond, vals = "attribute_exists(pk) AND attribute_not_exists(version)", map[string]types.AttributeValue{}
		}
		if sameRegistration {
			ra, err := attributevalue.Marshal(old.RegisteredAt)
			if err != nil {
				return false, fmt.Errorf("encoding registeredAt: %w", err)
			}
			cond, vals[":registeredAt"] = cond+" AND registeredAt = :registeredAt", ra
		}
		in.ConditionExpression, in.ExpressionAttributeValues = aws.String(cond), vals
	} else {
		e.Version = 1
	}
	item, err := attributevalue.MarshalMap(e)
	if err != nil {
		return false, fmt.Errorf("encoding registry entry: %w", err)
	}
	in.Item = item
	_, err = s.DB.PutItem(ctx, in)
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return false, nil
	}
	return err == nil, err
}

// Validate checks an entry's policy (flow.Policy.ValidateKept).
func (e Entry) Validate() error {
	if e.KeyARN == "" || e.SecretID == "" {
		return fmt.Errorf("registry entry needs a key ARN and a secret")
	}
	return e.Policy.ValidateKept()
}

// due computes NextDue from CurrentValidTo: ValidTo minus RenewBefore.
// A key never imported (or with no expiry and no success) is due now.
func (e Entry) due() *time.Time {
	if e.CurrentValidTo == nil {
		if e.NoExpiry() && e.LastSuccess != nil {
			return nil // imported without expiry: nothing to renew
		}
		return nil
	}
	rb, _ := flow.ParseDuration(e.RenewBefore)
	d := e.CurrentValidTo.Add(-rb).UTC()
	return &d
}

// IsDue says whether the planner should renew e at now, and why. A
// blocked key is always due: every run tries it again, so it is renewed
// on the first run after KMS allows it.
func (e Entry) IsDue(now time.Time) (bool, string) {
	if b := e.Block(); b != nil {
		return true, "blocked: " + b.Error
	}
	switch {
	case e.CurrentValidTo == nil && e.LastSuccess == nil:
		return true, "never imported"
	case e.CurrentValidTo == nil:
		return false, "no expiry"
	case !e.CurrentValidTo.After(now):
		return true, "expired"
	case e.NextDue != nil && !e.NextDue.After(now):
		return true, "within renew-before window"
	}
	if due, _ := e.DueRegions(now); len(due) > 0 {
		return true, "replica within renew-before window"
	}
	if e.RotationDue(now) {
		return true, "rotation due"
	}
	return false, "not due"
}

// Get reads one entry.
func (s *Store) Get(ctx context.Context, arn string) (*Entry, error) {
	in := &dynamodb.GetItemInput{TableName: &s.Table, Key: key(arn), ConsistentRead: aws.Bool(true)}
	in.ProjectionExpression, in.ExpressionAttributeNames = records.Projection()
	out, err := s.DB.GetItem(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("reading registry entry of %s: %w", arn, err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, arn)
	}
	var e Entry
	if err := attributevalue.UnmarshalMap(out.Item, &e); err != nil {
		return nil, fmt.Errorf("decoding registry entry of %s: %w", arn, err)
	}
	return &e, nil
}

// Delete deregisters a key; its token and import records stay.
func (s *Store) Delete(ctx context.Context, arn string) error {
	_, err := s.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.Table, Key: key(arn),
		ConditionExpression: aws.String("attribute_exists(pk)")})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return fmt.Errorf("%w: %s", ErrNotFound, arn)
	}
	if err != nil {
		return fmt.Errorf("deregistering %s: %w", arn, err)
	}
	return nil
}

// Renewal is a verified renewal, as the verify stage saw it.
type Renewal struct {
	KeyARN    string
	Execution string
	At        time.Time
	// ValidTo is the primary's after the imports (nil: no expiry).
	ValidTo *time.Time
	// Replicas as KMS described them after the imports; replicas not
	// listed keep what was known.
	Replicas []Replica
	// RotatedAt is when the rotation to new material started, if any.
	RotatedAt *time.Time
	// Materials is how many key materials the key holds (0: not known).
	Materials int
	// Register, when set, is the policy the execution asked the key to be
	// kept with (flow.Request.Kept), and SecretID the secret it names.
	Register *flow.Policy
	SecretID string
	// PlannedVersion, for a fleet run, is the entry's version when the
	// run planned the key: the policy comes from the registry and is
	// never written back, and a key deregistered meanwhile stays so.
	PlannedVersion *int64
}

// Renewed is what the entry old (nil: not registered) becomes after r.
// ok is false when there is nothing to write: the key is not registered
// and r does not register it.
func Renewed(old *Entry, r Renewal) (e Entry, ok bool, err error) {
	switch {
	case old != nil:
		e = *old
	case r.Register == nil:
		return Entry{}, false, nil
	default:
		e = Entry{KeyARN: r.KeyARN, RegisteredAt: r.At.UTC()}
	}
	if p := r.Register; p != nil {
		e.SecretID, e.Policy = r.SecretID, *p
		if err := e.Validate(); err != nil {
			return Entry{}, false, err
		}
	}
	t := r.At.UTC()
	e.PK, e.SK, e.Type, e.KeyARN = PK, sk(r.KeyARN), "registry", r.KeyARN
	e.CurrentValidTo, e.LastExecution, e.LastSuccess = r.ValidTo, r.Execution, &t
	e.Status, e.StatusReason = Active, ""
	for _, rep := range r.Replicas {
		i := slices.IndexFunc(e.Replicas, func(x Replica) bool { return x.KeyARN == rep.KeyARN })
		if i < 0 {
			e.Replicas = append(e.Replicas, rep)
		} else {
			e.Replicas[i] = rep
		}
	}
	if r.RotatedAt != nil {
		rt := r.RotatedAt.UTC()
		e.LastRotation = &rt
	}
	if r.Materials > 0 {
		e.Materials = r.Materials
	}
	e.NextDue = e.due()
	return e, true, nil
}

// RecordRenewal notes a verified renewal with a conditional write: the
// entry read, then written back only if it is still the version read and
// the registration read (same registeredAt: not deregistered, nor
// deregistered and registered again, meanwhile), or, for a key not
// registered when read and registered by r, only if nobody registered it
// meanwhile; a write that finds the entry changed reads it again
// (renewalAttempts in all). A key that is not registered is left alone
// unless r registers it; a fleet run's renewal (PlannedVersion) never
// registers and never writes a policy: an operator's deregistration or
// policy change made after planning stands. written says whether the
// entry was written.
func (s *Store) RecordRenewal(ctx context.Context, r Renewal) (written bool, err error) {
	if r.PlannedVersion != nil {
		r.Register = nil
	}
	var first *Entry
	for i := 0; i < renewalAttempts; i++ {
		old, err := s.Get(ctx, r.KeyARN)
		if errors.Is(err, ErrNotFound) {
			old, err = nil, nil
		}
		if err != nil {
			return false, err
		}
		if i == 0 {
			first = old
		} else if !sameRegistration(first, old) {
			return false, nil // deregistered or registered meanwhile: theirs stands
		}
		e, ok, err := Renewed(old, r)
		if err != nil || !ok {
			return false, err
		}
		written, err := s.putVersioned(ctx, old, e, true)
		if err != nil {
			return false, fmt.Errorf("noting the renewal of %s: %w", r.KeyARN, err)
		}
		if written {
			return true, nil
		}
	}
	return false, nil
}

// sameRegistration says whether a and b (nil: not registered) are the same
// registration of a key.
func sameRegistration(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.RegisteredAt.Equal(b.RegisteredAt)
}

// renewalAttempts bounds RecordRenewal's read-and-write rounds.
const renewalAttempts = 3

// Failure is a failed rotation as record-failure recorded it.
type Failure struct {
	Execution string
	At        time.Time
	// Error is the failure's name (flow's error names, or Step Functions'
	// States.* for an execution that ended without one); Cause is its
	// sanitized message; Stage is the state it failed in.
	Error, Cause, Stage string
	// Facts are what the failed check established about the key (nil for
	// a failure that carries none).
	Facts *flow.Facts
}

// RecordFailure notes a failed rotation of a registered key (a key that is
// not registered is left alone). FailureEffect decides the key's status
// from the error name and facts: Blocks marks it blocked with the error
// and cause; Keeps leaves the status as it was; Clears makes it active.
// A blocked key is not dropped: the planner tries it on every run.
func (s *Store) RecordFailure(ctx context.Context, arn string, f Failure) error {
	var first *Entry
	for i := 0; i < renewalAttempts; i++ {
		e, err := s.Get(ctx, arn)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if i == 0 {
			first = e
		} else if !sameRegistration(first, e) {
			return nil
		}
		old := *e
		t := f.At.UTC()
		e.LastFailure, e.LastError, e.LastErrorStage, e.LastExecution = &t, f.Error, f.Stage, f.Execution
		switch FailureEffect(f.Error, f.Facts) {
		case Blocks:
			e.Status, e.StatusReason = Blocked, f.Error+": "+flow.Sanitize(f.Cause)
		case Clears:
			e.Status, e.StatusReason = Active, ""
		case Keeps:
		}
		ok, err := s.putVersioned(ctx, &old, *e, true)
		if err != nil {
			return fmt.Errorf("updating registry entry of %s: %w", arn, err)
		}
		if ok {
			return nil
		}
	}
	return nil // changed on every read: deregistered or re-registered meanwhile
}

// Page is one page of entries.
type Page struct {
	Entries []Entry
	// Next continues the listing; empty at the end.
	Next string
}

// List returns up to limit entries after the cursor next ("" = start).
func (s *Store) List(ctx context.Context, next string, limit int32) (Page, error) {
	in := &dynamodb.QueryInput{
		TableName:              &s.Table,
		KeyConditionExpression: aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: PK},
		},
		Limit: &limit,
	}
	if next != "" {
		in.ExclusiveStartKey = map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: PK}, "sk": &types.AttributeValueMemberS{Value: next}}
	}
	out, err := s.DB.Query(ctx, in)
	if err != nil {
		return Page{}, fmt.Errorf("listing the registry: %w", err)
	}
	var p Page
	if err := attributevalue.UnmarshalListOfMaps(out.Items, &p.Entries); err != nil {
		return Page{}, fmt.Errorf("decoding registry entries: %w", err)
	}
	if lek, ok := out.LastEvaluatedKey["sk"].(*types.AttributeValueMemberS); ok {
		p.Next = lek.Value
	}
	return p, nil
}

// All lists every entry.
func (s *Store) All(ctx context.Context) ([]Entry, error) {
	var all []Entry
	next := ""
	for {
		p, err := s.List(ctx, next, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Entries...)
		if p.Next == "" {
			return all, nil
		}
		next = p.Next
	}
}

// DropReplica takes a replica KMS no longer has out of the entry of
// keyARN, where the caller saw it at position at of the replica list: one
// UpdateItem, conditional on the list still holding that replica there, so
// a concurrent change (a renewal rewriting the list, a deregistration) is
// never undone; then the next run looks again. No read: the planner has
// the entry from its page.
func (s *Store) DropReplica(ctx context.Context, keyARN string, at int, replicaARN string) error {
	path := fmt.Sprintf("replicas[%d]", at)
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &s.Table, Key: key(keyARN),
		UpdateExpression:          aws.String("REMOVE " + path),
		ConditionExpression:       aws.String("attribute_exists(pk) AND " + path + ".keyArn = :r"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":r": &types.AttributeValueMemberS{Value: replicaARN}},
		ReturnValues:              types.ReturnValueNone,
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("taking replica %s out of the registry entry of %s: %w", replicaARN, keyARN, err)
	}
	return nil
}

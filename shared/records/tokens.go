// Token records track every GetParametersForImport answer in DynamoDB:
// when it was issued, until when it is valid, who asked, and how it was
// used. The import token itself lives only here, and only until the
// token is used or abandoned.

package records

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Statuses a token record moves through.
const (
	TokenIssued  = "issued"  // parameters fetched, nothing wrapped yet
	TokenWrapped = "wrapped" // material wrapped with its public key
	TokenUsed    = "used"    // ImportKeyMaterial accepted it
	TokenExpired = "expired" // too close to (or past) ParametersValidTo; abandoned
	TokenFailed  = "failed"  // ImportKeyMaterial refused the import
)

// ErrConflict is returned when a record is missing or not in the status
// the caller needs.
var ErrConflict = errors.New("token record conflict")

// Token is one token record.
type Token struct {
	PK                string    `dynamodbav:"pk"`
	SK                string    `dynamodbav:"sk"`
	Type              string    `dynamodbav:"type"`
	KeyARN            string    `dynamodbav:"keyArn"`
	TokenID           string    `dynamodbav:"tokenId"`
	WrappingAlgorithm string    `dynamodbav:"wrappingAlgorithm"`
	WrappingKeySpec   string    `dynamodbav:"wrappingKeySpec"`
	IssuedAt          time.Time `dynamodbav:"issuedAt"`
	ParametersValidTo time.Time `dynamodbav:"parametersValidTo"`
	ExecutionID       string    `dynamodbav:"executionId"`
	Status            string    `dynamodbav:"status"`
	StatusReason      string    `dynamodbav:"statusReason,omitempty"`
	UpdatedAt         time.Time `dynamodbav:"updatedAt"`
	SecretVersionID   string    `dynamodbav:"secretVersionId,omitempty"`
	// For an item of a plan (several materials, multi-Region keys): the
	// key the parameters are for (a replica's ARN, or the primary's), its
	// Region, the ImportType and the KeyMaterialId (EXISTING_KEY_MATERIAL,
	// or after a NEW_KEY_MATERIAL import the id KMS returned). The record
	// stays in the primary key's partition.
	TargetKeyARN  string `dynamodbav:"targetKeyArn,omitempty"`
	Region        string `dynamodbav:"region,omitempty"`
	ImportType    string `dynamodbav:"importType,omitempty"`
	KeyMaterialID string `dynamodbav:"keyMaterialId,omitempty"`
	// PublicKey is the wrapping public key (DER); not secret.
	PublicKey []byte `dynamodbav:"publicKey,omitempty"`
	// ImportToken and EncryptedKeyMaterial are removed when the record
	// reaches a final status.
	ImportToken          []byte `dynamodbav:"importToken,omitempty"`
	EncryptedKeyMaterial []byte `dynamodbav:"encryptedKeyMaterial,omitempty"`
	// ExpiresAt is the TTL attribute (epoch seconds).
	ExpiresAt int64 `dynamodbav:"expiresAt"`
}

// Tokens reads and writes token records.
type Tokens struct {
	DB        DB
	Table     string
	Retention time.Duration
	Now       func() time.Time
}

// TokenSK builds a token record's sort key: it sorts by issue time.
func TokenSK(issued time.Time, id string) string {
	return "TOKEN#" + issued.UTC().Format("2006-01-02T15:04:05.000Z") + "#" + id
}

func (s *Tokens) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Put writes a new record; it never overwrites one.
func (s *Tokens) Put(ctx context.Context, r Token) error {
	r.PK, r.Type = PK(r.KeyARN), "token"
	if r.SK == "" {
		r.SK = TokenSK(r.IssuedAt, r.TokenID)
	}
	r.UpdatedAt = s.now().UTC()
	r.ExpiresAt = r.ParametersValidTo.Add(s.Retention).Unix()
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("encoding token record: %w", err)
	}
	_, err = s.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           &s.Table,
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if err != nil {
		var cf *types.ConditionalCheckFailedException
		if errors.As(err, &cf) {
			return fmt.Errorf("%w: token record %s already exists", ErrConflict, r.SK)
		}
		return fmt.Errorf("writing token record %s: %w", r.SK, err)
	}
	return nil
}

// Get reads a record (strongly consistent) without its import token and
// wrapped material: what every stage but the import stage may read.
func (s *Tokens) Get(ctx context.Context, keyARN, sk string) (*Token, error) {
	return s.get(ctx, keyARN, sk, true)
}

// GetWithToken reads a whole record, import token included: the import
// stage only, which spends it.
func (s *Tokens) GetWithToken(ctx context.Context, keyARN, sk string) (*Token, error) {
	return s.get(ctx, keyARN, sk, false)
}

func (s *Tokens) get(ctx context.Context, keyARN, sk string, projected bool) (*Token, error) {
	in := &dynamodb.GetItemInput{
		TableName:      &s.Table,
		Key:            itemKey(keyARN, sk),
		ConsistentRead: aws.Bool(true),
	}
	if projected {
		in.ProjectionExpression, in.ExpressionAttributeNames = Projection()
	}
	out, err := s.DB.GetItem(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("reading token record %s: %w", sk, err)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%w: no token record %s for %s", ErrConflict, sk, keyARN)
	}
	var r Token
	if err := attributevalue.UnmarshalMap(out.Item, &r); err != nil {
		return nil, fmt.Errorf("decoding token record %s: %w", sk, err)
	}
	return &r, nil
}

// SetWrapped stores the wrapped material. Running it again with the same
// record is allowed (a retried wrap stage); a used or abandoned token is a
// conflict.
func (s *Tokens) SetWrapped(ctx context.Context, keyARN, sk string, encrypted []byte, secretVersionID string) error {
	return s.update(ctx, keyARN, sk,
		"SET #s = :wrapped, encryptedKeyMaterial = :m, secretVersionId = :v, updatedAt = :now",
		"#s IN (:issued, :wrapped)",
		map[string]types.AttributeValue{
			":wrapped": str(TokenWrapped), ":issued": str(TokenIssued),
			":m": &types.AttributeValueMemberB{Value: encrypted}, ":v": str(secretVersionID),
		})
}

// MarkUsed records a successful import and drops the token and wrapped
// material. A record already used is left used (idempotent).
func (s *Tokens) MarkUsed(ctx context.Context, keyARN, sk string) error {
	return s.final(ctx, keyARN, sk, TokenUsed, "imported", TokenWrapped, TokenUsed)
}

// MarkUsedWith is MarkUsed that also notes the KeyMaterialId KMS
// returned, so a retried import stage that finds the token used knows it.
func (s *Tokens) MarkUsedWith(ctx context.Context, keyARN, sk, keyMaterialID string) error {
	if keyMaterialID == "" {
		return s.MarkUsed(ctx, keyARN, sk)
	}
	return s.update(ctx, keyARN, sk,
		"SET #s = :to, statusReason = :reason, keyMaterialId = :id, updatedAt = :now REMOVE importToken, encryptedKeyMaterial",
		"#s IN (:from0, :from1)", map[string]types.AttributeValue{
			":to": str(TokenUsed), ":reason": str("imported"), ":id": str(keyMaterialID), ":from0": str(TokenWrapped), ":from1": str(TokenUsed),
		})
}

// MarkExpired abandons a token that is too close to its ParametersValidTo.
func (s *Tokens) MarkExpired(ctx context.Context, keyARN, sk, reason string) error {
	return s.final(ctx, keyARN, sk, TokenExpired, reason, TokenIssued, TokenWrapped, TokenExpired)
}

// MarkFailed records that KMS refused the import with this token.
func (s *Tokens) MarkFailed(ctx context.Context, keyARN, sk, reason string) error {
	return s.final(ctx, keyARN, sk, TokenFailed, reason, TokenIssued, TokenWrapped, TokenFailed)
}

// final moves a record to a final status, allowed only from the listed
// ones, and removes the token and wrapped material.
func (s *Tokens) final(ctx context.Context, keyARN, sk, status, reason string, from ...string) error {
	vals := map[string]types.AttributeValue{":to": str(status), ":reason": str(reason)}
	ph := make([]string, len(from))
	for i, f := range from {
		ph[i] = fmt.Sprintf(":from%d", i)
		vals[ph[i]] = str(f)
	}
	return s.update(ctx, keyARN, sk,
		"SET #s = :to, statusReason = :reason, updatedAt = :now REMOVE importToken, encryptedKeyMaterial",
		"#s IN ("+strings.Join(ph, ", ")+")", vals)
}

func (s *Tokens) update(ctx context.Context, keyARN, sk, expr, cond string, vals map[string]types.AttributeValue) error {
	vals[":now"] = str(s.now().UTC().Format(time.RFC3339Nano))
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.Table,
		Key:                       itemKey(keyARN, sk),
		UpdateExpression:          &expr,
		ConditionExpression:       aws.String("attribute_exists(pk) AND " + cond),
		ExpressionAttributeNames:  map[string]string{"#s": "status"},
		ExpressionAttributeValues: vals,
	})
	if err != nil {
		var cf *types.ConditionalCheckFailedException
		if errors.As(err, &cf) {
			return fmt.Errorf("%w: token record %s is missing or not in a status that allows this", ErrConflict, sk)
		}
		return fmt.Errorf("updating token record %s: %w", sk, err)
	}
	return nil
}

// List returns a key's token records, oldest first.
func (s *Tokens) List(ctx context.Context, keyARN string) ([]Token, error) {
	return List[Token](ctx, s.DB, s.Table, keyARN, "TOKEN#")
}

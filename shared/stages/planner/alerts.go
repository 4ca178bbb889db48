package planner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// Publisher is the part of SNS the planner uses (the product's
// notification topic, as record-failure).
type Publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Marks remember which notifications went out today: Take says true the
// first time (kind, key, day) is taken, false after; Give lets go of a
// mark whose notification could not be sent.
type Marks interface {
	Take(ctx context.Context, kind, keyARN, day string) (bool, error)
	Give(ctx context.Context, kind, keyARN, day string) error
}

// ReplicaDropper takes a replica KMS no longer has out of a registry
// entry, where the planner saw it at position at of the list
// (registry.Store.DropReplica).
type ReplicaDropper interface {
	DropReplica(ctx context.Context, keyARN string, at int, replicaARN string) error
}

// Notification kinds (one mark each per key per day).
const (
	KindExpiring    = "expiring"
	KindDrift       = "drift"
	KindReplicaGone = "replicaGone"
)

// AlertPK is the partition of the notification marks: never the
// registry's, so the planner's registry reads never see them.
const AlertPK = "ALERT"

// markRetention: a mark lives a few days (DynamoDB TTL, attribute
// expiresAt) and then goes by itself.
const markRetention = 3 * 24 * time.Hour

// MarkDB is the part of DynamoDB the marks use.
type MarkDB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// DynamoMarks keeps the marks in the rotation table: one item per kind,
// day and key, written only if absent (a conditional PutItem), so two
// runs on one day notify once.
type DynamoMarks struct {
	DB    MarkDB
	Table string
	Now   func() time.Time
}

func markKey(kind, arn, day string) map[string]dbtypes.AttributeValue {
	return map[string]dbtypes.AttributeValue{
		"pk": &dbtypes.AttributeValueMemberS{Value: AlertPK},
		"sk": &dbtypes.AttributeValueMemberS{Value: kind + "#" + day + "#" + arn},
	}
}

// Take writes the mark unless it is there.
func (m *DynamoMarks) Take(ctx context.Context, kind, arn, day string) (bool, error) {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	item := markKey(kind, arn, day)
	item["type"] = &dbtypes.AttributeValueMemberS{Value: "alert"}
	item["expiresAt"] = &dbtypes.AttributeValueMemberN{Value: fmt.Sprint(now.Add(markRetention).Unix())}
	_, err := m.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: &m.Table, Item: item,
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var cf *dbtypes.ConditionalCheckFailedException
	switch {
	case errors.As(err, &cf):
		return false, nil
	case err != nil:
		return false, flow.FromAWS(err, flow.Internal, "writing the %s notification mark of %s", kind, arn)
	}
	return true, nil
}

// Give deletes the mark.
func (m *DynamoMarks) Give(ctx context.Context, kind, arn, day string) error {
	_, err := m.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &m.Table, Key: markKey(kind, arn, day)})
	if err != nil {
		return fmt.Errorf("deleting the %s notification mark of %s: %w", kind, arn, err)
	}
	return nil
}

// Notice is one notification the planner sends: identifiers and dates
// only, never material or a token.
type Notice struct {
	Kind    string
	KeyARN  string
	Subject string
	Body    string
}

// expiringNotice tells that a key expires within the alarm window.
func expiringNotice(e registry.Entry, x Expiry, days, alarmDays float64) Notice {
	var b strings.Builder
	fmt.Fprintf(&b, "A managed key's imported material expires within %g days (ExpiryAlarmDays), as KMS says.\n\n", alarmDays)
	fmt.Fprintf(&b, "Key:        %s\n", e.KeyARN)
	fmt.Fprintf(&b, "Account:    %s (Region %s)\n", e.Account(), registry.RegionOf(e.KeyARN))
	if x.KeyARN != e.KeyARN {
		fmt.Fprintf(&b, "Expiring:   %s\n", x.KeyARN)
	}
	fmt.Fprintf(&b, "ValidTo:    %s (%.2f days left)\n", x.ValidTo.UTC().Format(time.RFC3339), days)
	fmt.Fprintf(&b, "Status:     %s %s\n", e.Status, e.LastError)
	fmt.Fprintf(&b, "\nWhat to do: run `kms-reimport status` and `kms-reimport plan`; the fleet run renews due keys, and a failed renewal is notified on its own. Renew by hand (kms-reimport rotate) if the run cannot.\n")
	return Notice{Kind: KindExpiring, KeyARN: e.KeyARN, Subject: snsSubject("kms-reimport: key material expires soon for " + shortKey(x.KeyARN)), Body: b.String()}
}

// driftNotice tells that KMS's expiry is earlier than the registry's.
func driftNotice(e registry.Entry, ds []Drift) Notice {
	var b strings.Builder
	fmt.Fprintf(&b, "KMS says a managed key's material expires earlier than the registry expects (drift). This run renews it.\n\n")
	fmt.Fprintf(&b, "Key:        %s\n", e.KeyARN)
	fmt.Fprintf(&b, "Account:    %s (Region %s)\n", e.Account(), registry.RegionOf(e.KeyARN))
	for _, d := range ds {
		fmt.Fprintf(&b, "In %s (%s): KMS state %s, ValidTo %s; registry expected %s\n", d.Region, d.KeyARN, d.State, stamp(d.Actual), stamp(d.Expected))
	}
	fmt.Fprintf(&b, "\nWhat to do: nothing if the renewal succeeds; look for an import made outside this product or a late import of a stopped execution.\n")
	return Notice{Kind: KindDrift, KeyARN: e.KeyARN, Subject: snsSubject("kms-reimport: KMS expiry earlier than registry for " + shortKey(e.KeyARN)), Body: b.String()}
}

// goneNotice tells that a registered replica no longer exists in KMS.
func goneNotice(e registry.Entry, r KeyFacts) Notice {
	body := fmt.Sprintf("A replica of a managed multi-Region key no longer exists in KMS; it is taken out of the registry and no longer renewed.\n\nKey:        %s\nAccount:    %s\nReplica:    %s (%s)\n\nWhat to do: nothing, unless the replica was deleted by mistake (then replicate the key again and run kms-reimport register).\n",
		e.KeyARN, e.Account(), r.KeyARN, r.Region)
	return Notice{Kind: KindReplicaGone, KeyARN: r.KeyARN, Subject: snsSubject("kms-reimport: replica gone for " + shortKey(e.KeyARN)), Body: body}
}

func stamp(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

func shortKey(arn string) string {
	if i := strings.LastIndex(arn, "/"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// snsSubject keeps a subject inside SNS's 100-character limit.
func snsSubject(s string) string {
	if r := []rune(s); len(r) > 100 {
		return string(r[:99]) + "…"
	}
	return s
}

// Notifier sends the planner's notifications, each at most once a day
// per key and kind.
type Notifier struct {
	SNS   Publisher
	Topic string
	Marks Marks
}

// Send publishes n unless its mark for day is taken; a publish that fails
// gives the mark back, so the next run tries again.
func (nf *Notifier) Send(ctx context.Context, n Notice, day string) (bool, error) {
	if nf == nil || nf.SNS == nil || nf.Topic == "" {
		return false, nil
	}
	if nf.Marks != nil {
		first, err := nf.Marks.Take(ctx, n.Kind, n.KeyARN, day)
		if err != nil || !first {
			return false, err
		}
	}
	_, err := nf.SNS.Publish(ctx, &sns.PublishInput{TopicArn: &nf.Topic, Subject: &n.Subject, Message: &n.Body})
	if err != nil {
		if nf.Marks != nil {
			_ = nf.Marks.Give(ctx, n.Kind, n.KeyARN, day)
		}
		return false, flow.FromAWS(err, flow.Internal, "publishing the %s notification of %s", n.Kind, n.KeyARN)
	}
	return true, nil
}

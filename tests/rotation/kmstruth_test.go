package rotation

// Issue 16, "KMS is the truth", on the local stack (stand-in KMS with
// replica Regions, DynamoDB Local, moto for SNS and SQS): scenarios 2, 4
// and 8, each failing on the code before the planner read KMS.

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// kmsPlanner is the planner as the function builds it, reading the
// stand-in in each Region (the fleet run's KMS reads, in process).
func kmsPlanner(t *testing.T) *planner.Stage {
	t.Helper()
	cfg, err := st.AWSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := kmsaccess.New(cfg, st.RegionKMS)
	if err != nil {
		t.Fatal(err)
	}
	return &planner.Stage{Registry: &registry.Store{DB: db, Table: st.Table}, PageSize: 1000, Report: true,
		KMS: kmsaccess.Describing{Regional: c}, AlarmDays: 7}
}

// planFor plans the whole registry and returns the item of arn (nil: not
// due) and the run's stats.
func planFor(t *testing.T, p *planner.Stage, arn string) (*planner.Item, planner.Stats) {
	t.Helper()
	var item *planner.Item
	s := planner.State{}
	for {
		var err error
		if s, err = p.Plan(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		for i := range s.Items {
			if s.Items[i].KeyID == arn {
				item = &s.Items[i]
			}
		}
		if s.Next == "" {
			return item, s.Stats
		}
	}
}

func itemInput(it *planner.Item) map[string]any {
	in := map[string]any{"keyId": it.KeyID, "secretId": it.SecretID, "validFor": it.ValidFor, "renewBefore": it.RenewBefore,
		"wrappingKeySpec": "RSA_2048"}
	if len(it.Regions) > 0 {
		in["regions"] = it.Regions
	}
	return in
}

func primaryState(t *testing.T, arn string) *types.KeyMetadata {
	t.Helper()
	d, err := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		t.Fatal(err)
	}
	return d.KeyMetadata
}

// TestReplicaPendingDeletionHoldsNothing (issue 16, scenario 4): a replica
// pending deletion (a waiting period longer than renewBefore) does not
// block its primary: a "regions" run naming only the primary's Region
// renews it, and the planner, reading KMS, plans the primary and the live
// replica without the leaving one; the execution it plans succeeds.
// Before: the fetch stage checked every replica, so both runs failed
// KeyNotEligible on the replica.
func TestReplicaPendingDeletionHoldsNothing(t *testing.T) {
	primary, replicas := mrk(t)
	name, _ := secret(t)
	mustSucceed(t, executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validTo": vt(30 * 24 * time.Hour).Format(time.RFC3339),
		"register": true, "renewBefore": "7d", "wrappingKeySpec": "RSA_2048"}, "0.04"))
	leaving := replicas["eu-west-1"]
	if _, err := regionalKMS(t, "eu-west-1").ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: &leaving, PendingWindowInDays: aws.Int32(30)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); replicaState(t, "eu-west-1", leaving).KeyState != types.KeyStatePendingDeletion; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the replica never showed PendingDeletion")
		}
	}
	// A regions run naming only the primary's Region: the replica pending
	// deletion is not checked.
	short := vt(3 * 24 * time.Hour)
	r := execute(t, primary, map[string]any{"keyId": primary, "secretId": name, "validTo": short.Format(time.RFC3339), "regions": []string{"eu-west-2"}, "wrappingKeySpec": "RSA_2048"})
	mustSucceed(t, r)
	if md := primaryState(t, primary); !md.ValidTo.Equal(short) {
		t.Fatalf("primary ValidTo %v, want %s", md.ValidTo, short)
	}

	// The primary is now due (3 days left, renewBefore 7d); eu-west-3 is
	// not; eu-west-1 is leaving.
	item, stats := planFor(t, kmsPlanner(t), primary)
	if item == nil || !slices.Equal(item.Regions, []string{"eu-west-2"}) {
		t.Fatalf("planner item %+v: want the primary alone (regions [eu-west-2])", item)
	}
	if stats.ReplicasLeaving < 1 {
		t.Errorf("stats.replicasLeaving %d, want the replica pending deletion counted", stats.ReplicasLeaving)
	}
	mustSucceed(t, execute(t, primary, itemInput(item)))
	if md := primaryState(t, primary); md.KeyState != types.KeyStateEnabled || !md.ValidTo.After(short) {
		t.Errorf("primary after the planned run: %s to %v, want Enabled past %s", md.KeyState, md.ValidTo, short)
	}
	if md := replicaState(t, "eu-west-1", leaving); md.KeyState != types.KeyStatePendingDeletion {
		t.Errorf("leaving replica: %s, want still PendingDeletion (never imported into)", md.KeyState)
	}
}

// TestRegionsRunSkippingPendingImportPrimary (issue 16, scenario 8): a
// "regions" run that skips a primary in PendingImport writes no
// currentValidTo; the registry alone then reads the key as never
// expiring. The planner reads KMS: the primary is PendingImport while the
// registry has it valid: drift, planned in the same run, and the planned
// execution makes the primary Enabled again.
func TestRegionsRunSkippingPendingImportPrimary(t *testing.T) {
	primary, _ := mrk(t)
	name, _ := secret(t)
	mustSucceed(t, executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validTo": vt(30 * 24 * time.Hour).Format(time.RFC3339),
		"register": true, "renewBefore": "7d", "wrappingKeySpec": "RSA_2048"}, "0.04"))
	if _, err := kc.DeleteImportedKeyMaterial(context.Background(), &kms.DeleteImportedKeyMaterialInput{KeyId: &primary}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); primaryState(t, primary).KeyState != types.KeyStatePendingImport; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the primary never showed PendingImport")
		}
	}
	mustSucceed(t, execute(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "720h", "regions": []string{"eu-west-1"}, "wrappingKeySpec": "RSA_2048"}))
	reg := &registry.Store{DB: db, Table: st.Table}
	e, err := reg.Get(context.Background(), primary)
	if err != nil {
		t.Fatal(err)
	}
	if e.CurrentValidTo != nil {
		t.Logf("registry currentValidTo %v after the regions run (the scenario expects none)", e.CurrentValidTo)
	}
	if due, why := e.IsDue(time.Now()); due {
		t.Logf("the registry alone now says due (%s)", why)
	}

	// The planner before issue 16 read the registry alone: it did not plan
	// the key.
	if old, _ := planFor(t, &planner.Stage{Registry: reg, PageSize: 1000, Report: true}, primary); old == nil {
		t.Logf("the registry alone does not plan the key (scenario 8 reproduced)")
	}
	item, stats := planFor(t, kmsPlanner(t), primary)
	if item == nil || !slices.Contains(item.Regions, "eu-west-2") && len(item.Regions) > 0 {
		t.Fatalf("planner item %+v: want the primary planned (KMS: PendingImport)", item)
	}
	if stats.Drifted < 1 || stats.Reasons["KMS expiry earlier than registry"] < 1 {
		t.Errorf("stats %+v: want the key counted as drifted", stats)
	}
	if stats.FewestDaysLeft == nil || *stats.FewestDaysLeft > 0 {
		t.Errorf("FewestDaysLeft %v: want 0 or less (the primary has no material), never 'no expiry'", stats.FewestDaysLeft)
	}
	mustSucceed(t, execute(t, primary, itemInput(item)))
	if md := primaryState(t, primary); md.KeyState != types.KeyStateEnabled {
		t.Errorf("primary after the planned run: %s, want Enabled", md.KeyState)
	}
}

// topicQueue subscribes a new SQS queue to the product's topic (moto
// delivers SNS to SQS) and returns a reader of the subjects published.
func topicQueue(t *testing.T) func() []string {
	t.Helper()
	ctx := context.Background()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// moto answers for SQS too, on the endpoint it serves Secrets Manager and SNS on.
	q := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(st.Secrets) })
	qo, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(uniq("kmstruth"))})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: qo.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sns.NewFromConfig(cfg).Subscribe(ctx, &sns.SubscribeInput{TopicArn: &st.Topic, Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "false"}}); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		var subjects []string
		for {
			out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qo.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Messages) == 0 {
				return subjects
			}
			for _, m := range out.Messages {
				var env struct{ Subject, Message string }
				if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &env); err != nil {
					t.Fatalf("SNS envelope: %v: %s", err, aws.ToString(m.Body))
				}
				subjects = append(subjects, env.Subject)
				_, _ = q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: qo.QueueUrl, ReceiptHandle: m.ReceiptHandle})
			}
		}
	}
}

// TestSecondKeyNearExpiryNotHidden (issue 16, scenario 2): two keys
// inside ExpiryAlarmDays. A fleet run (planner function, its role through
// the IAM gate) counts both in KeysExpiringSoon (the alarm's metric) and
// notifies each on its own; a second run the same day counts them again
// and notifies neither again. Before: one fleet-wide minimum
// (FewestDaysLeft), no per-key count, no notification.
func TestSecondKeyNearExpiryNotHidden(t *testing.T) {
	read := topicQueue(t)
	var arns []string
	for _, validFor := range []string{"72h", "96h"} {
		arn := externalKey(t, false)
		name, _ := secret(t)
		mustSucceed(t, execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": validFor, "register": true, "renewBefore": "48h", "wrappingKeySpec": "RSA_2048"}))
		arns = append(arns, arn)
	}
	fleet := func() planner.Stats {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		ex, err := st.Execute(ctx, root, []byte(`{}`), stack.ExecuteOptions{StateMachine: "FleetStateMachine", WaitScale: "0.04"})
		if err != nil {
			t.Fatal(err)
		}
		if ex.Status != "SUCCEEDED" {
			t.Fatalf("fleet run %s: %s %s", ex.Status, ex.Error, ex.Cause)
		}
		var stats planner.Stats
		if err := json.Unmarshal(ex.Output, &stats); err != nil {
			t.Fatalf("fleet output: %v: %s", err, ex.Output)
		}
		return stats
	}
	stats := fleet()
	if stats.ExpiringSoon < 2 {
		t.Errorf("fleet run: expiringSoon %d, want both keys counted (KeysExpiringSoon)", stats.ExpiringSoon)
	}
	subjects := read()
	for _, arn := range arns {
		want := "kms-reimport: key material expires soon for " + arn[strings.LastIndex(arn, "/")+1:]
		if n := countOf(subjects, want); n != 1 {
			t.Errorf("%d notifications %q, want 1; all: %v", n, want, subjects)
		}
	}
	stats = fleet()
	if stats.ExpiringSoon < 2 {
		t.Errorf("second fleet run: expiringSoon %d, want both keys counted again", stats.ExpiringSoon)
	}
	if again := read(); len(again) > 0 {
		for _, arn := range arns {
			if n := countOf(again, "kms-reimport: key material expires soon for "+arn[strings.LastIndex(arn, "/")+1:]); n != 0 {
				t.Errorf("second run the same day notified %s again (%d)", arn, n)
			}
		}
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

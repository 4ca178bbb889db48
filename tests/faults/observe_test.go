package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

// observer collects the soak's facts (runFacts) from the stack: KMS key
// states sampled during a run, the import tokens KMS handed out (seen at
// the KMS proxy), the material of each key, SNS messages (through an SQS
// queue subscribed to the topic), the table, the function logs.
type observer struct {
	mu      sync.Mutex
	tokens  [][]byte
	states  map[string][]string
	queue   *sqs.Client
	url     *string
	logRead map[string]int // how much of each function log was scanned
}

// outputs holds the output of executions the soak ran on its own
// (abortOne), to be scanned.
var outputs collected

type collected struct {
	mu    sync.Mutex
	blobs []blob
}

func (c *collected) add(b blob) {
	c.mu.Lock()
	c.blobs = append(c.blobs, b)
	c.mu.Unlock()
}

func (o *observer) takeOutputs() []blob {
	outputs.mu.Lock()
	defer outputs.mu.Unlock()
	b := outputs.blobs
	outputs.blobs = nil
	return b
}

func newObserver(tb testing.TB) *observer {
	tb.Helper()
	ctx := context.Background()
	o := &observer{states: map[string][]string{}, logRead: map[string]int{}}
	kmsProxy.Answered = func(op string, answer []byte) {
		if !strings.HasSuffix(op, ".GetParametersForImport") {
			return
		}
		var out struct{ ImportToken string }
		if json.Unmarshal(answer, &out) == nil {
			if b, err := base64.StdEncoding.DecodeString(out.ImportToken); err == nil && len(b) > 0 {
				o.mu.Lock()
				o.tokens = append(o.tokens, b)
				o.mu.Unlock()
			}
		}
	}
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	// moto answers for SQS on the endpoint it serves Secrets Manager and SNS on.
	o.queue = sqs.NewFromConfig(cfg, func(op *sqs.Options) { op.BaseEndpoint = aws.String(st.Secrets) })
	q, err := o.queue.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("soak-%d", time.Now().UnixNano()))})
	if err != nil {
		tb.Fatal(err)
	}
	o.url = q.QueueUrl
	attrs, err := o.queue.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := sns.NewFromConfig(cfg).Subscribe(ctx, &sns.SubscribeInput{TopicArn: &st.Topic, Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes["QueueArn"]), Attributes: map[string]string{"RawMessageDelivery": "false"}}); err != nil {
		tb.Fatal(err)
	}
	return o
}

func (o *observer) close() { kmsProxy.Answered = nil }

// sample reads every key's state with DescribeKey, over and over, until
// stop is closed (local-kms restarting: a read that fails is skipped).
func (o *observer) sample(arns []string, stop <-chan struct{}) {
	for {
		for _, a := range arns {
			select {
			case <-stop:
				return
			default:
			}
			if md, err := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &a}); err == nil {
				o.mu.Lock()
				o.states[a] = append(o.states[a], string(md.KeyMetadata.KeyState))
				o.mu.Unlock()
			}
			// Paced: a sweep of 100 keys a second or so, without taking
			// local-kms from the functions.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

var executionLine = regexp.MustCompile(`(?m)^Execution:\s+(\S+)`)

// notifications drains the queue: every message is a blob to scan; each
// failure notification counts for the execution it names.
func (o *observer) notifications(tb testing.TB, f *runFacts) {
	tb.Helper()
	ctx := context.Background()
	for {
		out, err := o.queue.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: o.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			tb.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return
		}
		for _, m := range out.Messages {
			var env struct{ Subject, Message string }
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &env)
			f.Blobs = append(f.Blobs, blob{Where: "SNS message " + env.Subject, Data: []byte(aws.ToString(m.Body))})
			if strings.HasPrefix(env.Subject, "kms-reimport: rotation failed") {
				if mm := executionLine.FindStringSubmatch(env.Message); mm != nil {
					f.Notifications[mm[1]]++
				}
			}
			_, _ = o.queue.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: o.url, ReceiptHandle: m.ReceiptHandle})
		}
	}
}

// materials are the keys' plaintext material, as the test can read it.
func materials(tb testing.TB, arns []string) []secret {
	tb.Helper()
	var out []secret
	for _, a := range arns {
		e, err := reg.Get(context.Background(), a)
		if err != nil {
			tb.Fatal(err)
		}
		v, err := sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: &e.SecretID})
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, secret{What: "material of " + a, Bytes: v.SecretBinary})
	}
	return out
}

// scanTable reads every item: each is a blob to scan (the token records
// excepted: the one place an import token may be, checked by settled);
// the failure records written since start count per execution.
func scanTable(tb testing.TB, f *runFacts, start time.Time) {
	tb.Helper()
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: &st.Table, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		for _, it := range page.Items {
			pk, sk := str(it["pk"]), str(it["sk"])
			if strings.HasPrefix(sk, "TOKEN#") {
				continue
			}
			var b []byte
			for name, v := range it {
				b = append(b, name...)
				b = append(b, '=')
				b = appendValue(b, v)
				b = append(b, '\n')
			}
			f.Blobs = append(f.Blobs, blob{Where: "table item " + pk + " " + sk, Data: b})
			if strings.HasPrefix(pk, "EXEC#") && sk == records.FailureSK {
				if at, err := time.Parse(time.RFC3339Nano, str(it["recordedAt"])); err == nil && !at.Before(start) {
					f.FailureRecords[str(it["executionId"])]++
				}
			}
		}
	}
}

func str(v ddbtypes.AttributeValue) string {
	if s, ok := v.(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func appendValue(b []byte, v ddbtypes.AttributeValue) []byte {
	switch x := v.(type) {
	case *ddbtypes.AttributeValueMemberS:
		return append(b, x.Value...)
	case *ddbtypes.AttributeValueMemberN:
		return append(b, x.Value...)
	case *ddbtypes.AttributeValueMemberB:
		return append(b, x.Value...)
	case *ddbtypes.AttributeValueMemberM:
		for k, e := range x.Value {
			b = appendValue(append(append(b, k...), ':'), e)
			b = append(b, ' ')
		}
	case *ddbtypes.AttributeValueMemberL:
		for _, e := range x.Value {
			b = append(appendValue(b, e), ' ')
		}
	case *ddbtypes.AttributeValueMemberSS:
		b = append(b, strings.Join(x.Value, " ")...)
	case *ddbtypes.AttributeValueMemberBS:
		for _, e := range x.Value {
			b = append(append(b, e...), ' ')
		}
	}
	return b
}

// newLogs are what the stack's function log files gained since the last
// call (a line cut at the boundary is scanned whole the next time).
func (o *observer) newLogs(tb testing.TB) []blob {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(st.Dir, "logs", "*Function*.log"))
	if len(files) == 0 {
		tb.Fatalf("no function log under %s: the log check would pass on nothing", filepath.Join(st.Dir, "logs"))
	}
	var out []blob
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		from := o.logRead[p]
		if i := bytes.LastIndexByte(b, '\n'); i >= from {
			out = append(out, blob{Where: "log " + filepath.Base(p), Data: b[from : i+1]})
			o.logRead[p] = i + 1
		}
	}
	return out
}

package main

// In-memory fakes of the AWS clients the subcommands use (aws.go's
// interfaces): no Java, no network.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// fakes installs the fakes for one test and restores the real clients
// after it.
type fakes struct {
	sfn   *fakeSFN
	stack *fakeStack
	kms   *fakeKMS
	db    *fakeDB
}

func withFakes(t *testing.T) *fakes {
	t.Helper()
	f := &fakes{sfn: &fakeSFN{}, stack: &fakeStack{outputs: map[string]string{}, params: map[string]string{}}, kms: &fakeKMS{keys: map[string]*kmstypes.KeyMetadata{}}, db: &fakeDB{}}
	saved := clients
	clients.sfn = func(aws.Config) sfnAPI { return f.sfn }
	clients.stack = func(aws.Config) stackAPI { return f.stack }
	clients.kms = func(aws.Config) keyAPI { return f.kms }
	clients.db = func(aws.Config) dbAPI { return f.db }
	clients.reader = func(aws.Config, kmsaccess.Members) (planner.KeyReader, error) { return fakeReader{f.kms}, nil }
	clients.caller = func(aws.Config) callerAPI { return fakeCaller{account: "111122223333"} }
	clients.aliases = func(*kmsaccess.Clients, string, string, string) aliasAPI { return f.kms }
	t.Setenv(kmsaccess.MemberRoleVar, "")
	t.Setenv(kmsaccess.ExternalIDVar, "")
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Cleanup(func() { clients = saved })
	return f
}

// fakeSFN records the executions started and answers the history it is
// given, in pages of pageSize.
type fakeSFN struct {
	started  []sfn.StartExecutionInput
	events   []sfntypes.HistoryEvent
	describe sfn.DescribeExecutionOutput
	pageSize int
}

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.started = append(f.started, *in)
	arn := strings.Replace(aws.ToString(in.StateMachineArn), ":stateMachine:", ":execution:", 1) + ":run-1"
	return &sfn.StartExecutionOutput{ExecutionArn: &arn, StartDate: aws.Time(time.Now())}, nil
}

func (f *fakeSFN) DescribeExecution(context.Context, *sfn.DescribeExecutionInput, ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	d := f.describe
	return &d, nil
}

func (f *fakeSFN) GetExecutionHistory(_ context.Context, in *sfn.GetExecutionHistoryInput, _ ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error) {
	start := 0
	if in.NextToken != nil {
		fmt.Sscan(*in.NextToken, &start)
	}
	size := f.pageSize
	if size == 0 {
		size = len(f.events)
	}
	end := min(start+size, len(f.events))
	out := &sfn.GetExecutionHistoryOutput{Events: f.events[start:end]}
	if end < len(f.events) {
		out.NextToken = aws.String(fmt.Sprint(end))
	}
	return out, nil
}

type fakeStack struct {
	outputs, params map[string]string
	asked           []string
}

func (f *fakeStack) DescribeStacks(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	f.asked = append(f.asked, aws.ToString(in.StackName))
	if len(f.outputs) == 0 {
		return nil, errors.New("ValidationError: Stack with id " + aws.ToString(in.StackName) + " does not exist")
	}
	var s cfntypes.Stack
	for k, v := range f.outputs {
		s.Outputs = append(s.Outputs, cfntypes.Output{OutputKey: aws.String(k), OutputValue: aws.String(v)})
	}
	for k, v := range f.params {
		s.Parameters = append(s.Parameters, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	return &cloudformation.DescribeStacksOutput{Stacks: []cfntypes.Stack{s}}, nil
}

// fakeKMS knows keys by ARN, id and alias.
type fakeKMS struct {
	keys    map[string]*kmstypes.KeyMetadata
	aliases []kmstypes.AliasListEntry
}

func (f *fakeKMS) addKey(arn string, validTo *time.Time, aliases ...string) {
	id := keyIDOf(arn)
	md := &kmstypes.KeyMetadata{Arn: aws.String(arn), KeyId: aws.String(id), ValidTo: validTo, KeyState: kmstypes.KeyStateEnabled, Origin: kmstypes.OriginTypeExternal}
	f.keys[arn], f.keys[id] = md, md
	for _, a := range aliases {
		f.keys[a] = md
		f.aliases = append(f.aliases, kmstypes.AliasListEntry{AliasName: aws.String(a), TargetKeyId: aws.String(id)})
	}
}

func (f *fakeKMS) DescribeKey(_ context.Context, in *kms.DescribeKeyInput, _ ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	md, ok := f.keys[aws.ToString(in.KeyId)]
	if !ok {
		return nil, &kmstypes.NotFoundException{Message: aws.String("key not found")}
	}
	return &kms.DescribeKeyOutput{KeyMetadata: md}, nil
}

// fakeReader is the planner's KeyReader over fakeKMS (every Region).
type fakeReader struct{ kms *fakeKMS }

func (r fakeReader) Describe(ctx context.Context, _, keyID string) (*kmstypes.KeyMetadata, error) {
	return kmsaccess.Describe(ctx, r.kms, keyID)
}

func (f *fakeKMS) ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error) {
	return &kms.ListAliasesOutput{Aliases: f.aliases}, nil
}

// fakeDB is a table answering Query on pk = :pk [AND begins_with(sk, :t)].
type fakeDB struct {
	items []map[string]ddbtypes.AttributeValue
}

func (f *fakeDB) put(t *testing.T, pk, sk string, v any) {
	t.Helper()
	item, err := attributevalue.MarshalMap(v)
	if err != nil {
		t.Fatal(err)
	}
	item["pk"], item["sk"] = &ddbtypes.AttributeValueMemberS{Value: pk}, &ddbtypes.AttributeValueMemberS{Value: sk}
	f.items = append(f.items, item)
}

func sOf(v ddbtypes.AttributeValue) string {
	if s, ok := v.(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func (f *fakeDB) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	pk, prefix := sOf(in.ExpressionAttributeValues[":pk"]), sOf(in.ExpressionAttributeValues[":t"])
	var out []map[string]ddbtypes.AttributeValue
	for _, it := range f.items {
		if sOf(it["pk"]) == pk && strings.HasPrefix(sOf(it["sk"]), prefix) {
			out = append(out, it)
		}
	}
	sort.Slice(out, func(i, j int) bool { return sOf(out[i]["sk"]) < sOf(out[j]["sk"]) })
	return &dynamodb.QueryOutput{Items: out}, nil
}

func (f *fakeDB) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, errors.New("fakeDB: GetItem: a report must not need it")
}

func (f *fakeDB) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return nil, errors.New("fakeDB: PutItem: a report must not write")
}

func (f *fakeDB) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return nil, errors.New("fakeDB: UpdateItem: a report must not write")
}

func (f *fakeDB) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return nil, errors.New("fakeDB: DeleteItem: a report must not write")
}

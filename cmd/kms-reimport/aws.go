package main

// The AWS clients the subcommands use, behind small interfaces declared
// here so the unit tests run on in-memory fakes. Every client is built from
// the standard SDK configuration: region, credentials and endpoints
// (AWS_ENDPOINT_URL_SFN, AWS_ENDPOINT_URL_DYNAMODB, ... for the local stack).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

// sfnAPI is the part of Step Functions rotate uses.
type sfnAPI interface {
	StartExecution(context.Context, *sfn.StartExecutionInput, ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	DescribeExecution(context.Context, *sfn.DescribeExecutionInput, ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
	GetExecutionHistory(context.Context, *sfn.GetExecutionHistoryInput, ...func(*sfn.Options)) (*sfn.GetExecutionHistoryOutput, error)
}

// stackAPI is the part of CloudFormation that finds a deployment's outputs.
type stackAPI interface {
	DescribeStacks(context.Context, *cloudformation.DescribeStacksInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
}

// keyAPI resolves a key id or alias to the key.
type keyAPI interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

// aliasAPI lists the aliases of one account and Region (status).
type aliasAPI interface {
	ListAliases(context.Context, *kms.ListAliasesInput, ...func(*kms.Options)) (*kms.ListAliasesOutput, error)
}

// dbAPI is the part of DynamoDB the reports read (registry and records).
type dbAPI interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// clients builds the AWS clients; the tests replace it with fakes.
var clients = struct {
	sfn   func(aws.Config) sfnAPI
	stack func(aws.Config) stackAPI
	kms   func(aws.Config) keyAPI
	db    func(aws.Config) dbAPI
	// reader reads keys as the planner does, each in its own account
	// and Region (KMS_ENDPOINTS_BY_REGION as the functions read it):
	// plan, status, history. Members with no Own: MEMBER_ACCOUNTS and
	// the others as the functions read them (kmsaccess.FromEnv).
	reader func(aws.Config, kmsaccess.Members) (planner.KeyReader, error)
	// caller tells the account of the credentials.
	caller func(aws.Config) callerAPI
	// aliases is the ListAliases client of account in region from the
	// accounts' clients (kmsaccess: a member's signs with the member
	// role); partition is the caller's, for the member role's ARN.
	aliases func(cs *kmsaccess.Clients, partition, account, region string) aliasAPI
}{
	sfn:   func(c aws.Config) sfnAPI { return sfn.NewFromConfig(c) },
	stack: func(c aws.Config) stackAPI { return cloudformation.NewFromConfig(c) },
	kms:   func(c aws.Config) keyAPI { return kms.NewFromConfig(c) },
	db:    func(c aws.Config) dbAPI { return dynamodb.NewFromConfig(c) },
	reader: func(c aws.Config, ms kmsaccess.Members) (planner.KeyReader, error) {
		var r *kmsaccess.Clients
		var err error
		if ms.Own == "" {
			r, err = kmsaccess.FromEnv(c)
		} else {
			r, err = memberClients(c, ms)
		}
		if err != nil {
			return nil, err
		}
		return kmsaccess.Describing{Regional: r}, nil
	},
	caller: func(c aws.Config) callerAPI { return sts.NewFromConfig(c) },
	aliases: func(cs *kmsaccess.Clients, partition, account, region string) aliasAPI {
		return cs.AccountIn(partition, account, region)
	},
}

// sdkLogger sends the SDK's own log lines (its WARN "failed to close HTTP
// response body" among them, which DynamoDB's CRC32 response check logs
// for an error answer without an X-Amz-Crc32 header: aws-sdk-go-v2 issue
// 3545) to slog at DEBUG: not user output. The failure itself still
// reaches the caller as the call's error.
type sdkLogger struct{}

func (sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	slog.Debug("aws sdk", "class", string(c), "message", fmt.Sprintf(format, v...))
}

// awsConfig is the SDK configuration of every subcommand: the standard
// chain, the SDK's own log lines kept out of the user's output.
func awsConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithLogger(sdkLogger{}))
	if err != nil {
		return cfg, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return cfg, nil
}

// defaultStack is the stack name samconfig.toml deploys
// (default.global.parameters stack_name), or "kms-reimport".
func defaultStack() string {
	b, err := os.ReadFile("samconfig.toml")
	if err != nil {
		return "kms-reimport"
	}
	inGlobal := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			inGlobal = line == "[default.global.parameters]"
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if inGlobal && ok && strings.TrimSpace(k) == "stack_name" {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return "kms-reimport"
}

// stackInfo is what a deployment's CloudFormation stack tells the command.
type stackInfo struct {
	Outputs    map[string]string
	Parameters map[string]string
}

// describeStack reads a stack's outputs and parameters.
func describeStack(ctx context.Context, api stackAPI, name string) (stackInfo, error) {
	out, err := api.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &name})
	if err != nil {
		return stackInfo{}, fmt.Errorf("stack %s: %w", name, err)
	}
	if len(out.Stacks) == 0 {
		return stackInfo{}, fmt.Errorf("stack %s: not found", name)
	}
	info := stackInfo{Outputs: map[string]string{}, Parameters: map[string]string{}}
	for _, o := range out.Stacks[0].Outputs {
		info.Outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	for _, p := range out.Stacks[0].Parameters {
		info.Parameters[aws.ToString(p.ParameterKey)] = aws.ToString(p.ParameterValue)
	}
	return info, nil
}

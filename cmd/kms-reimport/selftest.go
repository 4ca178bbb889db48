package main

// selftest: prove a deployment end to end with a throwaway key: a tagged
// EXTERNAL key and a secret of fresh material, one rotation through the
// deployed state machine (not registered), the key checked in KMS, then the
// key scheduled for deletion and the secret deleted, whatever happened.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
)

// throwawayAPI is the part of KMS selftest uses.
type throwawayAPI interface {
	CreateKey(context.Context, *kms.CreateKeyInput, ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	ScheduleKeyDeletion(context.Context, *kms.ScheduleKeyDeletionInput, ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error)
}

// secretsAPI is the part of Secrets Manager selftest uses.
type secretsAPI interface {
	CreateSecret(context.Context, *secretsmanager.CreateSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
	DeleteSecret(context.Context, *secretsmanager.DeleteSecretInput, ...func(*secretsmanager.Options)) (*secretsmanager.DeleteSecretOutput, error)
}

var selftestClients = struct {
	kms     func(aws.Config) throwawayAPI
	secrets func(aws.Config) secretsAPI
}{
	kms:     func(c aws.Config) throwawayAPI { return kms.NewFromConfig(c) },
	secrets: func(c aws.Config) secretsAPI { return secretsmanager.NewFromConfig(c) },
}

type selftestFlags struct {
	rotate               rotateFlags
	tagKey, tagValue     string
	prefix, wrappingSpec string
}

func parseSelftest(args []string, stderr io.Writer) (selftestFlags, int, bool) {
	fs := newFlags("selftest", "selftest [--stack NAME | --state-machine ARN] [flags]", stderr)
	var f selftestFlags
	fs.StringVar(&f.rotate.stateMachine, "state-machine", os.Getenv("STATE_MACHINE_ARN"), "rotation state machine ARN (default $STATE_MACHINE_ARN, else the stack's output StateMachineArn)")
	fs.StringVar(&f.rotate.stack, "stack", defaultStack(), "CloudFormation stack of the deployment (default: samconfig.toml's stack_name)")
	fs.DurationVar(&f.rotate.poll, "poll", 2*time.Second, "how often to read the execution's history")
	fs.StringVar(&f.tagKey, "tag-key", "kms-reimport:managed", "the deployment's ManagedKeyTagKey")
	fs.StringVar(&f.tagValue, "tag-value", "true", "the deployment's ManagedKeyTagValue")
	fs.StringVar(&f.prefix, "secret-prefix", "kms-reimport/", "the deployment's SecretNamePrefix")
	fs.StringVar(&f.wrappingSpec, "wrapping-key-spec", "", "wrapping key spec of the rotation (local-kms: RSA_2048)")
	code, ok := parse(fs, args)
	return f, code, ok
}

// runSelftest exits 0 only when the rotation renewed the key and both
// throwaways were cleaned up.
func runSelftest(args []string, stdout, stderr io.Writer) (code int) {
	f, usage, ok := parseSelftest(args, stderr)
	if !ok {
		return usage
	}
	ctx := context.Background()
	cfg, err := awsConfig(ctx)
	if err == nil {
		f.rotate.stateMachine, err = stateMachineARN(ctx, cfg, f.rotate, "StateMachineArn")
	}
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest:", err)
		return exitFailure
	}
	keys, secrets := selftestClients.kms(cfg), selftestClients.secrets(cfg)
	k, err := keys.CreateKey(ctx, &kms.CreateKeyInput{Origin: kmstypes.OriginTypeExternal, KeySpec: kmstypes.KeySpecSymmetricDefault,
		Description: aws.String("kms-reimport selftest (throwaway, scheduled for deletion)"),
		Tags:        []kmstypes.Tag{{TagKey: &f.tagKey, TagValue: &f.tagValue}, {TagKey: aws.String("kms-reimport:selftest"), TagValue: aws.String("true")}}})
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: creating the throwaway key:", err)
		return exitFailure
	}
	arn := aws.ToString(k.KeyMetadata.Arn)
	fmt.Fprintln(stdout, "created throwaway key", arn)
	defer func() {
		if !cleanupKey(ctx, keys, arn, stdout, stderr) {
			code = exitFailure
		}
	}()
	name := f.prefix + "selftest-" + keyIDOf(arn)
	if err := createMaterial(ctx, secrets, name); err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: creating the secret:", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "created secret", name, "(32 random bytes)")
	defer func() {
		if !cleanupSecret(ctx, secrets, name, stdout, stderr) {
			code = exitFailure
		}
	}()
	return selftestRotate(ctx, cfg, f, arn, name, stdout, stderr)
}

// selftestRotate rotates the throwaway key once and checks it in KMS.
func selftestRotate(ctx context.Context, cfg aws.Config, f selftestFlags, arn, secret string, stdout, stderr io.Writer) int {
	in := map[string]any{"keyId": arn, "secretId": secret, "validFor": "24h", "register": false}
	if f.wrappingSpec != "" {
		in["wrappingKeySpec"] = f.wrappingSpec
	}
	raw, _ := json.Marshal(in)
	api := clients.sfn(cfg)
	out, err := api.StartExecution(ctx, &sfn.StartExecutionInput{StateMachineArn: &f.rotate.stateMachine, Input: aws.String(string(raw))})
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: starting the execution:", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "started", aws.ToString(out.ExecutionArn))
	if code := follow(ctx, api, aws.ToString(out.ExecutionArn), f.rotate.poll, stdout, stderr); code != exitOK {
		fmt.Fprintln(stdout, "selftest FAILED: the rotation did not renew the key")
		return code
	}
	md, err := selftestClients.kms(cfg).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: DescribeKey:", err)
		return exitFailure
	}
	if md.KeyMetadata.KeyState != kmstypes.KeyStateEnabled || md.KeyMetadata.ValidTo == nil {
		fmt.Fprintf(stdout, "selftest FAILED: KMS says the key is %s with ValidTo %s\n", md.KeyMetadata.KeyState, fmtTime(md.KeyMetadata.ValidTo))
		return exitFailure
	}
	fmt.Fprintf(stdout, "verified in KMS: %s, ValidTo %s\nselftest passed\n", md.KeyMetadata.KeyState, fmtTime(md.KeyMetadata.ValidTo))
	return exitOK
}

func createMaterial(ctx context.Context, api secretsAPI, name string) error {
	m := make([]byte, 32)
	defer clear(m)
	if _, err := rand.Read(m); err != nil {
		return err
	}
	_, err := api.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretBinary: m,
		Description: aws.String("kms-reimport selftest material (throwaway)")})
	return err
}

func cleanupKey(ctx context.Context, api throwawayAPI, arn string, stdout, stderr io.Writer) bool {
	if _, err := api.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: &arn, PendingWindowInDays: aws.Int32(7)}); err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: scheduling the deletion of", arn, "(do it by hand):", err)
		return false
	}
	fmt.Fprintln(stdout, "scheduled the throwaway key for deletion in 7 days")
	return true
}

func cleanupSecret(ctx context.Context, api secretsAPI, name string, stdout, stderr io.Writer) bool {
	if _, err := api.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: &name, ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		fmt.Fprintln(stderr, "kms-reimport selftest: deleting the secret", name, "(do it by hand):", err)
		return false
	}
	fmt.Fprintln(stdout, "deleted the secret")
	return true
}

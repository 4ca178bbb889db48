package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// throwaways is an in-memory KMS and Secrets Manager for selftest.
type throwaways struct {
	tags      []kmstypes.Tag
	scheduled []string
	secrets   map[string][]byte
	deleted   []string
	validTo   *time.Time
}

func (f *throwaways) CreateKey(_ context.Context, in *kms.CreateKeyInput, _ ...func(*kms.Options)) (*kms.CreateKeyOutput, error) {
	f.tags = in.Tags
	return &kms.CreateKeyOutput{KeyMetadata: &kmstypes.KeyMetadata{Arn: aws.String(testKey), Origin: in.Origin}}, nil
}

func (f *throwaways) DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error) {
	return &kms.DescribeKeyOutput{KeyMetadata: &kmstypes.KeyMetadata{Arn: aws.String(testKey), KeyState: kmstypes.KeyStateEnabled, ValidTo: f.validTo}}, nil
}

func (f *throwaways) ScheduleKeyDeletion(_ context.Context, in *kms.ScheduleKeyDeletionInput, _ ...func(*kms.Options)) (*kms.ScheduleKeyDeletionOutput, error) {
	f.scheduled = append(f.scheduled, aws.ToString(in.KeyId))
	return &kms.ScheduleKeyDeletionOutput{}, nil
}

func (f *throwaways) CreateSecret(_ context.Context, in *secretsmanager.CreateSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	f.secrets[aws.ToString(in.Name)] = append([]byte(nil), in.SecretBinary...)
	return &secretsmanager.CreateSecretOutput{}, nil
}

func (f *throwaways) DeleteSecret(_ context.Context, in *secretsmanager.DeleteSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.DeleteSecretOutput, error) {
	f.deleted = append(f.deleted, aws.ToString(in.SecretId))
	return &secretsmanager.DeleteSecretOutput{}, nil
}

// TestSelftest: a tagged EXTERNAL throwaway key and 32 bytes of material
// in a secret under the prefix, one rotation not registered, checked in
// KMS; the key scheduled for deletion and the secret deleted whether the
// rotation renewed the key (exit 0) or not (exit 1).
func TestSelftest(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	renewed, _ := json.Marshal(map[string]any{"outcome": "RENEWED"})
	for _, c := range []struct {
		name     string
		describe sfn.DescribeExecutionOutput
		end      sfntypes.HistoryEventType
		code     int
	}{
		{"renewed", sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusSucceeded, Output: aws.String(string(renewed))}, sfntypes.HistoryEventTypeExecutionSucceeded, exitOK},
		{"failed", sfn.DescribeExecutionOutput{Status: sfntypes.ExecutionStatusFailed, Error: aws.String("AccessDenied")}, sfntypes.HistoryEventTypeExecutionFailed, exitFailure},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := withFakes(t)
			tw := &throwaways{secrets: map[string][]byte{}, validTo: aws.Time(t0.Add(24 * time.Hour))}
			saved := selftestClients
			selftestClients.kms = func(aws.Config) throwawayAPI { return tw }
			selftestClients.secrets = func(aws.Config) secretsAPI { return tw }
			t.Cleanup(func() { selftestClients = saved })
			f.sfn.events, f.sfn.describe = history(t0, c.end), c.describe
			out, errOut, code := cliRun("selftest", "--state-machine", testSM, "--poll", "1ms", "--secret-prefix", "kms-reimport/")
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			name := "kms-reimport/selftest-" + keyIDOf(testKey)
			if len(tw.secrets[name]) != 32 || len(tw.deleted) != 1 || tw.deleted[0] != name || len(tw.scheduled) != 1 || tw.scheduled[0] != testKey {
				t.Fatalf("secrets %v deleted %v scheduled %v", len(tw.secrets[name]), tw.deleted, tw.scheduled)
			}
			if len(tw.tags) == 0 || aws.ToString(tw.tags[0].TagKey) != "kms-reimport:managed" {
				t.Errorf("throwaway key not tagged as managed: %v", tw.tags)
			}
			var in map[string]any
			json.Unmarshal([]byte(aws.ToString(f.sfn.started[0].Input)), &in)
			if in["register"] != false || in["keyId"] != testKey || in["secretId"] != name {
				t.Errorf("execution input %v", in)
			}
			if c.code == exitOK && !strings.Contains(out, "selftest passed") {
				t.Errorf("output:\n%s", out)
			}
		})
	}
}

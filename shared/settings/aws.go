package settings

// The AWS configuration every function's clients are built from: the SDK's
// adaptive retry mode (client-side rate limiting) and a hook that counts
// the ThrottlingException answers KMS gives (metric KmsThrottled).
//
// Pacing a fleet run under the KMS request quota takes three layers
// (docs/scale.md, "Pacing under the KMS request quota"):
//
//  1. The fleet's Distributed Map runs at most FleetConcurrency rotations at
//     once, derived from KMS_REQUEST_RATE (pacing.go): the bound across
//     every Lambda instance, which no client-side limiter can give.
//  2. Each client retries with the SDK's adaptive mode: after a throttle it
//     lowers its own attempt rate (a token bucket, cubic increase and
//     decrease) and sleeps before further attempts instead of failing them,
//     so when another workload eats into the quota the stages slow down.
//  3. A ThrottlingException that outlasts the SDK's attempts becomes
//     AWSTransient (shared/flow), which every Task retries with backoff.
//
// No rate limiter of our own: the quota is shared by the whole account and
// Region, so a per-process limiter could not enforce it across concurrent
// Lambda instances anyway; the Map bound does that, and adaptive mode is
// the SDK's tested answer to the throttles that remain.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// MaxAttempts is how many attempts the SDK makes per request (the SDK's
// default); throttled attempts back off from 1 s, doubling, up to
// MaxBackoff, within the functions' 30 s timeout. What is still throttled
// after them is AWSTransient and retried by the state machine.
const (
	MaxAttempts = 3
	MaxBackoff  = 20 * time.Second
)

// ThrottledMetric is the metric counting throttled KMS answers.
const ThrottledMetric = "KmsThrottled"

// NewRetryer is the retryer of every client: the SDK's adaptive mode
// (standard retries plus client-side rate limiting once throttled). Each
// client gets its own, so each Lambda instance adapts its own rate per
// service and Region.
func NewRetryer() aws.Retryer {
	return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
		o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
			so.MaxAttempts = MaxAttempts
			so.MaxBackoff = MaxBackoff
		})
	})
}

// AWS loads the SDK configuration the standard way: region, credentials
// and endpoints (AWS_ENDPOINT_URL_KMS and friends) come from the
// environment, so the same binary talks to AWS or to local emulators.
// Every client built from it retries in adaptive mode and counts KMS
// throttles (KmsThrottled).
func AWS(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryer(NewRetryer))
	if err != nil {
		return cfg, fmt.Errorf("loading AWS configuration: %w", err)
	}
	cfg.APIOptions = append(cfg.APIOptions, AddThrottleCounter)
	return cfg, nil
}

// AddThrottleCounter installs, after the retry middleware, a step that sees
// every attempt's answer and emits KmsThrottled = 1 for each KMS answer
// with the error code ThrottlingException (per attempt, not per call: a
// call retried twice after two throttles counts 2). Emitting at once, not
// at the end of the invocation, keeps the count when the function then
// times out or fails; CloudWatch adds the values up (Sum).
func AddThrottleCounter(stack *middleware.Stack) error {
	return stack.Finalize.Add(throttleCounter{}, middleware.After)
}

type throttleCounter struct{}

func (throttleCounter) ID() string { return "KmsReimportThrottleCounter" }

func (throttleCounter) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleFinalize(ctx, in)
	if err != nil && awsmiddleware.GetServiceID(ctx) == "KMS" && IsThrottle(err) {
		telemetry.Emit(telemetry.Service, telemetry.Metric{Name: "KmsThrottled", Value: 1, Unit: telemetry.Count})
		slog.Default().Warn("KMS request throttled", "operation", awsmiddleware.GetOperationName(ctx), "metric", ThrottledMetric)
	}
	return out, md, err
}

// IsThrottle says whether err is KMS's ThrottlingException.
func IsThrottle(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ThrottlingException"
}

// Package lambdarun adapts a stage to the Lambda runtime: it decodes the
// state, attaches a logger with the execution id and key, runs the stage
// and turns its named error into the errorType Step Functions matches on.
package lambdarun

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Stage is one step of the rotation.
type Stage func(ctx context.Context, s flow.State) (flow.State, error)

// Handler returns the Lambda handler for stage, logging as fn.
func Handler(fn string, stage Stage) func(context.Context, json.RawMessage) (flow.State, error) {
	base := telemetry.NewLogger(fn)
	return func(ctx context.Context, raw json.RawMessage) (flow.State, error) {
		var s flow.State
		if err := json.Unmarshal(raw, &s); err != nil {
			// Describe, don't echo: the event may hold anything.
			err = flow.Errorf(flow.InvalidInput, "event for %s is not a rotation state object: %s", fn, describeJSONError(err))
			base.Error("stage failed", "error", flow.NameOf(err), "cause", err.Error())
			return s, toLambda(err)
		}
		log := base.With("executionId", s.Execution.ID)
		if s.Key != nil {
			log = log.With("keyArn", s.Key.ARN)
		} else if s.Request != nil {
			log = log.With("keyId", s.Request.KeyID)
		}
		ctx = telemetry.WithLogger(ctx, log)
		out, err := stage(ctx, s)
		if err != nil {
			log.Error("stage failed", "error", flow.NameOf(err), "cause", flow.Sanitize(err.Error()))
			return out, toLambda(err)
		}
		log.Info("stage done")
		return out, nil
	}
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		return "field " + te.Field + " has the wrong type (" + te.Value + ")"
	}
	return "malformed JSON"
}

func asType(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

// Named makes the runtime report errorType = the stable error name of err
// (for handlers that don't take a rotation state).
func Named(err error) error {
	if err == nil {
		return nil
	}
	return toLambda(err)
}

// toLambda makes the runtime report errorType = the stable error name.
func toLambda(err error) error {
	return messages.InvokeResponse_Error{Type: flow.NameOf(err), Message: flow.Sanitize(err.Error())}
}

// Start runs stage as this process's Lambda handler.
func Start(fn string, stage Stage) {
	slog.SetDefault(telemetry.NewLogger(fn))
	lambda.Start(Handler(fn, stage))
}

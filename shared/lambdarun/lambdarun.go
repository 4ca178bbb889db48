// Package lambdarun adapts a stage to the Lambda runtime: it decodes the
// event, attaches a logger with the execution id and key, runs the stage
// and turns its named error into the errorType Step Functions matches on.
package lambdarun

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Fielder is an event that names itself in logs (the rotation state gives
// its execution id and key).
type Fielder interface {
	LogFields() []any
}

// Handler returns the Lambda handler for stage, logging as fn.
func Handler[In, Out any](fn string, stage func(context.Context, In) (Out, error)) func(context.Context, json.RawMessage) (Out, error) {
	base := telemetry.NewLogger(fn)
	return func(ctx context.Context, raw json.RawMessage) (Out, error) {
		var in In
		var zero Out
		if err := json.Unmarshal(raw, &in); err != nil {
			// Describe, don't echo: the event may hold anything.
			err = flow.Errorf(flow.InvalidInput, "event for %s is not a %T: %s", fn, in, describeJSONError(err))
			base.Error("stage failed", "error", flow.NameOf(err), "cause", err.Error())
			return zero, toLambda(err)
		}
		log := base
		if f, ok := any(in).(Fielder); ok {
			log = log.With(f.LogFields()...)
		}
		ctx = telemetry.WithLogger(ctx, log)
		out, err := stage(ctx, in)
		if err != nil {
			log.Error("stage failed", "error", flow.NameOf(err), "cause", flow.Sanitize(err.Error()), "facts", flow.FactsOf(err))
			return out, toLambda(err)
		}
		log.Info("stage done")
		return out, nil
	}
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + te.Field + " has the wrong type (" + te.Value + ")"
	}
	return "malformed JSON"
}

// toLambda makes the runtime report errorType = the stable error name and
// errorMessage = the sanitized message, followed by the error's facts as
// JSON (flow.EncodeCause): Step Functions passes both on as the Catch's
// Error and Cause, and record-failure decodes the facts.
func toLambda(err error) error {
	return messages.InvokeResponse_Error{Type: flow.NameOf(err), Message: flow.EncodeCause(flow.Sanitize(err.Error()), flow.FactsOf(err))}
}

// Start runs stage as this process's Lambda handler.
func Start[In, Out any](fn string, stage func(context.Context, In) (Out, error)) {
	slog.SetDefault(telemetry.NewLogger(fn))
	lambda.Start(Handler(fn, stage))
}

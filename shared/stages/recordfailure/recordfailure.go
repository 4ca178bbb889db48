// Package recordfailure is the stage every Catch leads to: it writes the failed
// import record (error name, sanitized cause, stage, execution), abandons
// an unused token, and passes the error on to the Fail state.
package recordfailure

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Stage records a failure.
type Stage struct {
	// KMS resolves the key an ended execution named (an alias, a key id)
	// to its ARN, under which its records are kept.
	KMS      kmsaccess.Regional
	Audit    *records.Imports
	Tokens   *records.Tokens
	Registry *registry.Store
	Leases   *records.Leases
	// Notify, when set, publishes the failure to Topic.
	Notify Publisher
	Topic  string
	Now    func() time.Time
}

// UnknownKey is recorded as the key when the input named none usable.
const UnknownKey = "(unknown key)"

// Event is what the stage runs on: the state a Catch passes, or
// EventBridge's "Step Functions Execution Status Change" for a rotation
// that ended FAILED, TIMED_OUT or ABORTED (template.yaml's
// FailedRotationRule), which also covers an execution whose own
// record-failure step failed, timed out or was stopped.
type Event struct {
	flow.State
	DetailType string        `json:"detail-type"`
	Detail     *StatusChange `json:"detail"`
}

// StatusChange is the event's detail (EventBridge events reference, Step
// Functions).
type StatusChange struct {
	ExecutionArn string `json:"executionArn"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	StartDate    int64  `json:"startDate"`
	Input        string `json:"input"`
	Error        string `json:"error"`
	Cause        string `json:"cause"`
}

// StatusChangeType is the event's detail-type.
const StatusChangeType = "Step Functions Execution Status Change"

// Run is the stage's handler.
func (st *Stage) Run(ctx context.Context, ev Event) (flow.State, error) {
	if ev.DetailType == "" {
		return st.record(ctx, ev.State, false)
	}
	s, err := st.fromStatusChange(ctx, ev)
	if err != nil {
		return s, err
	}
	// Recorded already (by the execution's own Catch): settle what it may
	// have left, without a second record or notification.
	done, err := st.recorded(ctx, s)
	if err != nil {
		return s, err
	}
	return st.record(ctx, s, done)
}

// fromStatusChange turns an ended execution into the state a Catch would
// have passed: its execution, input, key and error.
func (st *Stage) fromStatusChange(ctx context.Context, ev Event) (flow.State, error) {
	d := ev.Detail
	switch {
	case ev.DetailType != StatusChangeType:
		return flow.State{}, flow.Errorf(flow.InvalidInput, "field \"detail-type\" is %q; want %q", clip(ev.DetailType), StatusChangeType)
	case d == nil || d.ExecutionArn == "":
		return flow.State{}, flow.Errorf(flow.InvalidInput, "field \"detail.executionArn\" is missing")
	case d.Status != "FAILED" && d.Status != "TIMED_OUT" && d.Status != "ABORTED":
		return flow.State{}, flow.Errorf(flow.InvalidInput, "field \"detail.status\" is %q; this stage records FAILED, TIMED_OUT and ABORTED executions", clip(d.Status))
	}
	s := flow.State{
		Execution:   flow.Execution{ID: d.ExecutionArn, Name: d.Name, StartTime: time.UnixMilli(d.StartDate).UTC().Format("2006-01-02T15:04:05.000Z")},
		Input:       json.RawMessage(d.Input),
		FailedStage: "execution " + d.Status,
		Error:       &flow.StateError{Error: d.Error, Cause: d.Cause},
	}
	if !json.Valid(s.Input) {
		s.Input = nil // inputDetails.included false: the input is not in the event
	}
	if s.Error.Error == "" {
		s.Error.Error = "States." + map[string]string{"TIMED_OUT": "Timeout", "ABORTED": "Aborted", "FAILED": "Failed"}[d.Status]
		s.Error.Cause = "the execution ended " + d.Status
	}
	if id := keyOf(s); isKeyARN(id) {
		s.Key = &flow.Key{ARN: id}
	} else if id != UnknownKey && st.KMS != nil {
		md, err := kmsaccess.Describe(ctx, st.KMS.In(kmsaccess.RegionOf(id)), id)
		if err == nil {
			s.Key = &flow.Key{ARN: *md.Arn}
		} else if flow.NameOf(err) == flow.AWSTransient {
			return s, err // retried: the key's records and lease need its ARN
		}
	}
	return s, nil
}

// recorded says whether the execution has an import record already.
func (st *Stage) recorded(ctx context.Context, s flow.State) (bool, error) {
	recs, err := st.Audit.List(ctx, keyOf(s))
	if err != nil {
		return false, flow.FromAWS(err, flow.Internal, "reading the import records of %s", keyOf(s))
	}
	for _, r := range recs {
		if r.ExecutionID == s.Execution.ID {
			return true, nil
		}
	}
	return false, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// record writes the failure (unless already recorded), settles the
// execution's tokens, releases its lease and notifies.
func (st *Stage) record(ctx context.Context, s flow.State, already bool) (flow.State, error) {
	if s.Error == nil {
		return s, flow.Errorf(flow.InvalidInput, "field \"error\" is missing; this stage runs from a Catch with ResultPath $.error")
	}
	name := s.Error.Error
	cause := flow.Sanitize(causeMessage(s.Error.Cause))
	s.Error.Cause = cause
	now := time.Now
	if st.Now != nil {
		now = st.Now
	}
	rec := records.Import{
		SK:          records.ImportSK(s.Execution.StartTime, s.Execution.ID),
		KeyARN:      keyOf(s),
		RecordedAt:  now().UTC(),
		Outcome:     records.ImportFailed,
		ExecutionID: s.Execution.ID,
		Stage:       s.FailedStage,
		ErrorName:   name,
		Cause:       cause,
	}
	if r := s.Request; r != nil {
		rec.KeyID, rec.SecretID, rec.ExpirationModel, rec.ValidTo = r.KeyID, r.SecretID, r.ExpirationModel, r.ValidTo
		v, w := s.Resolved()
		rec.SecretVersionID, rec.WrappingAlgorithm, rec.WrappingKeySpec, rec.WrappingDefaulted = v, w.Algorithm, w.KeySpec, w.Defaulted
	}
	if s.Request == nil {
		// Failed in the first stage: record what the raw input named, if
		// it named it plainly.
		var in struct {
			KeyID    any `json:"keyId"`
			SecretID any `json:"secretId"`
		}
		if json.Unmarshal(s.Input, &in) == nil {
			rec.KeyID, rec.SecretID = short(in.KeyID), short(in.SecretID)
		}
	}
	if k := s.Key; k != nil {
		rec.KeyStateBefore, rec.ValidToBefore = k.StateBefore, k.ValidToBefore
	}
	if t := s.LastToken(); t != nil && s.Key != nil {
		rec.TokenID, rec.TokenFetches = t.ID, t.Fetches
		// An issued or wrapped token will never be used now: drop it.
		err := st.Tokens.MarkFailed(ctx, s.Key.ARN, t.ID, "execution failed at "+s.FailedStage+": "+name)
		if err != nil && !errors.Is(err, records.ErrConflict) {
			return s, flow.FromAWS(err, flow.Internal, "abandoning token record %s", t.ID)
		}
	}
	if s.Key != nil {
		// Every token of this execution still open is abandoned: none will
		// be used now (a retried stage may have left more than one).
		if _, err := st.Tokens.AbandonExecution(ctx, s.Key.ARN, s.Execution.ID, "execution failed at "+s.FailedStage+": "+name); err != nil {
			return s, flow.FromAWS(err, flow.Internal, "abandoning the token records of %s", s.Key.ARN)
		}
	}
	if s.Import != nil {
		rec.ImportedAt = &s.Import.ImportedAt
	}
	if !already {
		err := st.Audit.Put(ctx, rec)
		if errors.Is(err, records.ErrRecorded) {
			already = true // a retried attempt wrote it
		} else if err != nil {
			return s, flow.FromAWS(err, flow.Internal, "recording the failure")
		}
	}
	if s.Key != nil {
		if err := st.Leases.Release(ctx, s.Key.ARN, s.Execution.ID); err != nil {
			return s, flow.FromAWS(err, flow.Internal, "releasing the lease")
		}
	}
	if already {
		telemetry.Logger(ctx).Info("failure recorded already; tokens and lease settled", "keyArn", rec.KeyARN, "auditId", rec.SK)
		return s, nil
	}
	if arn := registryKey(s); arn != "" && st.Registry != nil {
		// The registry decides from the error and cause whether the key is
		// blocked (registry.BlockingFailure); a blocked key is still
		// planned on every run.
		f := registry.Failure{Execution: s.Execution.ID, At: rec.RecordedAt, Error: name, Cause: cause, Stage: s.FailedStage}
		if err := st.Registry.RecordFailure(ctx, arn, f); err != nil {
			return s, flow.FromAWS(err, flow.Internal, "recording the failure in the registry")
		}
	}
	// The alarm's metric comes before the notification: a topic that can't
	// be reached must not silence the alarm or keep the key locked.
	telemetry.Emit(telemetry.Service, telemetry.Metric{Name: "RotationFailures", Value: 1, Unit: telemetry.Count})
	if st.Notify != nil && st.Topic != "" {
		subject, body := message(rec)
		if _, err := st.Notify.Publish(ctx, &sns.PublishInput{TopicArn: &st.Topic, Subject: &subject, Message: &body}); err != nil {
			telemetry.Logger(ctx).Error("failure notification not sent", "topic", st.Topic, "error", flow.Sanitize(err.Error()))
			telemetry.Emit(telemetry.Service, telemetry.Metric{Name: "NotificationFailures", Value: 1, Unit: telemetry.Count})
		}
	}
	telemetry.Logger(ctx).Error("rotation failed", "keyArn", rec.KeyARN, "stage", s.FailedStage, "error", name, "cause", cause, "auditId", rec.SK)
	return s, nil
}

// causeMessage extracts errorMessage from a Lambda error Cause.
func causeMessage(cause string) string {
	var c struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal([]byte(cause), &c) == nil && c.ErrorMessage != "" {
		return c.ErrorMessage
	}
	return cause
}

// registryKey is the key ARN the registry knows the key by: the resolved
// ARN, or the input's key id when it is an ARN (a scheduled run of a key
// that no longer exists never resolves it).
func registryKey(s flow.State) string {
	if s.Key != nil {
		return s.Key.ARN
	}
	// A failure in the first stage leaves only the raw input.
	if id := keyOf(s); isKeyARN(id) {
		return id
	}
	return ""
}

func keyOf(s flow.State) string {
	if s.Key != nil && s.Key.ARN != "" {
		return s.Key.ARN
	}
	if s.Request != nil && s.Request.KeyID != "" {
		return s.Request.KeyID
	}
	var in struct {
		KeyID any `json:"keyId"`
	}
	if json.Unmarshal(s.Input, &in) == nil {
		if id, ok := in.KeyID.(string); ok && id != "" && len(id) <= 300 {
			return id
		}
	}
	return UnknownKey
}

// short returns v if it is a string of a sane length for an identifier.
func short(v any) string {
	if s, ok := v.(string); ok && len(s) <= 2048 {
		return flow.Sanitize(s)
	}
	return ""
}

// isKeyARN says whether id is a KMS key ARN (not an alias or a bare id).
func isKeyARN(id string) bool {
	return strings.HasPrefix(id, "arn:") && strings.Contains(id, ":key/")
}

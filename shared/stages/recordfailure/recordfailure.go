// Package recordfailure is the stage every Catch leads to: it reads the
// failure's facts from the cause (flow.ParseCause), gives the failure to
// the registry (which decides whether the key is blocked), writes the
// failed import record (error name, sanitized message, stage, execution),
// abandons unused tokens, and passes the error on to the Fail state.
package recordfailure

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Stage records a failure. Its stores are the small interfaces below;
// functions/record-failure wires the real ones, the unit tests in-memory
// fakes.
type Stage struct {
	// KMS resolves the key an ended execution named (an alias, a key id)
	// to its ARN, under which its records are kept, and reads the state
	// of a key KMS refused (flow.CheckKMSRefused).
	KMS      Keys
	Audit    Audit
	Tokens   Tokens
	Registry Registry
	Leases   Leases
	// Failures keeps the execution's failure record, the outbox of its
	// effects (records.Failures).
	Failures Failures
	// FenceHold is how long the lease of an execution that was stopped
	// or timed out stays fenced before it is free (0: DefaultFenceHold).
	FenceHold time.Duration
	// NotifyHold is how long a claim to send the notification holds
	// before another invocation may send it (0: DefaultNotifyHold).
	NotifyHold time.Duration
	// Notify, when set, publishes the failure to Topic.
	Notify Publisher
	Topic  string
	Now    func() time.Time
}

// Keys describes a key in its Region (kmsaccess.Describing); a missing
// key is KeyNotFound, a throttled read AWSTransient (kmsaccess.Describe).
type Keys interface {
	Describe(ctx context.Context, region, keyID string) (*types.KeyMetadata, error)
}

// Audit holds the import records (records.Imports): Put writes one once
// (records.ErrRecorded when the execution has one already).
type Audit interface {
	Put(ctx context.Context, r records.Import) error
	List(ctx context.Context, keyARN string) ([]records.Import, error)
}

// Tokens settles the execution's token records (records.Tokens):
// MarkFailed is records.ErrConflict for a record already final.
type Tokens interface {
	MarkFailed(ctx context.Context, keyARN, sk, reason string) error
	AbandonExecution(ctx context.Context, keyARN, executionID, reason string) (int, error)
}

// Leases releases the key's lease if the execution still holds it, or
// fences it out (records.Leases).
type Leases interface {
	Release(ctx context.Context, arn, owner string) error
	FenceOut(ctx context.Context, arn, owner string, until time.Time) error
}

// DefaultFenceHold is how long the lease of a stopped or timed-out
// execution stays held after its end: longer than any invocation of a
// stage can still run (the functions' Timeout, 30 s in template.yaml),
// with margin.
const DefaultFenceHold = 2 * time.Minute

// Failures is the failure record of an execution (records.Failures):
// Open writes it once and returns it as stored, with the steps done;
// MarkDone and ClaimNotify are records.ErrStepDone for a step done or
// claimed already.
type Failures interface {
	Open(ctx context.Context, f records.Failure) (records.Failure, error)
	MarkDone(ctx context.Context, executionID, step string, at time.Time) error
	ClaimNotify(ctx context.Context, executionID string, now time.Time, hold time.Duration) error
	ReleaseNotify(ctx context.Context, executionID string) error
}

// DefaultNotifyHold outlasts one invocation of the function (its Timeout,
// 30 s in template.yaml, with margin).
const DefaultNotifyHold = 2 * time.Minute

// Registry is told of the failure and decides the key's status
// (registry.Store, registry.FailureEffect).
type Registry interface {
	RecordFailure(ctx context.Context, arn string, f registry.Failure) error
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
// Both paths (the Catch's state, EventBridge's status change) reach the
// same failure record, keyed by the execution: whichever comes first
// records the failure; the other completes what is left undone.
func (st *Stage) Run(ctx context.Context, ev Event) (flow.State, error) {
	if ev.DetailType == "" {
		return st.record(ctx, ev.State)
	}
	s, err := st.fromStatusChange(ctx, ev)
	if err != nil {
		return s, err
	}
	return st.record(ctx, s)
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
	return s, nil
}

// resolveKey names the key by its ARN when the state names it by an
// alias or a bare key id (a failure before the fetch stage resolved it,
// or an ended execution's input): the Catch path and the EventBridge path
// then record and notify under the same key. A refused input is not
// resolved: it touches no key.
func (st *Stage) resolveKey(ctx context.Context, s *flow.State) error {
	if s.Key != nil && s.Key.ARN != "" {
		return nil
	}
	if id := keyOf(*s); isKeyARN(id) {
		s.Key = &flow.Key{ARN: id}
	} else if id != UnknownKey && st.KMS != nil && !refused(*s) {
		md, err := st.KMS.Describe(ctx, kmsaccess.RegionOf(id), id)
		if err == nil {
			s.Key = &flow.Key{ARN: *md.Arn}
		} else if flow.NameOf(err) == flow.AWSTransient {
			return err // retried: the key's records and lease need its ARN
		}
	}
	return nil
}

// refused says whether the execution was refused for its input: nothing
// was done to the key, so the failure is the caller's, not the key's.
func refused(s flow.State) bool {
	return s.Error != nil && s.Error.Error == flow.InvalidInput
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (st *Stage) now() time.Time {
	if st.Now != nil {
		return st.Now()
	}
	return time.Now()
}

// record records the failure of s once, whichever path and attempt comes
// first: it opens the execution's failure record (the first writer's
// content stands), then does each step not yet done on it, marking it
// done: the registry, the key's import record, token and lease clean-up
// (idempotent, done every time), the metric, the notification. A refused
// input does none of the key's steps. The cause keeps its facts
// (flow.EncodeCause): the execution's Cause, which RotationFailed takes
// from the state this returns, still carries them.
func (st *Stage) record(ctx context.Context, s flow.State) (flow.State, error) {
	if s.Error == nil {
		return s, flow.Errorf(flow.InvalidInput, "field \"error\" is missing; this stage runs from a Catch with ResultPath $.error")
	}
	if err := st.resolveKey(ctx, &s); err != nil {
		return s, err
	}
	msg, facts := flow.ParseCause(causeMessage(s.Error.Cause))
	msg = flow.Sanitize(msg)
	facts = st.describeRefused(ctx, facts)
	s.Error.Cause = flow.EncodeCause(msg, facts)
	rec := importRecord(s, msg, st.now().UTC())
	fr, err := st.open(ctx, s, rec)
	if err != nil {
		return s, err
	}
	// The stored record's content stands for every path and attempt.
	rec.ErrorName, rec.Cause, rec.Stage = fr.ErrorName, fr.Cause, fr.Stage
	log := telemetry.Logger(ctx).With("keyArn", rec.KeyARN, "executionId", s.Execution.ID)
	if fr.Outcome == records.FailureRefused {
		log.Warn("execution refused for its input; the key is not touched", "error", rec.ErrorName, "cause", rec.Cause)
		return s, nil
	}
	if err := st.settleTokens(ctx, s); err != nil {
		return s, err
	}
	if err := st.keySteps(ctx, s, fr, rec, facts); err != nil {
		return s, err
	}
	if err := st.freeLease(ctx, s); err != nil {
		return s, err
	}
	if err := st.alert(ctx, fr, rec, facts); err != nil {
		return s, err
	}
	log.Info("failure recorded", "stage", rec.Stage, "error", rec.ErrorName, "auditId", rec.SK)
	return s, nil
}

// open opens the execution's failure record.
func (st *Stage) open(ctx context.Context, s flow.State, rec records.Import) (records.Failure, error) {
	f := records.Failure{ExecutionID: s.Execution.ID, KeyARN: rec.KeyARN, Outcome: records.FailureFailed,
		Stage: rec.Stage, ErrorName: rec.ErrorName, Cause: rec.Cause, RecordedAt: rec.RecordedAt}
	if refused(s) {
		f.Outcome = records.FailureRefused
	}
	fr, err := st.Failures.Open(ctx, f)
	if err != nil {
		return fr, flow.FromAWS(err, flow.Internal, "opening the failure record of %s", s.Execution.ID)
	}
	return fr, nil
}

// keySteps tells the registry, then writes the key's import record (a
// failed record replaces a success record of the same execution), each
// unless the failure record says it is done, marking each done after.
// Both are idempotent: a crash between a step and its mark repeats the
// same write.
func (st *Stage) keySteps(ctx context.Context, s flow.State, fr records.Failure, rec records.Import, facts *flow.Facts) error {
	if !fr.Done(records.StepRegistry) {
		if err := st.tellRegistry(ctx, s, rec, facts); err != nil {
			return err
		}
		if err := st.markDone(ctx, s, records.StepRegistry); err != nil {
			return err
		}
	}
	if !fr.Done(records.StepAudit) {
		if err := st.Audit.Put(ctx, rec); err != nil && !errors.Is(err, records.ErrRecorded) {
			return flow.FromAWS(err, flow.Internal, "recording the failure")
		}
		if err := st.markDone(ctx, s, records.StepAudit); err != nil {
			return err
		}
	}
	return nil
}

func (st *Stage) markDone(ctx context.Context, s flow.State, step string) error {
	err := st.Failures.MarkDone(ctx, s.Execution.ID, step, st.now().UTC())
	if err != nil && !errors.Is(err, records.ErrStepDone) {
		return flow.FromAWS(err, flow.Internal, "marking %s done on the failure record", step)
	}
	return nil
}

// freeLease gives the key's lease back. An execution that was stopped or
// timed out may have a stage still running (Step Functions does not stop
// a Lambda invocation in flight): its lease is fenced out instead, and
// freed only once that invocation can no longer be running
// (records.Leases.FenceOut; docs/aws-behaviour.md).
func (st *Stage) freeLease(ctx context.Context, s flow.State) error {
	if s.Key == nil {
		return nil
	}
	var err error
	if endedInFlight(s) {
		hold := st.FenceHold
		if hold <= 0 {
			hold = DefaultFenceHold
		}
		err = st.Leases.FenceOut(ctx, s.Key.ARN, s.Execution.ID, st.now().Add(hold))
	} else {
		err = st.Leases.Release(ctx, s.Key.ARN, s.Execution.ID)
	}
	if err != nil {
		return flow.FromAWS(err, flow.Internal, "releasing the lease")
	}
	return nil
}

// endedInFlight says whether the execution ended without its Catch: it
// was stopped or timed out, maybe with a stage running.
func endedInFlight(s flow.State) bool {
	return s.FailedStage == "execution ABORTED" || s.FailedStage == "execution TIMED_OUT"
}

// tellRegistry gives the failure to the registry, which decides from the
// error name and the facts (registry.FailureEffect) whether the key is
// blocked; a blocked key is still planned on every run. A key not
// registered (or named by no ARN) is left alone.
func (st *Stage) tellRegistry(ctx context.Context, s flow.State, rec records.Import, facts *flow.Facts) error {
	arn := registryKey(s)
	if arn == "" || st.Registry == nil {
		return nil
	}
	f := registry.Failure{Execution: s.Execution.ID, At: rec.RecordedAt, Error: rec.ErrorName, Cause: rec.Cause, Stage: s.FailedStage, Facts: facts}
	if err := st.Registry.RecordFailure(ctx, arn, f); err != nil {
		return flow.FromAWS(err, flow.Internal, "recording the failure in the registry")
	}
	return nil
}

// describeRefused completes the facts of a refusal by KMS (an import call
// answered KMSInvalidStateException or UnsupportedOperationException)
// with what DescribeKey shows now: the key state the registry decides by.
// The refusing stage names the exception by its type; this stage reads
// the state. When DescribeKey can't tell, the state stays unknown (the
// registry then keeps the key's status).
func (st *Stage) describeRefused(ctx context.Context, f *flow.Facts) *flow.Facts {
	if f == nil || f.Check != flow.CheckKMSRefused || f.KeyState != "" || f.KeyARN == "" || st.KMS == nil {
		return f
	}
	md, err := st.KMS.Describe(ctx, f.Region, f.KeyARN)
	if err != nil {
		telemetry.Logger(ctx).Warn("the state of the key KMS refused is not known", "keyArn", f.KeyARN, "region", f.Region,
			"error", flow.NameOf(err), "cause", flow.Sanitize(err.Error()))
		return f
	}
	g := *f
	g.KeyState, g.Origin, g.KeySpec = string(md.KeyState), string(md.Origin), string(md.KeySpec)
	g.CustomKeyStoreID = aws.ToString(md.CustomKeyStoreId)
	return &g
}

// importRecord is the failed import record of s, with its sanitized cause.
func importRecord(s flow.State, cause string, at time.Time) records.Import {
	rec := records.Import{
		SK:          records.ImportSK(s.Execution.StartTime, s.Execution.ID),
		KeyARN:      keyOf(s),
		RecordedAt:  at,
		Outcome:     records.ImportFailed,
		ExecutionID: s.Execution.ID,
		Stage:       s.FailedStage,
		ErrorName:   s.Error.Error,
		Cause:       cause,
	}
	if r := s.Request; r != nil {
		rec.KeyID, rec.SecretID, rec.ExpirationModel, rec.ValidTo = r.KeyID, r.SecretID, string(r.ExpirationModel), r.ValidTo
		v, w := s.Resolved()
		rec.SecretVersionID, rec.WrappingAlgorithm, rec.WrappingKeySpec, rec.WrappingDefaulted = v, w.Algorithm, w.KeySpec, w.Defaulted
	} else {
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
	}
	if s.Import != nil {
		rec.ImportedAt = &s.Import.ImportedAt
	}
	return rec
}

// settleTokens abandons the execution's token records: none will be used
// now.
func (st *Stage) settleTokens(ctx context.Context, s flow.State) error {
	if s.Key == nil {
		return nil
	}
	reason := "execution failed at " + s.FailedStage + ": " + s.Error.Error
	if t := s.LastToken(); t != nil {
		// An issued or wrapped token will never be used now: drop it.
		err := st.Tokens.MarkFailed(ctx, s.Key.ARN, t.ID, reason)
		if err != nil && !errors.Is(err, records.ErrConflict) {
			return flow.FromAWS(err, flow.Internal, "abandoning token record %s", t.ID)
		}
	}
	// Every token of this execution still open is abandoned (a retried
	// stage may have left more than one).
	if _, err := st.Tokens.AbandonExecution(ctx, s.Key.ARN, s.Execution.ID, reason); err != nil {
		return flow.FromAWS(err, flow.Internal, "abandoning the token records of %s", s.Key.ARN)
	}
	return nil
}

// alert counts the failure (RotationFailures, the alarm's metric), then
// notifies, each once per execution. The count is marked before it is
// emitted; the notification is claimed before it is sent and marked after:
// a send that fails gives the claim back and fails the invocation, so the
// retry (the state machine's, then EventBridge's) sends it. A claim left
// by an invocation that crashed lapses after NotifyHold.
func (st *Stage) alert(ctx context.Context, fr records.Failure, rec records.Import, facts *flow.Facts) error {
	now := st.now().UTC()
	if !fr.Done(records.StepCounted) {
		err := st.Failures.MarkDone(ctx, rec.ExecutionID, records.StepCounted, now)
		switch {
		case err == nil:
			// Counted fleet-wide ([Service], the alarm's) and for the key's
			// account ([Service, Account]) in one line.
			telemetry.EmitSets(telemetry.WithAccount(registry.AccountOf(rec.KeyARN)), telemetry.ServiceAndAccount,
				telemetry.Metric{Name: "RotationFailures", Value: 1, Unit: telemetry.Count})
			telemetry.Logger(ctx).Error("rotation failed", "keyArn", rec.KeyARN, "stage", rec.Stage, "error", rec.ErrorName, "cause", rec.Cause, "facts", facts, "auditId", rec.SK)
		case !errors.Is(err, records.ErrStepDone):
			return flow.FromAWS(err, flow.Internal, "counting the failure")
		}
	}
	if fr.Done(records.StepNotified) || st.Notify == nil || st.Topic == "" {
		return nil
	}
	hold := st.NotifyHold
	if hold <= 0 {
		hold = DefaultNotifyHold
	}
	if err := st.Failures.ClaimNotify(ctx, rec.ExecutionID, now, hold); errors.Is(err, records.ErrStepDone) {
		return nil // sent, or being sent by another invocation
	} else if err != nil {
		return flow.FromAWS(err, flow.Internal, "claiming the notification")
	}
	subject, body := message(rec, facts)
	if _, err := st.Notify.Publish(ctx, &sns.PublishInput{TopicArn: &st.Topic, Subject: &subject, Message: &body}); err != nil {
		telemetry.Logger(ctx).Error("failure notification not sent; retried", "topic", st.Topic, "error", flow.Sanitize(err.Error()))
		telemetry.Emit(telemetry.Service, telemetry.Metric{Name: "NotificationFailures", Value: 1, Unit: telemetry.Count})
		if rerr := st.Failures.ReleaseNotify(ctx, rec.ExecutionID); rerr != nil && !errors.Is(rerr, records.ErrStepDone) {
			return flow.FromAWS(rerr, flow.Internal, "giving back the notification claim")
		}
		return flow.FromAWS(err, flow.AWSTransient, "publishing the failure notification")
	}
	return st.markDone(ctx, flow.State{Execution: flow.Execution{ID: rec.ExecutionID}}, records.StepNotified)
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

package stores_test

import (
	"errors"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

// TestFailureRecordOutbox: the failure record is written once (the first
// writer's content stands), each step is marked once, the notification
// is claimed by one invocation until its claim lapses or is given back;
// a failed import record replaces a success record, never the reverse.
func TestFailureRecordOutbox(t *testing.T) {
	db, table := ddblocal.Table(t)
	s := &records.Failures{DB: db, Table: table}
	exec := "arn:aws:states:eu-west-2:111122223333:execution:sm:x"
	now := time.Now().UTC().Truncate(time.Millisecond)
	first, err := s.Open(ctx, records.Failure{ExecutionID: exec, KeyARN: arn, Outcome: records.FailureFailed, ErrorName: "KeyNotReady", RecordedAt: now})
	if err != nil || first.ErrorName != "KeyNotReady" {
		t.Fatalf("Open: %+v, %v", first, err)
	}
	if err := s.MarkDone(ctx, exec, records.StepRegistry, now); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDone(ctx, exec, records.StepRegistry, now); !errors.Is(err, records.ErrStepDone) {
		t.Fatalf("second mark: %v, want records.ErrStepDone", err)
	}
	again, err := s.Open(ctx, records.Failure{ExecutionID: exec, KeyARN: "alias/x", Outcome: records.FailureFailed, ErrorName: "States.Failed", RecordedAt: now})
	if err != nil || again.ErrorName != "KeyNotReady" || again.KeyARN != arn || !again.Done(records.StepRegistry) || again.Done(records.StepAudit) {
		t.Fatalf("second Open: %+v, %v: want the first record with its registry step done", again, err)
	}
	if err := s.ClaimNotify(ctx, exec, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNotify(ctx, exec, now, time.Minute); !errors.Is(err, records.ErrStepDone) {
		t.Fatalf("claim while claimed: %v, want records.ErrStepDone", err)
	}
	if err := s.ClaimNotify(ctx, exec, now.Add(2*time.Minute), time.Minute); err != nil {
		t.Fatalf("claim after the first lapsed: %v", err)
	}
	if err := s.ReleaseNotify(ctx, exec); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNotify(ctx, exec, now, time.Minute); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if err := s.MarkDone(ctx, exec, records.StepNotified, now); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNotify(ctx, exec, now.Add(time.Hour), time.Minute); !errors.Is(err, records.ErrStepDone) {
		t.Fatalf("claim after sent: %v, want records.ErrStepDone", err)
	}

	imp := &records.Imports{DB: db, Table: table}
	ok := records.Import{SK: records.ImportSK("2026", exec), KeyARN: arn, RecordedAt: now, Outcome: records.ImportSucceeded, ExecutionID: exec}
	if err := imp.Put(ctx, ok); err != nil {
		t.Fatal(err)
	}
	failed := ok
	failed.Outcome, failed.ErrorName = records.ImportFailed, "Internal"
	if err := imp.Put(ctx, failed); err != nil {
		t.Fatalf("failed over succeeded: %v", err)
	}
	if err := imp.Put(ctx, ok); !errors.Is(err, records.ErrRecorded) {
		t.Fatalf("succeeded over failed: %v, want records.ErrRecorded", err)
	}
	if err := imp.Put(ctx, failed); !errors.Is(err, records.ErrRecorded) {
		t.Fatalf("failed twice: %v, want records.ErrRecorded", err)
	}
	recs, err := imp.List(ctx, arn)
	if err != nil || len(recs) != 1 || recs[0].Outcome != records.ImportFailed {
		t.Fatalf("import records %+v, %v: want the one failed record", recs, err)
	}
}

// TestFenceOut: the lease of a stopped execution is fenced: its own stage
// can no longer Fence (no import starts), and no other execution takes
// the lease before the hold has passed; after it, one does.
func TestFenceOut(t *testing.T) {
	db, table := ddblocal.Table(t)
	l := &records.Leases{DB: db, Table: table, Duration: time.Hour}
	now := time.Now()
	if err := l.Acquire(ctx, arn, "stopped", now); err != nil {
		t.Fatal(err)
	}
	if err := l.FenceOut(ctx, arn, "stopped", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var lost *records.LeaseLost
	if err := l.Fence(ctx, arn, "stopped", now); !errors.As(err, &lost) {
		t.Fatalf("Fence by the stopped execution: %v, want records.LeaseLost", err)
	}
	var held *records.LeaseHeld
	if err := l.Acquire(ctx, arn, "stopped", now); !errors.As(err, &held) {
		t.Fatalf("Acquire by the stopped execution's own late stage: %v, want records.LeaseHeld", err)
	}
	if err := l.Acquire(ctx, arn, "next", now.Add(time.Minute)); !errors.As(err, &held) {
		t.Fatalf("Acquire within the hold: %v, want records.LeaseHeld", err)
	}
	if err := l.Acquire(ctx, arn, "next", now.Add(3*time.Minute)); err != nil {
		t.Fatalf("Acquire after the hold: %v", err)
	}
	if err := l.Fence(ctx, arn, "next", now.Add(3*time.Minute)); err != nil {
		t.Fatalf("the next execution's Fence: %v (a taken-over lease is not fenced)", err)
	}
	if err := l.FenceOut(ctx, arn, "stopped", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Fence(ctx, arn, "next", now.Add(3*time.Minute)); err != nil {
		t.Fatalf("a late FenceOut of the old execution fenced the new one: %v", err)
	}
}

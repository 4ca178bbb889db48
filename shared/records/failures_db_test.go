package records

import (
	"errors"
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
	s := &Failures{DB: db, Table: table}
	exec := "arn:aws:states:eu-west-2:111122223333:execution:sm:x"
	now := time.Now().UTC().Truncate(time.Millisecond)
	first, err := s.Open(ctx, Failure{ExecutionID: exec, KeyARN: arn, Outcome: FailureFailed, ErrorName: "KeyNotReady", RecordedAt: now})
	if err != nil || first.ErrorName != "KeyNotReady" {
		t.Fatalf("Open: %+v, %v", first, err)
	}
	if err := s.MarkDone(ctx, exec, StepRegistry, now); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDone(ctx, exec, StepRegistry, now); !errors.Is(err, ErrStepDone) {
		t.Fatalf("second mark: %v, want ErrStepDone", err)
	}
	again, err := s.Open(ctx, Failure{ExecutionID: exec, KeyARN: "alias/x", Outcome: FailureFailed, ErrorName: "States.Failed", RecordedAt: now})
	if err != nil || again.ErrorName != "KeyNotReady" || again.KeyARN != arn || !again.Done(StepRegistry) || again.Done(StepAudit) {
		t.Fatalf("second Open: %+v, %v: want the first record with its registry step done", again, err)
	}
	if err := s.ClaimNotify(ctx, exec, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNotify(ctx, exec, now, time.Minute); !errors.Is(err, ErrStepDone) {
		t.Fatalf("claim while claimed: %v, want ErrStepDone", err)
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
	if err := s.MarkDone(ctx, exec, StepNotified, now); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimNotify(ctx, exec, now.Add(time.Hour), time.Minute); !errors.Is(err, ErrStepDone) {
		t.Fatalf("claim after sent: %v, want ErrStepDone", err)
	}

	imp := &Imports{DB: db, Table: table}
	ok := Import{SK: ImportSK("2026", exec), KeyARN: arn, RecordedAt: now, Outcome: ImportSucceeded, ExecutionID: exec}
	if err := imp.Put(ctx, ok); err != nil {
		t.Fatal(err)
	}
	failed := ok
	failed.Outcome, failed.ErrorName = ImportFailed, "Internal"
	if err := imp.Put(ctx, failed); err != nil {
		t.Fatalf("failed over succeeded: %v", err)
	}
	if err := imp.Put(ctx, ok); !errors.Is(err, ErrRecorded) {
		t.Fatalf("succeeded over failed: %v, want ErrRecorded", err)
	}
	if err := imp.Put(ctx, failed); !errors.Is(err, ErrRecorded) {
		t.Fatalf("failed twice: %v, want ErrRecorded", err)
	}
	recs, err := imp.List(ctx, arn)
	if err != nil || len(recs) != 1 || recs[0].Outcome != ImportFailed {
		t.Fatalf("import records %+v, %v: want the one failed record", recs, err)
	}
}

// TestFenceOut: the lease of a stopped execution is fenced: its own stage
// can no longer Fence (no import starts), and no other execution takes
// the lease before the hold has passed; after it, one does.
func TestFenceOut(t *testing.T) {
	db, table := ddblocal.Table(t)
	l := &Leases{DB: db, Table: table, Duration: time.Hour}
	now := time.Now()
	if err := l.Acquire(ctx, arn, "stopped", now); err != nil {
		t.Fatal(err)
	}
	if err := l.FenceOut(ctx, arn, "stopped", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	var lost *LeaseLost
	if err := l.Fence(ctx, arn, "stopped", now); !errors.As(err, &lost) {
		t.Fatalf("Fence by the stopped execution: %v, want LeaseLost", err)
	}
	var held *LeaseHeld
	if err := l.Acquire(ctx, arn, "stopped", now); !errors.As(err, &held) {
		t.Fatalf("Acquire by the stopped execution's own late stage: %v, want LeaseHeld", err)
	}
	if err := l.Acquire(ctx, arn, "next", now.Add(time.Minute)); !errors.As(err, &held) {
		t.Fatalf("Acquire within the hold: %v, want LeaseHeld", err)
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

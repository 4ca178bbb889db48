package stores_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/tests/support/ddblocal"
)

var ctx = context.Background()

const arn = "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

func token(t *testing.T, s *records.Tokens, exec string, validTo time.Time) records.Token {
	t.Helper()
	now := time.Now().UTC()
	r := records.Token{KeyARN: arn, TokenID: exec + validTo.Format("150405.000"), IssuedAt: now, ParametersValidTo: validTo, ExecutionID: exec,
		Status: records.TokenIssued, PublicKey: []byte("pub"), ImportToken: []byte("token-bytes")}
	r.SK = records.TokenSK(now, r.TokenID)
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTokenStatusTransitions: each transition is a conditional write;
// from the wrong status it is ErrConflict and changes nothing; a final
// status drops the token bytes; a projected read never returns them.
func TestTokenStatusTransitions(t *testing.T) {
	db, table := ddblocal.Table(t)
	s := &records.Tokens{DB: db, Table: table}
	r := token(t, s, "e1", time.Now().Add(24*time.Hour))
	if got, err := s.Get(ctx, arn, r.SK); err != nil || len(got.ImportToken) != 0 || string(got.PublicKey) != "pub" {
		t.Fatalf("projected Get: %+v, %v: want the public key and no token bytes", got, err)
	}
	if err := s.MarkUsed(ctx, arn, r.SK); !errors.Is(err, records.ErrConflict) {
		t.Fatalf("issued -> used: %v, want ErrConflict (only a wrapped token is used)", err)
	}
	if err := s.SetWrapped(ctx, arn, r.SK, []byte("wrapped"), "v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWrapped(ctx, arn, r.SK, []byte("wrapped"), "v1"); err != nil {
		t.Fatalf("a retried wrap: %v", err)
	}
	if got, err := s.GetWithToken(ctx, arn, r.SK); err != nil || string(got.ImportToken) != "token-bytes" || got.Status != records.TokenWrapped {
		t.Fatalf("GetWithToken: %+v, %v", got, err)
	}
	if err := s.MarkUsedWith(ctx, arn, r.SK, "mat-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsedWith(ctx, arn, r.SK, "mat-1"); err != nil {
		t.Fatalf("a retried import finding the token used: %v", err)
	}
	got, err := s.GetWithToken(ctx, arn, r.SK)
	if err != nil || got.Status != records.TokenUsed || got.KeyMaterialID != "mat-1" || len(got.ImportToken) != 0 || len(got.EncryptedKeyMaterial) != 0 {
		t.Fatalf("after use: %+v, %v: want used, the material id, no token or wrapped bytes", got, err)
	}
	for name, f := range map[string]func() error{
		"wrap":    func() error { return s.SetWrapped(ctx, arn, r.SK, []byte("x"), "v1") },
		"expire":  func() error { return s.MarkExpired(ctx, arn, r.SK, "late") },
		"fail":    func() error { return s.MarkFailed(ctx, arn, r.SK, "refused") },
		"missing": func() error { return s.MarkUsed(ctx, arn, "TOKEN#none") },
	} {
		if err := f(); !errors.Is(err, records.ErrConflict) {
			t.Errorf("%s after use: %v, want ErrConflict", name, err)
		}
	}
}

// TestSettleOthers: the records another execution left open and expired
// ones lose their token bytes; the caller's live one stays usable.
func TestSettleOthers(t *testing.T) {
	db, table := ddblocal.Table(t)
	s := &records.Tokens{DB: db, Table: table}
	now := time.Now().UTC()
	mine := token(t, s, "me", now.Add(24*time.Hour))
	old := token(t, s, "me", now.Add(-time.Minute))
	other := token(t, s, "stopped", now.Add(23*time.Hour))
	n, err := s.SettleOthers(ctx, arn, "me", now)
	if err != nil || n != 2 {
		t.Fatalf("SettleOthers: %d, %v; want 2", n, err)
	}
	for sk, want := range map[string]string{mine.SK: records.TokenIssued, old.SK: records.TokenExpired, other.SK: records.TokenExpired} {
		got, err := s.GetWithToken(ctx, arn, sk)
		if err != nil || got.Status != want || (want == records.TokenExpired) != (len(got.ImportToken) == 0) {
			t.Errorf("%s: %+v, %v; want %s", sk, got, err, want)
		}
	}
}

// TestLease: acquire, extend by the same owner, refused to another while
// running, taken over once lapsed; Fence only for the holder of a running
// lease; Release only by the holder.
func TestLease(t *testing.T) {
	db, table := ddblocal.Table(t)
	l := &records.Leases{DB: db, Table: table, Duration: time.Minute}
	t0 := time.Now()
	if err := l.Acquire(ctx, arn, "a", t0); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx, arn, "a", t0.Add(time.Second)); err != nil {
		t.Fatalf("the holder extends: %v", err)
	}
	var held *records.LeaseHeld
	if err := l.Acquire(ctx, arn, "b", t0.Add(2*time.Second)); !errors.As(err, &held) || held.Owner != "a" {
		t.Fatalf("another owner while running: %v, want LeaseHeld by a", err)
	}
	if err := l.Fence(ctx, arn, "a", t0.Add(3*time.Second)); err != nil {
		t.Fatalf("the holder fences: %v", err)
	}
	var lost *records.LeaseLost
	if err := l.Fence(ctx, arn, "b", t0.Add(3*time.Second)); !errors.As(err, &lost) {
		t.Fatalf("Fence by a non-holder: %v, want LeaseLost", err)
	}
	lapsed := t0.Add(3 * time.Minute)
	if err := l.Fence(ctx, arn, "a", lapsed); !errors.As(err, &lost) {
		t.Fatalf("Fence on a lapsed lease: %v, want LeaseLost", err)
	}
	if err := l.Acquire(ctx, arn, "b", lapsed); err != nil {
		t.Fatalf("take-over of a lapsed lease: %v", err)
	}
	if err := l.Fence(ctx, arn, "a", lapsed); !errors.As(err, &lost) {
		t.Fatalf("the old holder after a take-over: %v, want LeaseLost", err)
	}
	if err := l.Release(ctx, arn, "a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx, arn, "c", lapsed); !errors.As(err, &held) {
		t.Fatalf("release by a non-holder freed the lease: %v", err)
	}
	if err := l.Release(ctx, arn, "b"); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx, arn, "c", lapsed); err != nil {
		t.Fatalf("after the holder released: %v", err)
	}
}

// TestImportRecordWrittenOnce: the audit trail is never overwritten.
func TestImportRecordWrittenOnce(t *testing.T) {
	db, table := ddblocal.Table(t)
	s := &records.Imports{DB: db, Table: table}
	r := records.Import{SK: records.ImportSK("2026-01-15T06:00:00.000Z", "exec"), KeyARN: arn, Outcome: records.ImportSucceeded, RecordedAt: time.Now()}
	if err := s.Put(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Verification = "another" // a failed record replaces it (TestFailureRecordOutbox)
	if err := s.Put(ctx, r); !errors.Is(err, records.ErrRecorded) {
		t.Fatalf("second write: %v, want ErrRecorded", err)
	}
	recs, err := s.List(ctx, arn)
	if err != nil || len(recs) != 1 || recs[0].Outcome != records.ImportSucceeded {
		t.Fatalf("records %+v, %v: want the first, unchanged", recs, err)
	}
}

package records

import (
	"context"
	"errors"
	"time"
)

// AbandonExecution settles every token record an execution left issued or
// wrapped for keyARN: a stage that crashed after recording a token and was
// run again fetched another, and the first will never be used. Their token
// bytes are removed; the records stay, marked expired with the reason.
func (s *Tokens) AbandonExecution(ctx context.Context, keyARN, executionID, reason string) (int, error) {
	return s.settle(ctx, keyARN, reason, func(r Token) bool { return r.ExecutionID == executionID })
}

// SettleOthers settles the open token records of keyARN that no running
// execution will use: those of other executions (the caller holds the
// key's lease, so theirs ended without settling, say stopped or crashed)
// and any whose ParametersValidTo has passed. A token's bytes never
// outlive its use.
func (s *Tokens) SettleOthers(ctx context.Context, keyARN, executionID string, now time.Time) (int, error) {
	return s.settle(ctx, keyARN, "settled: its execution ended without using it, or it expired", func(r Token) bool {
		return r.ExecutionID != executionID || !now.Before(r.ParametersValidTo)
	})
}

func (s *Tokens) settle(ctx context.Context, keyARN, reason string, match func(Token) bool) (int, error) {
	recs, err := s.List(ctx, keyARN)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if (r.Status != TokenIssued && r.Status != TokenWrapped) || !match(r) {
			continue
		}
		if err := s.MarkExpired(ctx, keyARN, r.SK, reason); err != nil && !errors.Is(err, ErrConflict) {
			return n, err
		}
		n++
	}
	return n, nil
}

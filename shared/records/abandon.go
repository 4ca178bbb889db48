package records

import (
	"context"
	"errors"
)

// AbandonExecution settles every token record an execution left issued or
// wrapped for keyARN: a stage that crashed after recording a token and was
// run again fetched another, and the first will never be used. Their token
// bytes are removed; the records stay, marked expired with the reason.
func (s *Tokens) AbandonExecution(ctx context.Context, keyARN, executionID, reason string) (int, error) {
	recs, err := s.List(ctx, keyARN)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.ExecutionID != executionID || (r.Status != TokenIssued && r.Status != TokenWrapped) {
			continue
		}
		if err := s.MarkExpired(ctx, keyARN, r.SK, reason); err != nil && !errors.Is(err, ErrConflict) {
			return n, err
		}
		n++
	}
	return n, nil
}

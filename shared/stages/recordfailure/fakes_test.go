package recordfailure

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// In-memory stores with the contracts of the real ones (records,
// registry): the import record is written once (ErrRecorded), a token
// moves to a final status only from issued or wrapped (ErrConflict) and
// loses its bytes, the lease is released only by its holder. Their
// conditional writes on DynamoDB are tested in tests/stores and, with
// this stage, in tests/integration (TestRecordFailureOnDynamoDB).

type audit struct {
	mu   sync.Mutex
	recs []records.Import
	fail error // returned by Put when set
}

func (a *audit) Put(_ context.Context, r records.Import) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	if slices.ContainsFunc(a.recs, func(x records.Import) bool { return x.KeyARN == r.KeyARN && x.SK == r.SK }) {
		return fmt.Errorf("%w: import record %s", records.ErrRecorded, r.SK)
	}
	a.recs = append(a.recs, r)
	return nil
}

func (a *audit) List(_ context.Context, keyARN string) ([]records.Import, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []records.Import
	for _, r := range a.recs {
		if r.KeyARN == keyARN {
			out = append(out, r)
		}
	}
	return out, nil
}

type tokens struct {
	mu   sync.Mutex
	recs map[string]*records.Token // by SK
}

func (s *tokens) put(t records.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string]*records.Token{}
	}
	s.recs[t.SK] = &t
}

func (s *tokens) get(sk string) records.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.recs[sk]
}

func (s *tokens) final(keyARN, sk, status, reason string) error {
	t, ok := s.recs[sk]
	if !ok || t.KeyARN != keyARN || (t.Status != records.TokenIssued && t.Status != records.TokenWrapped && t.Status != status) {
		return fmt.Errorf("%w: token record %s", records.ErrConflict, sk)
	}
	t.Status, t.StatusReason, t.ImportToken, t.EncryptedKeyMaterial = status, reason, nil, nil
	return nil
}

func (s *tokens) MarkFailed(_ context.Context, keyARN, sk, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final(keyARN, sk, records.TokenFailed, reason)
}

func (s *tokens) AbandonExecution(_ context.Context, keyARN, exec, reason string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sk, t := range s.recs {
		if t.KeyARN == keyARN && t.ExecutionID == exec && (t.Status == records.TokenIssued || t.Status == records.TokenWrapped) {
			if err := s.final(keyARN, sk, records.TokenExpired, reason); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

type leases struct {
	mu     sync.Mutex
	holder map[string]string
}

func (l *leases) acquire(arn, owner string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil {
		l.holder = map[string]string{}
	}
	l.holder[arn] = owner
}

func (l *leases) held(arn string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder[arn]
}

func (l *leases) FenceOut(_ context.Context, arn, owner string, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[arn] == owner {
		l.holder[arn] = "fenced " + owner + " until " + until.UTC().Format(time.RFC3339)
	}
	return nil
}

func (l *leases) Release(_ context.Context, arn, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[arn] == owner {
		delete(l.holder, arn)
	}
	return nil
}

// reg records what the stage told the registry; the decision itself is
// registry.FailureEffect's (tested in shared/registry).
type reg struct {
	mu       sync.Mutex
	failures map[string][]registry.Failure
	fail     error
}

func (r *reg) RecordFailure(_ context.Context, arn string, f registry.Failure) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if r.failures == nil {
		r.failures = map[string][]registry.Failure{}
	}
	r.failures[arn] = append(r.failures[arn], f)
	return nil
}

// keys answers DescribeKey from metadata by ARN or alias; err, when set,
// is what every call returns.
type keys struct {
	mu    sync.Mutex
	md    map[string]*types.KeyMetadata
	err   error
	calls []string // "region keyID"
}

func (k *keys) Describe(_ context.Context, region, keyID string) (*types.KeyMetadata, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, region+" "+keyID)
	if k.err != nil {
		return nil, k.err
	}
	md, ok := k.md[keyID]
	if !ok {
		return nil, flow.Facts{Check: flow.CheckNotFound, KeyARN: keyID, Region: kmsaccess.RegionOf(keyID)}.Errorf(flow.KeyNotFound, "KMS key %q not found", keyID)
	}
	return md, nil
}

// topic counts what was published.
type topic struct {
	subjects, bodies []string
	err              error
}

func (p *topic) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	if p.err != nil {
		return nil, p.err
	}
	p.subjects = append(p.subjects, aws.ToString(in.Subject))
	p.bodies = append(p.bodies, aws.ToString(in.Message))
	return &sns.PublishOutput{}, nil
}

// failures is records.Failures in memory: Open writes once, a step is
// marked once (ErrStepDone after), the notification claimed by one
// invocation at a time. fail, when set, fails MarkDone of that step.
type failures struct {
	mu       sync.Mutex
	recs     map[string]*records.Failure
	failStep string
}

func (s *failures) Open(_ context.Context, f records.Failure) (records.Failure, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string]*records.Failure{}
	}
	if old, ok := s.recs[f.ExecutionID]; ok {
		return *old, nil
	}
	f.Steps = map[string]string{}
	s.recs[f.ExecutionID] = &f
	return f, nil
}

func (s *failures) MarkDone(_ context.Context, exec, step string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.recs[exec]
	if step == s.failStep {
		return errors.New("throttled")
	}
	if f.Done(step) {
		return records.ErrStepDone
	}
	f.Steps[step] = at.UTC().Format(records.StepLayout)
	return nil
}

func (s *failures) ClaimNotify(_ context.Context, exec string, now time.Time, hold time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.recs[exec]
	if f.Done(records.StepNotified) || f.Steps[records.StepNotifyClaim] >= now.UTC().Format(records.StepLayout) {
		return records.ErrStepDone
	}
	f.Steps[records.StepNotifyClaim] = now.Add(hold).UTC().Format(records.StepLayout)
	return nil
}

func (s *failures) ReleaseNotify(_ context.Context, exec string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs[exec].Steps, records.StepNotifyClaim)
	return nil
}

package planner

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// KeyReader is the part of KMS the planner reads: DescribeKey in a key's
// own Region (kmsaccess.Describing in the function; a fake in unit
// tests). A key KMS does not have is the error flow.KeyNotFound.
type KeyReader interface {
	Describe(ctx context.Context, region, keyID string) (*types.KeyMetadata, error)
}

// Pacer spaces the planner's KMS reads at most Rate per second in each
// budget (settings.KMSReadRate, under the DescribeKey quota:
// docs/aws-behaviour.md row 39). KMS quotas are per account and Region, so
// each account+Region (registry.Budget) is a budget of its own: reads of
// another account or Region don't wait for this one's. The zero Pacer
// does not wait.
type Pacer struct {
	Rate float64
	next map[string]time.Time
	// Now and Sleep are the clock (tests set both).
	Now   func() time.Time
	Sleep func(context.Context, time.Duration) error
}

// Wait blocks until the next read of the one budget "" may go.
func (p *Pacer) Wait(ctx context.Context) error { return p.WaitIn(ctx, "") }

// WaitIn blocks until the next read in budget (registry.Budget: account
// and Region) may go.
func (p *Pacer) WaitIn(ctx context.Context, budget string) error {
	if p == nil || !(p.Rate > 0) {
		return nil
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if p.next == nil {
		p.next = map[string]time.Time{}
	}
	next := p.next[budget]
	if next.Before(now) {
		next = now
	}
	wait := next.Sub(now)
	p.next[budget] = next.Add(time.Duration(float64(time.Second) / p.Rate))
	if wait <= 0 {
		return nil
	}
	if p.Sleep != nil {
		return p.Sleep(ctx, wait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Gather reads what KMS says about e: DescribeKey of the primary and of
// every registered replica, each in its own Region, paced by pace. A key
// KMS could not be read is left unread (Read false), and Decide falls back
// to the registry for it; only a cancelled context is an error.
func Gather(ctx context.Context, kr KeyReader, pace *Pacer, e registry.Entry) (Facts, error) {
	var f Facts
	var err error
	if f.Primary, err = describe(ctx, kr, pace, registry.RegionOf(e.KeyARN), e.KeyARN); err != nil || f.Primary.RoleUnavailable != "" {
		// No member role, no replica to read either (same account).
		return f, err
	}
	for _, r := range e.Replicas {
		kf, err := describe(ctx, kr, pace, r.Region, r.KeyARN)
		if err != nil {
			return f, err
		}
		f.Replicas = append(f.Replicas, kf)
	}
	return f, nil
}

func describe(ctx context.Context, kr KeyReader, pace *Pacer, region, arn string) (KeyFacts, error) {
	kf := KeyFacts{KeyARN: arn, Region: region}
	if err := pace.WaitIn(ctx, registry.Budget(arn, region)); err != nil {
		return kf, err
	}
	md, err := kr.Describe(ctx, region, arn)
	switch {
	case err == nil:
		kf.Read, kf.State, kf.ValidTo, kf.ExpirationModel = true, string(md.KeyState), md.ValidTo, string(md.ExpirationModel)
	case flow.NameOf(err) == flow.KeyNotFound:
		kf.Read, kf.NotFound = true, true
	case flow.NameOf(err) == flow.MemberRoleUnavailable:
		kf.RoleUnavailable = flow.Sanitize(err.Error())
	case ctx.Err() != nil:
		return kf, ctx.Err()
	default:
		telemetry.Logger(ctx).Warn("KMS not read; the registry decides for this key", "keyArn", arn, "region", region, "error", err.Error())
	}
	if kf.ValidTo != nil {
		v := aws.ToTime(kf.ValidTo).UTC()
		kf.ValidTo = &v
	}
	return kf, nil
}

// Package rotation is the on-demand rotation of a key's imported material:
// starting it (RotateKeyOnDemand), following it until KMS shows it done
// (GetKeyRotationStatus, ListKeyRotations), KMS's lifetime quota of
// on-demand rotations and its conflicts, and the arithmetic of a plan's
// size (size.go). The verify stage drives it, one pass at a time: KMS
// completes a rotation in the background, so a pass either finds it done,
// starts it, or says what it is waiting for.
package rotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
)

// API is the part of KMS a rotation uses.
type API interface {
	GetKeyRotationStatus(context.Context, *kms.GetKeyRotationStatusInput, ...func(*kms.Options)) (*kms.GetKeyRotationStatusOutput, error)
	ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error)
	RotateKeyOnDemand(context.Context, *kms.RotateKeyOnDemandInput, ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error)
}

// Action is what a pass does next.
type Action int

// Actions.
const (
	// Wait: KMS is not yet as expected (a rotation running, a stale read,
	// replicas not yet holding the new material); check again later.
	Wait Action = iota
	// Done: the new material is CURRENT.
	Done
	// Start: the new material is PENDING_ROTATION and no rotation was
	// started: call RotateKeyOnDemand.
	Start
	// Fail: the new material is in a state no rotation leads from.
	Fail
)

// Facts are what KMS said about a rotation to one material.
type Facts struct {
	// Running is GetKeyRotationStatus's OnDemandRotationStartDate: an
	// on-demand rotation in progress since then.
	Running *time.Time
	// State is the new material's KeyMaterialState in ListKeyRotations
	// ("" when it is not listed).
	State types.KeyMaterialState
	// Started: this execution, or an earlier one, called RotateKeyOnDemand.
	Started bool
}

// Decide is the rotation's next step from the facts.
func Decide(f Facts) Action {
	switch {
	case f.Running != nil:
		return Wait
	case f.State == types.KeyMaterialStateCurrent:
		return Done
	case f.Started:
		return Wait // started, no longer running, not yet listed CURRENT: a stale read
	case f.State == types.KeyMaterialStatePendingRotation:
		return Start
	case f.State == types.KeyMaterialStatePendingMultiRegionImportAndRotation, f.State == "":
		return Wait // not yet imported into every replica as KMS sees it
	}
	return Fail
}

// Progress is what one pass found.
type Progress struct {
	// Done: the new material is CURRENT; Listed is the list that showed it.
	Done   bool
	Listed []types.RotationsListEntry
	// StartedAt is when the rotation was started: by this pass, or, as
	// GetKeyRotationStatus says, by an earlier execution. Nil if unknown.
	StartedAt *time.Time
	// Waiting says what is not yet as expected; empty when Done.
	Waiting string
}

// Advance runs one pass of the rotation of key arn to material newID:
// whether KMS has finished it, or starts it (RotateKeyOnDemand) when the
// material is pending rotation and nothing started it yet (startedAt nil).
// fence is called right before RotateKeyOnDemand: an error from it stops
// the rotation unstarted (a lost lease). now stamps a rotation started or
// found done here.
func Advance(ctx context.Context, api API, arn, newID string, startedAt *time.Time, now time.Time, fence func() error) (Progress, error) {
	pr := Progress{StartedAt: startedAt}
	if newID == "" {
		return pr, flow.Errorf(flow.VerificationFailed, "no new key material was imported into %s, nothing to rotate to", arn)
	}
	status, err := api.GetKeyRotationStatus(ctx, &kms.GetKeyRotationStatusInput{KeyId: &arn})
	if err != nil {
		return pr, flow.FromAWS(err, flow.Internal, "GetKeyRotationStatus for %s", arn)
	}
	f := Facts{Running: status.OnDemandRotationStartDate, Started: startedAt != nil}
	var rots []types.RotationsListEntry
	if f.Running == nil {
		if rots, err = kmsaccess.ListMaterials(ctx, api, arn); err != nil {
			return pr, err
		}
		f.State = StateOf(rots, newID)
	}
	stamp := func(t time.Time) {
		if pr.StartedAt == nil {
			t = t.UTC()
			pr.StartedAt = &t
		}
	}
	switch Decide(f) {
	case Done:
		stamp(now)
		pr.Done, pr.Listed = true, rots
		return pr, nil
	case Start:
		if err := fence(); err != nil {
			return pr, err
		}
		if _, err := api.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &arn}); err != nil {
			return pr, StartError(err, arn, newID)
		}
		stamp(now)
		pr.Waiting = fmt.Sprintf("the rotation of %s to material %s has just started", arn, flow.ShortID(newID))
		return pr, nil
	case Fail:
		return pr, flow.Errorf(flow.VerificationFailed, "new key material %s of %s is in state %q, not PENDING_ROTATION or CURRENT", flow.ShortID(newID), arn, f.State)
	}
	pr.Waiting = waiting(f, arn, newID)
	if f.Running != nil {
		stamp(*f.Running) // started by an earlier execution
	}
	return pr, nil
}

func waiting(f Facts, arn, newID string) string {
	switch {
	case f.Running != nil:
		return fmt.Sprintf("the rotation of %s to material %s, started %s, is still in progress", arn, flow.ShortID(newID), f.Running.UTC().Format(time.RFC3339))
	case f.Started:
		return fmt.Sprintf("new key material %s of %s is %q after its rotation, not yet CURRENT", flow.ShortID(newID), arn, f.State)
	}
	return fmt.Sprintf("new key material %s of %s is %q: not yet imported into every replica as KMS sees it", flow.ShortID(newID), arn, f.State)
}

// StateOf is the KeyMaterialState of material id in a list of a key's
// materials ("" when it is not listed).
func StateOf(rots []types.RotationsListEntry, id string) types.KeyMaterialState {
	for _, e := range rots {
		if aws.ToString(e.KeyMaterialId) == id {
			return e.KeyMaterialState
		}
	}
	return ""
}

// StartError names a RotateKeyOnDemand error: ConflictException is
// RotationConflict, LimitExceededException RotationLimitExceeded (the
// lifetime quota), anything else as flow.FromAWS classifies it.
func StartError(err error, arn, id string) error {
	var conflict *types.ConflictException
	var limit *types.LimitExceededException
	switch {
	case errors.As(err, &conflict):
		return flow.Wrap(flow.RotationConflict, err, "RotateKeyOnDemand for %s: a rotation is already in progress", arn)
	case errors.As(err, &limit):
		return flow.Wrap(flow.RotationLimitExceeded, err, "RotateKeyOnDemand for %s: the key has had the %d on-demand rotations KMS allows over its life; new material %s stays imported but pending, and the key keeps its current material", arn, flow.MaxOnDemandRotations, flow.ShortID(id))
	}
	return flow.FromAWS(err, flow.Internal, "RotateKeyOnDemand for %s (to material %s)", arn, flow.ShortID(id))
}

// OnDemandCount is how many on-demand rotations a key's list of
// materials (ListKeyRotations) shows.
func OnDemandCount(rots []types.RotationsListEntry) int {
	n := 0
	for _, e := range rots {
		if e.RotationType == types.RotationTypeOnDemand {
			n++
		}
	}
	return n
}

// CheckQuota refuses a new rotation of a key that has had every on-demand
// rotation KMS allows (RotationLimitExceeded), before anything changes.
func CheckQuota(arn string, rots []types.RotationsListEntry) error {
	if n := OnDemandCount(rots); n >= flow.MaxOnDemandRotations {
		return flow.Errorf(flow.RotationLimitExceeded, "key %s has had %d on-demand rotations, the most KMS allows over a key's life (RotateKeyOnDemand quota %d); nothing was changed: renew without \"rotate\", or move to a new key", arn, n, flow.MaxOnDemandRotations)
	}
	return nil
}

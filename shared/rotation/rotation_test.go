package rotation

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

func TestDecide(t *testing.T) {
	since := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		f    Facts
		want Action
	}{
		{"running", Facts{Running: &since, State: types.KeyMaterialStatePendingRotation}, Wait},
		{"running, started here", Facts{Running: &since, Started: true}, Wait},
		{"current", Facts{State: types.KeyMaterialStateCurrent}, Done},
		{"current, started here", Facts{State: types.KeyMaterialStateCurrent, Started: true}, Done},
		{"pending rotation: start", Facts{State: types.KeyMaterialStatePendingRotation}, Start},
		{"pending rotation, started: a stale read", Facts{State: types.KeyMaterialStatePendingRotation, Started: true}, Wait},
		{"not yet in every replica", Facts{State: types.KeyMaterialStatePendingMultiRegionImportAndRotation}, Wait},
		{"not listed yet", Facts{}, Wait},
		{"non-current, never started", Facts{State: types.KeyMaterialStateNonCurrent}, Fail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(c.f); got != c.want {
				t.Fatalf("Decide(%+v) = %v, want %v", c.f, got, c.want)
			}
		})
	}
}

func TestImports(t *testing.T) {
	cases := []struct {
		name string
		s    Shape
		want int
	}{
		{"one material, one Region", Shape{}, 1},
		{"three materials", Shape{Materials: 3}, 3},
		{"two replicas", Shape{Materials: 1, Replicas: 2}, 3},
		{"one replica due alone", Shape{Materials: 2, Replicas: 2, Regions: 1}, 2},
		{"rotation of a multi-Region key", Shape{Materials: 1, Replicas: 2, Rotate: true}, 6},
	}
	for _, c := range cases {
		if got := Imports(c.s); got != c.want {
			t.Errorf("%s: Imports = %d, want %d", c.name, got, c.want)
		}
	}
	if Requests(3) != 6 || Duration(3, 2) != 2*time.Second || Duration(4, 2) != 2*time.Second {
		t.Errorf("Requests(3) = %d, Duration(3, 2) = %v, Duration(4, 2) = %v", Requests(3), Duration(3, 2), Duration(4, 2))
	}
}

// fakeKMS answers a rotation's three calls.
type fakeKMS struct {
	running *time.Time
	state   types.KeyMaterialState
	rotate  error
	rotated int
}

func (f *fakeKMS) GetKeyRotationStatus(context.Context, *kms.GetKeyRotationStatusInput, ...func(*kms.Options)) (*kms.GetKeyRotationStatusOutput, error) {
	return &kms.GetKeyRotationStatusOutput{OnDemandRotationStartDate: f.running}, nil
}

func (f *fakeKMS) ListKeyRotations(context.Context, *kms.ListKeyRotationsInput, ...func(*kms.Options)) (*kms.ListKeyRotationsOutput, error) {
	return &kms.ListKeyRotationsOutput{Rotations: []types.RotationsListEntry{{KeyMaterialId: aws.String("new"), KeyMaterialState: f.state}}}, nil
}

func (f *fakeKMS) RotateKeyOnDemand(context.Context, *kms.RotateKeyOnDemandInput, ...func(*kms.Options)) (*kms.RotateKeyOnDemandOutput, error) {
	f.rotated++
	return &kms.RotateKeyOnDemandOutput{}, f.rotate
}

func TestAdvance(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Minute)
	lost := errors.New("lease lost")
	cases := []struct {
		name      string
		kms       fakeKMS
		startedAt *time.Time
		fence     error
		done      bool
		started   *time.Time
		rotated   int
		errName   string
		waiting   bool
	}{
		{name: "pending: started", kms: fakeKMS{state: types.KeyMaterialStatePendingRotation}, started: &now, rotated: 1, waiting: true},
		{name: "pending, lease lost: not started", kms: fakeKMS{state: types.KeyMaterialStatePendingRotation}, fence: lost, errName: "lease"},
		{name: "quota reached", kms: fakeKMS{state: types.KeyMaterialStatePendingRotation, rotate: &types.LimitExceededException{}}, rotated: 1, errName: flow.RotationLimitExceeded},
		{name: "conflict", kms: fakeKMS{state: types.KeyMaterialStatePendingRotation, rotate: &types.ConflictException{}}, rotated: 1, errName: flow.RotationConflict},
		{name: "running, started by an earlier execution", kms: fakeKMS{running: &earlier}, started: &earlier, waiting: true},
		{name: "done", kms: fakeKMS{state: types.KeyMaterialStateCurrent}, startedAt: &earlier, started: &earlier, done: true},
		{name: "done before this execution looked", kms: fakeKMS{state: types.KeyMaterialStateCurrent}, started: &now, done: true},
		{name: "started, stale read", kms: fakeKMS{state: types.KeyMaterialStatePendingRotation}, startedAt: &earlier, started: &earlier, waiting: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			api := c.kms
			pr, err := Advance(context.Background(), &api, "arn", "new", c.startedAt, now, func() error { return c.fence })
			switch {
			case c.errName == "lease":
				if !errors.Is(err, lost) {
					t.Fatalf("error %v, want the fence's", err)
				}
			case c.errName != "":
				if flow.NameOf(err) != c.errName {
					t.Fatalf("error %v, want %s", err, c.errName)
				}
			case err != nil:
				t.Fatal(err)
			}
			if api.rotated != c.rotated {
				t.Errorf("RotateKeyOnDemand called %d times, want %d", api.rotated, c.rotated)
			}
			if c.errName != "" {
				return
			}
			if pr.Done != c.done || (pr.Waiting != "") != c.waiting || (pr.StartedAt == nil) != (c.started == nil) || (c.started != nil && !pr.StartedAt.Equal(*c.started)) {
				t.Errorf("progress %+v (started %v); want done %v, waiting %v, started %v", pr, pr.StartedAt, c.done, c.waiting, c.started)
			}
		})
	}
}

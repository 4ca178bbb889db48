package planner

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// TestTally: the Map's results counted as renewed, not renewed (another
// execution held the key) and failed, the failed keys named up to
// MaxFailedKeys; counts add up over pages.
func TestTally(t *testing.T) {
	cases := []struct {
		name                      string
		results                   []Result
		renewed, notRenewed, fail int
		named                     int
	}{
		{"none", nil, 0, 0, 0, 0},
		{"renewed", []Result{{Status: "SUCCEEDED", Outcome: "RENEWED"}, {Status: "SUCCEEDED", Outcome: "RENEWED"}}, 2, 0, 0, 0},
		{"already in progress", []Result{{Status: "SUCCEEDED", Outcome: "ALREADY_IN_PROGRESS"}}, 0, 1, 0, 0},
		{"failed", []Result{{Status: "FAILED", KeyID: "k1", Error: "KeyNotEligible"}, {Status: "SUCCEEDED", Outcome: "RENEWED"}}, 1, 0, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st Stats
			st.Tally(c.results)
			if st.Renewed != c.renewed || st.NotRenewed != c.notRenewed || st.Failed != c.fail || len(st.FailedKeys) != c.named || st.FailedKeys == nil {
				t.Fatalf("stats %+v", st)
			}
		})
	}
	var st Stats
	many := make([]Result, MaxFailedKeys+10)
	for i := range many {
		many[i] = Result{Status: "FAILED", KeyID: fmt.Sprint("k", i), Error: "Internal"}
	}
	st.Tally(many[:5])
	st.Tally(many[5:])
	if st.Failed != MaxFailedKeys+10 || len(st.FailedKeys) != MaxFailedKeys || st.FailedKeys[0].KeyID != "k0" {
		t.Fatalf("bounded: failed %d, named %d", st.Failed, len(st.FailedKeys))
	}
}

type emptyRegistry struct{ calls int }

func (r *emptyRegistry) List(context.Context, string, int32) (registry.Page, error) {
	r.calls++
	return registry.Page{}, nil
}

// TestRunCountsTheLastPage: a state that has read the registry to its end
// (the fleet's CountResults) is counted, not planned again from the start;
// a fresh event plans.
func TestRunCountsTheLastPage(t *testing.T) {
	reg := &emptyRegistry{}
	p := &Stage{Registry: reg}
	ended, _ := json.Marshal(State{Stats: Stats{Pages: 2, Renewed: 3}, Results: [][]Result{{{Status: "FAILED", KeyID: "k", Error: "KeyNotFound"}}}})
	out, err := p.Run(context.Background(), ended)
	if err != nil || reg.calls != 0 || out.Stats.Failed != 1 || out.Stats.Renewed != 3 || out.Stats.FailedKeys[0].KeyID != "k" || out.Results != nil || out.Items == nil || out.Groups == nil {
		t.Fatalf("ended run: %+v, %v, registry read %d times", out, err, reg.calls)
	}
	if _, err := p.Run(context.Background(), json.RawMessage(`{}`)); err != nil || reg.calls != 1 {
		t.Fatalf("fresh run: %v, registry read %d times", err, reg.calls)
	}
}

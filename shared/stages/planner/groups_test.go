package planner

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestGroupItems: a page's rotations grouped by the account and Region of
// their key, each group its own budget; nothing dropped or repeated.
func TestGroupItems(t *testing.T) {
	k := func(account, region, id string) Item {
		return Item{KeyID: "arn:aws:kms:" + region + ":" + account + ":key/" + id}
	}
	a1, a2 := "111122223333", "444455556666"
	type want struct {
		account, region string
		ids             []string
	}
	cases := []struct {
		name  string
		items []Item
		mc    int
		wantC int
		want  []want
	}{
		{"none", nil, 5, 5, nil},
		{"one account and Region", []Item{k(a1, "eu-west-2", "a"), k(a1, "eu-west-2", "b")}, 5, 5,
			[]want{{a1, "eu-west-2", []string{"a", "b"}}}},
		{"two Regions of one account", []Item{k(a1, "eu-west-2", "a"), k(a1, "us-east-1", "b"), k(a1, "eu-west-2", "c")}, 3, 3,
			[]want{{a1, "eu-west-2", []string{"a", "c"}}, {a1, "us-east-1", []string{"b"}}}},
		{"two accounts in one Region", []Item{k(a2, "eu-west-2", "a"), k(a1, "eu-west-2", "b"), k(a2, "eu-west-2", "c")}, 1, 1,
			[]want{{a2, "eu-west-2", []string{"a", "c"}}, {a1, "eu-west-2", []string{"b"}}}},
		{"three accounts get three budgets", []Item{k(a1, "eu-west-2", "a"), k(a2, "eu-west-2", "b"), k("777788889999", "eu-west-2", "c")}, 2, 2,
			[]want{{a1, "eu-west-2", []string{"a"}}, {a2, "eu-west-2", []string{"b"}}, {"777788889999", "eu-west-2", []string{"c"}}}},
		{"concurrency at most an Inline Map's 40", []Item{k(a1, "eu-west-2", "a")}, 100, MaxGroupConcurrency,
			[]want{{a1, "eu-west-2", []string{"a"}}}},
		{"concurrency at least 1", []Item{k(a1, "eu-west-2", "a")}, 0, 1,
			[]want{{a1, "eu-west-2", []string{"a"}}}},
		{"a key ID that is not an ARN", []Item{{KeyID: "alias/x"}, k(a1, "eu-west-2", "a")}, 5, 5,
			[]want{{"", "", []string{"alias/x"}}, {a1, "eu-west-2", []string{"a"}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gs := GroupItems(c.items, c.mc)
			if gs == nil {
				t.Fatal("nil groups: the Map's ItemsPath needs an array")
			}
			var got []want
			n := 0
			for _, g := range gs {
				if g.MaxConcurrency != c.wantC {
					t.Errorf("group %s/%s: maxConcurrency %d, want %d", g.Account, g.Region, g.MaxConcurrency, c.wantC)
				}
				w := want{g.Account, g.Region, nil}
				for _, it := range g.Items {
					id := it.KeyID
					if i := len(id) - 1; len(id) > 0 && id != "alias/x" {
						for i > 0 && id[i-1] != '/' {
							i--
						}
						id = id[i:]
					}
					w.ids = append(w.ids, id)
					n++
				}
				got = append(got, w)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("groups %v, want %v", got, c.want)
			}
			if n != len(c.items) {
				t.Errorf("%d items grouped, want %d", n, len(c.items))
			}
		})
	}
}

// TestGroupsCarryThePageAndResultsCountBack: the planner's state carries
// the page's items in groups only (not twice), and the outer Map's
// results, one list per group, are counted as one list.
func TestGroupsCarryThePageAndResultsCountBack(t *testing.T) {
	s := State{Items: []Item{{KeyID: "arn:aws:kms:eu-west-2:111122223333:key/a"}}, MaxConcurrency: 2}
	s.Groups = GroupItems(s.Items, s.MaxConcurrency)
	b, _ := json.Marshal(s)
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	if _, ok := raw["items"]; ok {
		t.Errorf("items travel twice: %s", b)
	}
	if gs, _ := raw["groups"].([]any); len(gs) != 1 {
		t.Fatalf("groups: %s", b)
	}
	var st Stats
	st.Tally(Flatten([][]Result{
		{{Status: "SUCCEEDED", Outcome: "RENEWED"}, {Status: "FAILED", KeyID: "k1", Error: "KeyNotFound"}},
		{},
		{{Status: "SUCCEEDED", Outcome: "ALREADY_IN_PROGRESS"}, {Status: "SUCCEEDED", Outcome: "RENEWED"}},
	}))
	if st.Renewed != 2 || st.NotRenewed != 1 || st.Failed != 1 || st.FailedKeys[0].KeyID != "k1" {
		t.Fatalf("stats %+v", st)
	}
}

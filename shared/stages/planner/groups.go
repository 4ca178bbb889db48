package planner

import (
	"encoding/json"

	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// Group is the rotations of one page whose keys are in one account and
// Region: KMS request quotas are per account and Region, so each group is
// its own budget. The fleet's outer Map runs one child execution per group,
// and that child's Map runs the group's items, at most MaxConcurrency at
// once (infra/statemachine/fleet.asl.json: RenewDueKeys, RenewGroup).
type Group struct {
	Account string `json:"account"`
	Region  string `json:"region"`
	// MaxConcurrency is the group's own bound (the inner Map's
	// MaxConcurrencyPath): the fleet's MaxConcurrency, sized to one
	// account's and Region's quotas, at most MaxGroupConcurrency.
	MaxConcurrency int    `json:"maxConcurrency"`
	Items          []Item `json:"items"`
}

// MaxGroupConcurrency is the most rotations of one group at once: the
// inner Map runs inline in the group's child execution, and an Inline Map
// runs at most 40 iterations at once (SFN guide, "Using Map state in
// Inline mode"; docs/aws-behaviour.md row 22a).
const MaxGroupConcurrency = 40

// groupKey names a group: the account and Region of a key ARN.
type groupKey struct{ account, region string }

// keyOf is the group of a rotation: the account and Region of its key
// (a multi-Region key's primary; its replicas' imports run in the same
// rotation, see docs/scale.md).
func keyOf(it Item) groupKey {
	return groupKey{account: registry.AccountOf(it.KeyID), region: registry.RegionOf(it.KeyID)}
}

// GroupItems groups a page's rotations by the account and Region of their
// key, groups in the order their first item appears and items in page
// order; each group may run mc rotations at once (at least 1, at most
// MaxGroupConcurrency). A key ID that is not an ARN groups under an empty
// account and Region. A pure function: no item is dropped or repeated.
func GroupItems(items []Item, mc int) []Group {
	mc = max(1, min(mc, MaxGroupConcurrency))
	groups := []Group{}
	at := map[groupKey]int{}
	for _, it := range items {
		k := keyOf(it)
		i, ok := at[k]
		if !ok {
			i = len(groups)
			at[k] = i
			groups = append(groups, Group{Account: k.account, Region: k.region, MaxConcurrency: mc, Items: []Item{}})
		}
		groups[i].Items = append(groups[i].Items, it)
	}
	return groups
}

// groupCost is what planning due item it adds to a page for its group:
// the bytes of a new group's own fields the first time its group appears
// on the page (counted once, even when the item then does not fit: the
// page ends there), nothing after.
func (b *pageBudget) groupCost(due bool, it Item) int {
	if !due {
		return 0
	}
	k := keyOf(it)
	if b.groups == nil {
		b.groups = map[groupKey]bool{}
	}
	if b.groups[k] {
		return 0
	}
	b.groups[k] = true
	j, _ := json.Marshal(Group{Account: k.account, Region: k.region, MaxConcurrency: MaxGroupConcurrency, Items: []Item{}})
	return len(j) + 1
}

// Flatten is the page's rotation results as one list: the outer Map
// returns one list per group (each group's inner Map results).
func Flatten(rs [][]Result) []Result {
	var out []Result
	for _, g := range rs {
		out = append(out, g...)
	}
	return out
}

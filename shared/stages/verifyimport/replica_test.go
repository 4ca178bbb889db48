package verifyimport

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
)

// TestReplicaValidTo: a replica's ValidTo is the earliest ValidTo of the
// material permanently associated with it (KeyMetadata.ValidTo), not the
// ValidTo of the last import.
func TestReplicaValidTo(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d * 24 * time.Hour); return &v }
	const rep = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1"
	imported := func(id string, v *time.Time) flow.PlanItem {
		return flow.PlanItem{KeyARN: rep, Replica: true, KeyMaterialID: id, ImportedAt: &now, ValidTo: v}
	}
	listed := func(id string, v *time.Time, st types.KeyMaterialState) types.RotationsListEntry {
		return types.RotationsListEntry{KeyMaterialId: aws.String(id), ValidTo: v, ImportState: types.ImportStateImported, KeyMaterialState: st}
	}
	cases := []struct {
		name    string
		items   []flow.PlanItem
		listed  []types.RotationsListEntry
		want    *time.Time
		waiting string
	}{
		{name: "plain renewal: every material imported", items: []flow.PlanItem{imported("a", at(30)), imported("b", at(30))}, want: at(30)},
		{name: "plain renewal, imports of different ValidTo: the earliest", items: []flow.PlanItem{imported("a", at(30)), imported("b", at(20))}, want: at(20)},
		{name: "another key's imports do not count", items: []flow.PlanItem{{KeyARN: "other", ImportedAt: &now, ValidTo: at(1)}, imported("a", at(30))}, want: at(30)},
		{name: "nothing imported", items: nil, want: nil},
		{name: "resumed rotation: the other material expires first",
			items:  []flow.PlanItem{imported("new", at(30))},
			listed: []types.RotationsListEntry{listed("old", at(25), types.KeyMaterialStateNonCurrent), listed("new", at(30), types.KeyMaterialStateCurrent)}, want: at(25)},
		{name: "rotation: a pending material does not count",
			items:  []flow.PlanItem{imported("new", at(30))},
			listed: []types.RotationsListEntry{listed("new", at(30), types.KeyMaterialStateCurrent), listed("next", at(1), types.KeyMaterialStatePendingRotation)}, want: at(30)},
		{name: "the list does not yet show the import",
			items:  []flow.PlanItem{imported("new", at(30))},
			listed: []types.RotationsListEntry{listed("old", at(25), types.KeyMaterialStateNonCurrent), listed("new", at(10), types.KeyMaterialStateCurrent)}, waiting: "does not yet list ValidTo"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, waiting := replicaValidTo(&flow.Plan{Items: c.items}, rep, c.listed)
			if (want == nil) != (c.want == nil) || (want != nil && !want.Equal(*c.want)) || (c.waiting == "") != (waiting == "") || !strings.Contains(waiting, c.waiting) {
				t.Fatalf("replicaValidTo = %v, %q; want %v, %q", want, waiting, c.want, c.waiting)
			}
		})
	}
}

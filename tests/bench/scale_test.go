package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
)

// payloadLimit is Step Functions' limit on a state's input or output.
const payloadLimit = 256 * 1024

// scaleSizes are the registry sizes BenchmarkScale measures.
var scaleSizes = []int{500, 1000, 2000, 4000}

// BenchmarkScale measures the fleet run's paging at 500, 1,000, 2,000 and
// 4,000 registered keys. The keys added for it are not due (fleetkit.NotDueKeys),
// so no rotation runs: what is measured is the planner (its pages, each
// page's payload, its peak memory) and the fleet state machine around it
// (one Map per page), with its time and cost. Each page's payload is
// measured twice: as the run planned it, and as the same planner code
// plans it when every entry is due (a clock a year ahead), the largest a
// page can be; both must stay under Step Functions' 256 KiB.
func BenchmarkScale(b *testing.B) {
	ctx := context.Background()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	reg := &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: st.Table}
	type row struct {
		n, pages            int
		wall                time.Duration
		maxPage, maxDueItem int
		u                   *usage
		peakMB              float64
		planCode            time.Duration
	}
	var rows []row
	for i := 0; i < b.N; i++ {
		rows = rows[:0]
		for _, n := range scaleSizes {
			b.StopTimer()
			all, err := reg.All(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if len(all) < n {
				if err := fleetkitNotDue(ctx, reg, len(all), n-len(all)); err != nil {
					b.Fatal(err)
				}
			}
			maxDue, dueItems, err := pageSizes(ctx, reg, time.Now().Add(365*24*time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			if len(rows) == 0 {
				// Warm the planner (a cold start would count for the first size only).
				if _, err := fleetRun(ctx, st, root, px, ""); err != nil {
					b.Fatal(err)
				}
			}
			// Three runs; the one with the median paging time is reported
			// (tens of milliseconds a page: noise on a shared machine).
			var runs []*usage
			b.StartTimer()
			for j := 0; j < 3; j++ {
				u, err := fleetRun(ctx, st, root, px, "")
				if err != nil {
					b.Fatal(err)
				}
				runs = append(runs, u)
			}
			b.StopTimer()
			sort.Slice(runs, func(i, j int) bool { return paging(runs[i]) < paging(runs[j]) })
			u := runs[1]
			var stats struct {
				Pages   int `json:"pages"`
				Scanned int `json:"scanned"`
				Due     int `json:"due"`
			}
			_ = json.Unmarshal(u.Output, &stats)
			if stats.Scanned != n || stats.Due != 0 {
				b.Fatalf("fleet run over %d keys: scanned %d, due %d (want %d, 0): %s", n, stats.Scanned, stats.Due, n, u.Output)
			}
			t0 := time.Now()
			maxRun, _, err := pageSizes(ctx, reg, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			planCode := time.Since(t0)
			if maxDue >= payloadLimit || maxRun >= payloadLimit {
				b.Errorf("%d keys: largest page payload %d bytes (every entry due: %d), limit %d", n, maxRun, maxDue, payloadLimit)
			}
			rows = append(rows, row{n: n, pages: stats.Pages, wall: u.Wall, maxPage: maxRun, maxDueItem: maxDue, u: u,
				peakMB: float64(peakKB("PlannerFunction")) / 1024, planCode: planCode})
			_ = dueItems
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "scale: fleet runs over registries of not-due keys (planner pages of 400, no rotation runs)\n")
	fmt.Fprintf(&sb, "  %6s %5s %8s %10s %10s %10s %15s %11s %11s %8s %7s %11s %8s\n", "keys", "pages", "wall-s", "paging-ms", "PlanPage", "plan-code", "page-bytes(due)", "transitions", "planner-ms", "GB-s", "RRU", "cost-$/run", "peak-MB")
	base := rows[0]
	for _, r := range rows {
		rr, _ := r.u.ddbUnits()
		cost := 0.0
		for _, t := range costOf(r.u) {
			cost += t.cost()
		}
		fmt.Fprintf(&sb, "  %6d %5d %8.2f %10.0f %10.0f %10.0f %7d(%6d) %11d %11.0f %8.4f %7.1f %11.7f %8.1f\n", r.n, r.pages, r.wall.Seconds(), paging(r.u),
			r.u.FleetMs["PlanPage"], float64(r.planCode.Microseconds())/1000, r.maxPage, r.maxDueItem,
			r.u.Transitions, r.u.GBSeconds["PlannerFunction"]*1024/128*1000, r.u.gbSeconds(), rr, cost, r.peakMB)
		b.ReportMetric(r.wall.Seconds(), fmt.Sprintf("wall-s-%d", r.n))
		b.ReportMetric(float64(r.maxDueItem), fmt.Sprintf("page-bytes-due-%d", r.n))
		_ = base
	}
	last := rows[len(rows)-1]
	fmt.Fprintf(&sb, "  growth %d -> %d keys (x%.0f): pages x%.2f, paging time x%.2f, planner code x%.2f, transitions x%.2f, cost x%.2f; planner peak memory %.1f -> %.1f MB\n",
		base.n, last.n, float64(last.n)/float64(base.n), float64(last.pages)/float64(base.pages), paging(last.u)/paging(base.u), last.planCode.Seconds()/base.planCode.Seconds(),
		float64(last.u.Transitions)/float64(base.u.Transitions), runCost(last.u)/runCost(base.u), base.peakMB, last.peakMB)
	fmt.Fprintf(&sb, "  largest page payload: %d bytes when every entry is due (limit %d: %.0f%%)\n", last.maxDueItem, payloadLimit, 100*float64(last.maxDueItem)/payloadLimit)
	say("%s", sb.String())
}

// paging is the time the fleet state machine's own states took.
func paging(u *usage) (ms float64) {
	for _, v := range u.FleetMs {
		ms += v
	}
	return ms
}

func runCost(u *usage) (c float64) {
	for _, t := range costOf(u) {
		c += t.cost()
	}
	return c
}

func fleetkitNotDue(ctx context.Context, reg *registry.Store, first, n int) error {
	return notDue(ctx, reg, stack.Region, stack.Account, first, n)
}

// pageSizes plans every page of the registry at now with the planner's
// own code (400 entries a page, as the template sets) and returns the
// largest page's JSON size (the PlanPage state's output) and the number of
// items planned.
func pageSizes(ctx context.Context, reg *registry.Store, now time.Time) (int, int, error) {
	p := &planner.Stage{Registry: reg, PageSize: 400, MaxConcurrency: 1, Now: func() time.Time { return now }}
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // the planner's page logs
	var s planner.State
	largest, items := 0, 0
	for {
		out, err := p.Plan(ctx, s)
		if err != nil {
			return 0, 0, err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return 0, 0, err
		}
		largest, items = max(largest, len(b)), items+len(out.Items)
		if out.Next == "" {
			return largest, items, nil
		}
		s = planner.Decode(b)
	}
}

var notDue = fleetkit.NotDueKeys

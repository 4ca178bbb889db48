// Package bench measures the fleet run on the local stack (make bench):
// throughput in keys per second, p50 and p99 duration of each function
// (from the runtime emulator's REPORT lines), each function's init
// duration and peak memory (VmHWM of its process), and each bootstrap's
// size as built for Lambda (linux/arm64); KMS, DynamoDB and Secrets
// Manager calls per renewal counted at proxies and the estimated AWS cost
// of 1,000 renewals (measure_test.go, cost_test.go); pacing under a KMS
// request quota (pacing_test.go); the planner's pages at 500 to 2,000
// registered keys (scale_test.go).
package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
)

var (
	root string
	st   *stack.Stack
	px   *proxies
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root, _ = filepath.Abs("../..")
	// Only a benchmark run needs the stack.
	if f := flagValue("test.bench"); f == "" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "kms-reimport-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if px, err = startProxies(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer px.close()
	// This stack is not paced (the emulators have no quota): 8 rotations at
	// once. BenchmarkPacing starts its own, paced.
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Concurrency: 2,
		FunctionEnv: map[string]map[string]string{"Parameters": px.env(), "PlannerFunction": {"MAX_CONCURRENCY": "8", "KMS_REQUEST_RATE": "1000", "KMS_READ_RATE": "1000"}}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local stack: %v\n(run `make tools`)\n", err)
		return 1
	}
	defer st.Down()
	px.target(st)
	return m.Run()
}

func flagValue(name string) string {
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v
		}
	}
	return ""
}

func register(b *testing.B, n int) {
	ctx := context.Background()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	c := fleetkit.Clients{KMS: kms.NewFromConfig(cfg), Secrets: secretsmanager.NewFromConfig(cfg),
		Registry: &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: st.Table}}
	if _, err := fleetkit.ManagedKeys(ctx, c, n, "bench"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFleetRun renews 50 newly registered keys (symmetric, local-kms)
// per iteration with one run of the fleet state machine, and reports the
// calls each renewal made (counted at the proxies) and the estimated AWS
// cost of 1,000 renewals.
func BenchmarkFleetRun(b *testing.B) {
	const keys = 50
	var total time.Duration
	var last *usage
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		register(b, keys)
		b.StartTimer()
		u, err := fleetRun(context.Background(), st, root, px, "")
		if err != nil || u.Renewals != keys || u.Failed != 0 {
			b.Fatalf("fleet run: %v; renewed %v of %d", err, u, keys)
		}
		total += u.Wall
		last = u
		measuredRotation = time.Duration(median(u.ChildMs) * float64(time.Millisecond))
	}
	b.ReportMetric(float64(keys*b.N)/total.Seconds(), "keys/s")
	b.StopTimer()
	reportFunctions(b)
	reportUsage(b, "fleet run of 50 symmetric keys (local-kms), one material each, renewal path", last)
}

// reportUsage prints calls per renewal and the cost of 1,000 renewals.
func reportUsage(b *testing.B, what string, u *usage) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: %d renewals, %d failed, wall %.1fs\n", what, u.Renewals, u.Failed, u.Wall.Seconds())
	sb.WriteString(callTable("KMS calls per renewal", u.KMS, u.Renewals))
	sb.WriteString(callTable("Secrets Manager calls per renewal", u.SM, u.Renewals))
	sb.WriteString(callTable("DynamoDB requests per renewal", u.DDB, u.Renewals))
	r, w := u.ddbUnits()
	fmt.Fprintf(&sb, "  DynamoDB capacity per renewal: %s RRU, %s WRU (ConsumedCapacity from DynamoDB Local)\n", perRenewal(r, u.Renewals), perRenewal(w, u.Renewals))
	fmt.Fprintf(&sb, "  Lambda per renewal: %s invocations, %s GB-s billed (%v); init %.0f ms in all\n", perRenewal(float64(u.invocations()), u.Renewals), perRenewal(u.gbSeconds(), u.Renewals), fmtMap(u.Invocations), u.InitMs)
	fmt.Fprintf(&sb, "  Step Functions per renewal: %s state transitions (%v)\n", perRenewal(float64(u.Transitions), u.Renewals), fmtMap(u.TransitionsByMachine))
	c, total := costReport(u, 1000)
	sb.WriteString(c)
	say("%s", sb.String())
	b.ReportMetric(total, "$/1000-renewals")
	b.ReportMetric(float64(u.kmsCalls())/float64(max(u.Renewals, 1)), "kms-calls/renewal")
}

func fmtMap[V int | float64](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %v", strings.TrimSuffix(k, "Function"), m[k]))
	}
	return strings.Join(parts, ", ")
}

var (
	reportRe = regexp.MustCompile(`^REPORT RequestId: \S+\s+(?:Init Duration: [0-9.]+ ms\s+)?Duration: ([0-9.]+) ms`)
	initRe   = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
)

// reportFunctions adds per-function metrics from the emulators' logs and
// processes.
func reportFunctions(b *testing.B) {
	ids := make([]string, 0, len(st.Pools))
	for id := range st.Pools {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		var durs, inits []float64
		for c := range st.Pools[id] {
			name := id
			if c > 0 {
				name = fmt.Sprintf("%s-%d", id, c)
			}
			f, err := os.Open(st.LogPath(name))
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if m := reportRe.FindStringSubmatch(sc.Text()); m != nil {
					v, _ := strconv.ParseFloat(m[1], 64)
					durs = append(durs, v)
				}
				if m := initRe.FindStringSubmatch(sc.Text()); m != nil {
					v, _ := strconv.ParseFloat(m[1], 64)
					inits = append(inits, v)
				}
			}
			f.Close()
		}
		short := strings.TrimSuffix(id, "Function")
		if len(durs) > 0 {
			sort.Float64s(durs)
			b.ReportMetric(pct(durs, 50), short+"-p50-ms")
			b.ReportMetric(pct(durs, 99), short+"-p99-ms")
		}
		if len(inits) > 0 {
			sort.Float64s(inits)
			b.ReportMetric(pct(inits, 50), short+"-init-ms")
		}
		if kb := peakKB(id); kb > 0 {
			b.ReportMetric(float64(kb)/1024, short+"-peak-MB")
		}
		if sz := armSize(b, id); sz > 0 {
			b.ReportMetric(float64(sz)/(1<<20), short+"-bootstrap-MB")
		}
	}
}

func pct(sorted []float64, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1]
}

// peakKB is the largest VmHWM among the function's processes.
func peakKB(id string) int64 {
	var peak int64
	for _, pid := range st.FunctionProcesses(id) {
		if kb, err := stack.VmHWM(pid); err == nil {
			peak = max(peak, kb)
		}
	}
	return peak
}

// armSize builds the function as `make build-<id>` does and returns the
// bootstrap's size.
func armSize(b *testing.B, id string) int64 {
	out := filepath.Join(b.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, "./"+stack.FunctionDir(id))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building %s: %v\n%s", id, err, msg)
	}
	fi, err := os.Stat(out)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// Package bench measures the fleet run on the local stack (make bench):
// throughput in keys per second, p50 and p99 duration of each function
// (from the runtime emulator's REPORT lines), each function's init
// duration and peak memory (VmHWM of its process), and each bootstrap's
// size as built for Lambda (linux/arm64).
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
	st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Concurrency: 2,
		FunctionEnv: map[string]map[string]string{"PlannerFunction": {"MAX_CONCURRENCY": "8"}}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: cannot start the local stack: %v\n(run `make tools`)\n", err)
		return 1
	}
	defer st.Down()
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

// BenchmarkFleetRun renews 50 newly registered keys per iteration with
// one run of the fleet state machine.
func BenchmarkFleetRun(b *testing.B) {
	const keys = 50
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		register(b, keys)
		b.StartTimer()
		start := time.Now()
		ex, err := st.Execute(context.Background(), root, []byte(`{}`), stack.ExecuteOptions{StateMachine: "FleetStateMachine"})
		if err != nil || ex.Status != "SUCCEEDED" || ex.ChildExecutions["SUCCEEDED"] != keys {
			b.Fatalf("fleet run: %v %+v", err, ex)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(keys*b.N)/total.Seconds(), "keys/s")
	b.StopTimer()
	reportFunctions(b)
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

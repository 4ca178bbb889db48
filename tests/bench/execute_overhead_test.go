package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// BenchmarkMakeExecuteOverhead measures what `make execute` adds to the
// execution itself: the same fleet run ({} on this stack's registry) once
// through `make execute` (make, the prebuilt .local/bin/stackctl, loading
// the stack's state) and once in-process as stackctl runs it (the state
// machine runner on Node 22), alternately, 5 pairs per iteration; the
// overhead is the difference of the medians. Target: under 300 ms.
func BenchmarkMakeExecuteOverhead(b *testing.B) {
	const pairs = 5
	input := filepath.Join(b.TempDir(), "fleet.json")
	if err := os.WriteFile(input, []byte(`{}`), 0o644); err != nil {
		b.Fatal(err)
	}
	// A user's plain call: not a sub-make of `make bench`.
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			env = append(env, kv)
		}
	}
	viaMake := func() time.Duration {
		cmd := exec.Command("make", "-s", "--no-print-directory", "execute", "INPUT="+input, "SM=FleetStateMachine", "STACK_DIR="+st.Dir)
		cmd.Dir, cmd.Env, cmd.Stdout = root, env, io.Discard
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("make execute: %v\n%s", err, stderr.String())
		}
		return time.Since(start)
	}
	direct := func() time.Duration {
		start := time.Now()
		ex, err := st.Execute(context.Background(), root, []byte(`{}`), stack.ExecuteOptions{Human: true, Out: io.Discard, StateMachine: "FleetStateMachine"})
		if err != nil || ex.Status != "SUCCEEDED" {
			b.Fatalf("fleet run: %v %+v", err, ex)
		}
		return time.Since(start)
	}
	viaMake() // builds .local/bin/stackctl if a source changed: not measured
	var mk, dr []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < pairs; j++ {
			mk = append(mk, float64(viaMake().Microseconds())/1000)
			dr = append(dr, float64(direct().Microseconds())/1000)
		}
	}
	b.StopTimer()
	m, d := median(mk), median(dr)
	b.ReportMetric(m, "make-execute-ms")
	b.ReportMetric(d, "execution-ms")
	b.ReportMetric(m-d, "overhead-ms")
	verdict := "under the 300 ms target"
	if m-d >= 300 {
		verdict = "OVER the 300 ms target"
	}
	b.Logf("make execute: median %.0f ms; the execution itself: median %.0f ms; overhead %.0f ms, %s (%d pairs)", m, d, m-d, verdict, len(mk))
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

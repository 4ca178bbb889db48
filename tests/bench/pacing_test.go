package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/tests/support/fleetkit"
)

// Pacing benchmark parameters (make bench; PACING_RATE, PACING_KEYS
// override). The rate is below what this 2-core machine's local stack can
// do (about 6 import calls a second with 8 rotations at once), so the
// quota, not the machine, is what limits the run.
const (
	defaultPacingRate = 4.0 // import calls (GetParametersForImport + ImportKeyMaterial) per second
	defaultPacingKeys = 200
)

var importOps = []string{"GetParametersForImport", "ImportKeyMaterial"}

// measuredRotation is the median rotation duration BenchmarkFleetRun saw
// (0: not run in this process).
var measuredRotation time.Duration

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkPacing proves the fleet stays under a KMS request quota as a
// whole: a token bucket at R requests/s (burst 1 s) in front of KMS for
// GetParametersForImport + ImportKeyMaterial, answering ThrottlingException
// as KMS does; the planner gets KMS_REQUEST_RATE=R and the rotation
// duration measured on this machine, so the Map runs
// FleetConcurrency(R, T) rotations at once. Over N keys it reports the
// import-call rate achieved as a fraction of R (target >= 0.8), the
// throttled answers, the rotations that failed (must be 0) and the wall
// time; then a second, smaller run while another workload takes a quarter
// of the quota (the fleet backs off, nothing fails).
func BenchmarkPacing(b *testing.B) {
	rate := envFloat("PACING_RATE", defaultPacingRate)
	keys := int(envFloat("PACING_KEYS", defaultPacingKeys))
	rot := measuredRotation
	if rot == 0 {
		rot = calibrate(b)
	}
	conc := settings.FleetConcurrency(rate, rot)
	say("pacing: R = %.2f import calls/s, rotation duration T = %v (measured here), Map concurrency = max(1, floor(R x T / %d)) = %d", rate, rot.Round(time.Millisecond), settings.ImportCallsPerRotation, conc)

	ctx := context.Background()
	pp, err := startProxies()
	if err != nil {
		b.Fatal(err)
	}
	defer pp.close()
	dir, err := os.MkdirTemp("", "kms-reimport-pacing-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ps, err := stack.Up(sctx, stack.Options{Root: root, Dir: dir, Concurrency: 2,
		FunctionEnv: map[string]map[string]string{"Parameters": pp.env(), "PlannerFunction": {
			"MAX_CONCURRENCY": "100", "KMS_REQUEST_RATE": strconv.FormatFloat(rate, 'f', -1, 64), "ROTATION_DURATION": rot.Round(time.Millisecond).String(),
		}}})
	if err != nil {
		b.Fatalf("paced stack: %v", err)
	}
	defer ps.Down()
	pp.target(ps)
	cfg, err := ps.AWSConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	c := fleetkit.Clients{KMS: kms.NewFromConfig(cfg), Secrets: secretsmanager.NewFromConfig(cfg),
		Registry: &registry.Store{DB: dynamodb.NewFromConfig(cfg), Table: ps.Table}}

	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if _, err := fleetkit.ManagedKeys(ctx, c, keys, "paced"); err != nil {
			b.Fatal(err)
		}
		pp.KMS.RateLimit(rate, rate, importOps...)
		b.StartTimer()
		u, err := fleetRun(ctx, ps, root, pp, "")
		b.StopTimer()
		pp.KMS.RateLimit(0, 0)
		if err != nil {
			b.Fatal(err)
		}
		achieved, window := importRate(u)
		overall := float64(importCalls(u)) / u.Wall.Seconds()
		say("pacing, %d keys at R = %.2f/s (Map concurrency %d):\n"+
			"  import calls %d (GetParametersForImport + ImportKeyMaterial accepted), throttled answers %d, KmsThrottled lines %d\n"+
			"  achieved import-call rate %.2f/s over the import window (%.1fs) = %.2f of R; %.2f/s over the whole run = %.2f of R (target >= 0.8)\n"+
			"  rotations renewed %d, failed %d (must be 0); wall time %.1fs (at least %.0fs at R)\n"+
			"  median rotation %.0f ms",
			keys, rate, conc, importCalls(u), importThrottled(u), throttledEMF(b, ps),
			achieved, window.Seconds(), achieved/rate, overall, overall/rate,
			u.Renewals, u.Failed, u.Wall.Seconds(), float64(keys*settings.ImportCallsPerRotation)/rate, median(u.ChildMs))
		b.ReportMetric(achieved/rate, "quota-efficiency")
		b.ReportMetric(float64(importThrottled(u)), "throttled")
		b.ReportMetric(float64(u.Failed), "failed-rotations")
		b.ReportMetric(u.Wall.Seconds(), "wall-s")
		if u.Failed != 0 || u.Renewals != keys {
			b.Errorf("%d of %d keys renewed, %d rotations failed: want all renewed, none failed", u.Renewals, keys, u.Failed)
		}
		if achieved/rate < 0.8 {
			b.Errorf("achieved %.2f of R, target >= 0.8", achieved/rate)
		}
		if achieved > rate*1.05 {
			b.Errorf("achieved %.2f/s, over R = %.2f/s", achieved, rate)
		}
		reportUsage(b, fmt.Sprintf("paced fleet run of %d keys", keys), u)

		// Another workload takes a quarter of the quota meanwhile.
		competing(b, ctx, ps, pp, c, rate, keys/4)
	}
}

// competing runs n keys while another client calls GetParametersForImport
// at rate/4 through the same quota: the fleet backs off (its rate and the
// other's add up to at most R) and no rotation fails.
func competing(b *testing.B, ctx context.Context, ps *stack.Stack, pp *proxies, c fleetkit.Clients, rate float64, n int) {
	if n == 0 {
		return
	}
	if _, err := fleetkit.ManagedKeys(ctx, c, n, "compete"); err != nil {
		b.Fatal(err)
	}
	// The other workload's key: an EXTERNAL key it asks parameters for.
	k, err := c.KMS.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal})
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := ps.AWSConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	other := kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(pp.KMS.URL); o.RetryMaxAttempts = 1 })
	pp.KMS.RateLimit(rate, rate, importOps...)
	defer pp.KMS.RateLimit(0, 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var otherOK, otherThrottled atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / (rate / 4)))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_, err := other.GetParametersForImport(ctx, &kms.GetParametersForImportInput{KeyId: k.KeyMetadata.KeyId,
					WrappingAlgorithm: kmstypes.AlgorithmSpecRsaesOaepSha256, WrappingKeySpec: kmstypes.WrappingKeySpecRsa2048})
				if err == nil {
					otherOK.Add(1)
				} else if strings.Contains(err.Error(), "ThrottlingException") {
					otherThrottled.Add(1)
				}
			}
		}
	}()
	u, err := fleetRun(ctx, ps, root, pp, "")
	close(stop)
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
	fleetCalls := importCalls(u) - otherOK.Load()
	total := float64(importCalls(u)) / u.Wall.Seconds()
	say("competing workload at R/4 = %.2f/s GetParametersForImport, fleet of %d keys:\n"+
		"  fleet import calls %d (%.2f/s), other workload's %d accepted and %d throttled; together %.2f/s = %.2f of R\n"+
		"  throttled answers %d; rotations renewed %d, failed %d (must be 0); wall %.1fs",
		rate/4, n, fleetCalls, float64(fleetCalls)/u.Wall.Seconds(), otherOK.Load(), otherThrottled.Load(), total, total/rate,
		importThrottled(u), u.Renewals, u.Failed, u.Wall.Seconds())
	if u.Failed != 0 || u.Renewals != n {
		b.Errorf("with a competing workload: %d of %d renewed, %d failed", u.Renewals, n, u.Failed)
	}
}

func importCalls(u *usage) (n int64) {
	for _, op := range importOps {
		n += u.KMS[op].Forwarded
	}
	return n
}

func importThrottled(u *usage) (n int64) {
	for _, op := range importOps {
		n += u.KMS[op].Throttled
	}
	return n
}

// importRate is the accepted import calls per second between the first
// and the last one.
func importRate(u *usage) (float64, time.Duration) {
	var first, last time.Time
	for _, op := range importOps {
		c := u.KMS[op]
		if c.Forwarded == 0 {
			continue
		}
		if first.IsZero() || c.First.Before(first) {
			first = c.First
		}
		if c.Last.After(last) {
			last = c.Last
		}
	}
	w := last.Sub(first)
	if w <= 0 {
		return 0, 0
	}
	// n calls span n-1 intervals.
	return float64(importCalls(u)-1) / w.Seconds(), w
}

// throttledEMF counts the KmsThrottled EMF lines the functions wrote.
func throttledEMF(b *testing.B, ps *stack.Stack) int {
	n := 0
	for id, urls := range ps.Pools {
		for c := range urls {
			data, err := os.ReadFile(ps.LogPath(poolName(id, c)))
			if err != nil {
				continue
			}
			n += strings.Count(string(data), `"KmsThrottled":1`)
		}
	}
	return n
}

// calibrate measures the rotation duration on the unpaced stack: 16 keys,
// 8 at once.
func calibrate(b *testing.B) time.Duration {
	b.Helper()
	register(b, 16)
	u, err := fleetRun(context.Background(), st, root, px, "")
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(median(u.ChildMs) * float64(time.Millisecond))
}

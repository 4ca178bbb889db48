package settings

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/rotation"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// stubKMS answers the first `throttles` requests with KMS's
// ThrottlingException (AWS JSON 1.1, HTTP 400) and the rest with a
// DescribeKey answer.
func stubKMS(t *testing.T, throttles int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if n.Add(1) <= throttles {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."}`))
			return
		}
		_, _ = w.Write([]byte(`{"KeyMetadata":{"KeyId":"k","Arn":"arn:aws:kms:eu-west-2:111122223333:key/k","KeyState":"Enabled","Origin":"EXTERNAL"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// kmsFromSettings builds a KMS client the way the functions do (settings.AWS,
// kmsaccess) against the stub, with the retry delays shortened so the test
// stays fast; the adaptive retryer and the throttle counter are the ones
// every function gets.
func kmsFromSettings(t *testing.T, url string) kmsaccess.API {
	t.Helper()
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_ENDPOINT_URL_KMS", url)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	cfg, err := AWS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Retryer().(*retry.AdaptiveMode); !ok {
		t.Fatalf("settings.AWS retryer is %T, want the SDK's adaptive mode (*retry.AdaptiveMode)", cfg.Retryer())
	}
	base := cfg.Retryer
	cfg.Retryer = func() aws.Retryer { return retry.AddWithMaxBackoffDelay(base(), time.Millisecond) }
	c, err := kmsaccess.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.In("")
}

func throttledLines(t *testing.T, out *bytes.Buffer) int {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var doc map[string]any
		if json.Unmarshal(sc.Bytes(), &doc) != nil || doc[ThrottledMetric] == nil {
			continue
		}
		if doc[ThrottledMetric] != 1.0 || doc["Service"] != "kms-reimport" {
			t.Errorf("EMF line %s: want %s = 1 with Service = kms-reimport", sc.Text(), ThrottledMetric)
		}
		aws := doc["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		if aws["Namespace"] != "KmsReimport" || !strings.Contains(sc.Text(), `{"Name":"KmsThrottled","Unit":"Count"}`) {
			t.Errorf("EMF line %s: want namespace KmsReimport and unit Count", sc.Text())
		}
		n++
	}
	return n
}

// TestKmsThrottledEmitted: two stub KMS endpoints, called at once through
// clients built as the functions build them. One answers
// ThrottlingException twice, then succeeds: the call succeeds (the
// adaptive retryer retries, after sleeping for its rate limiter's token).
// The other throttles every attempt: the call fails AWSTransient (which
// the state machine retries) after MaxAttempts attempts. Each throttled
// answer is one KmsThrottled = 1 EMF line: 2 + MaxAttempts in all.
func TestKmsThrottledEmitted(t *testing.T) {
	var out bytes.Buffer
	telemetry.SetOutput(&out)
	t.Cleanup(func() { telemetry.SetOutput(nopWriter{}) })
	srv1, calls1 := stubKMS(t, 2)
	srv2, calls2 := stubKMS(t, 1000)
	api1, api2 := kmsFromSettings(t, srv1.URL), kmsFromSettings(t, srv2.URL)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := kmsaccess.Describe(context.Background(), api2, "k")
		errc <- err
	}()
	md, err := kmsaccess.Describe(context.Background(), api1, "k")
	if err != nil {
		t.Fatalf("DescribeKey after two throttles: %v", err)
	}
	if *md.KeyId != "k" || calls1.Load() != 3 {
		t.Fatalf("key %v after %d requests, want k after 3", *md.KeyId, calls1.Load())
	}
	// Backoff is shortened to 1 ms here: what waits is adaptive mode's
	// client-side rate limit (at least 0.5 requests/s once throttled).
	if d := time.Since(start); d < time.Second {
		t.Errorf("three attempts with two throttles took %v: adaptive mode should have slowed the client", d)
	}
	err = <-errc
	if flow.NameOf(err) != flow.AWSTransient {
		t.Fatalf("always throttled: error %v named %s, want %s", err, flow.NameOf(err), flow.AWSTransient)
	}
	if calls2.Load() != MaxAttempts {
		t.Fatalf("always throttled: %d attempts, want %d", calls2.Load(), MaxAttempts)
	}
	if n := throttledLines(t, &out); n != 2+MaxAttempts {
		t.Fatalf("%d KmsThrottled lines, want %d (one per throttled answer):\n%s", n, 2+MaxAttempts, out.String())
	}
}

// TestOtherErrorsNotCounted: KMS errors other than ThrottlingException
// are not KmsThrottled.
func TestOtherErrorsNotCounted(t *testing.T) {
	var out bytes.Buffer
	telemetry.SetOutput(&out)
	t.Cleanup(func() { telemetry.SetOutput(nopWriter{}) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"NotFoundException","message":"no such key"}`))
	}))
	t.Cleanup(srv.Close)
	api := kmsFromSettings(t, srv.URL)
	if _, err := api.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String("k")}); err == nil {
		t.Fatal("want NotFoundException")
	}
	if n := throttledLines(t, &out); n != 0 {
		t.Fatalf("%d KmsThrottled lines for NotFoundException, want 0", n)
	}
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }

func TestFleetConcurrency(t *testing.T) {
	cases := []struct {
		rate float64
		d    time.Duration
		want int
	}{
		{1, 3 * time.Second, 1}, // the defaults: floor(1.5)
		{1, time.Second, 1},     // never below one rotation
		{0.25, 3 * time.Second, 1},
		{15, 3 * time.Second, 22}, // floor(22.5)
		{4, 2500 * time.Millisecond, 5},
		{10, 2 * time.Second, 10},
		{1e6, time.Hour, 10000},
	}
	for _, c := range cases {
		if got := FleetConcurrency(c.rate, c.d); got != c.want {
			t.Errorf("FleetConcurrency(%v, %v) = %d, want %d", c.rate, c.d, got, c.want)
		}
	}
}

func TestPacingFromEnv(t *testing.T) {
	t.Setenv("TABLE_NAME", "t")
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if s.KMSRequestRate != rotation.DefaultRequestRate || s.RotationDuration != DefaultRotationDuration || s.MaxConcurrency != 1 {
		t.Fatalf("defaults: rate %v, duration %v, concurrency %d; want 1/s, 3s, 1", s.KMSRequestRate, s.RotationDuration, s.MaxConcurrency)
	}
	t.Setenv("KMS_REQUEST_RATE", "15")
	t.Setenv("MAX_CONCURRENCY", "8")
	if s, err = FromEnv(); err != nil || s.MaxConcurrency != 8 {
		t.Fatalf("MAX_CONCURRENCY 8 caps the rate's 22: got %d, %v", s.MaxConcurrency, err)
	}
	t.Setenv("MAX_CONCURRENCY", "100")
	t.Setenv("ROTATION_DURATION", "2s")
	if s, err = FromEnv(); err != nil || s.MaxConcurrency != 15 {
		t.Fatalf("15/s over 2 s rotations: got %d, %v; want 15", s.MaxConcurrency, err)
	}
	for k, v := range map[string]string{"KMS_REQUEST_RATE": "0", "ROTATION_DURATION": "0s"} {
		t.Run(k, func(t *testing.T) {
			t.Setenv(k, v)
			if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), k) {
				t.Fatalf("%s=%s: %v, want an error naming it", k, v, err)
			}
		})
	}
	for _, v := range []string{"x", "-1", "NaN"} {
		t.Setenv("KMS_REQUEST_RATE", v)
		if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "KMS_REQUEST_RATE") {
			t.Fatalf("KMS_REQUEST_RATE=%s: %v", v, err)
		}
	}
}

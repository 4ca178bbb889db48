package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
	"github.com/kms-reimport/kms-reimport/tests/support/lambdalog"
)

// logCall is one place the functions' code logs: its file and line, the
// slog level and the message.
type logCall struct {
	where string
	level slog.Level
	msg   string
}

var (
	// logger.Info("msg", ...), slog.Default().Warn("msg", ...),
	// log.ErrorContext(ctx, "msg", ...).
	logCallRe = regexp.MustCompile(`\.(Debug|Info|Warn|Error)(Context\(\s*\w+,)?\(?\s*"((?:[^"\\]|\\.)*)"`)
	// Writes to stdout/stderr that bypass slog and Emit: Lambda would read
	// each such line as INFO.
	rawWriteRe = regexp.MustCompile(`\b(fmt\.Print|fmt\.Fprint\w*\(os\.Std|log\.(Print|Fatal|Panic)|println\(|os\.Std(out|err)\.Write)`)
)

// functionLogCalls scans the Go source the Lambda functions are built from
// (functions/ and shared/, tests excluded) for every log call.
func functionLogCalls(t *testing.T) []logCall {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	levels := map[string]slog.Level{"Debug": slog.LevelDebug, "Info": slog.LevelInfo, "Warn": slog.LevelWarn, "Error": slog.LevelError}
	var calls []logCall
	for _, dir := range []string{"functions", "shared"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			for i, line := range strings.Split(string(src), "\n") {
				if m := rawWriteRe.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
					t.Errorf("%s:%d: %s writes a line that is not a levelled JSON line (Lambda reads it as INFO); log with slog or telemetry.Emit", rel, i+1, m)
				}
				for _, m := range logCallRe.FindAllStringSubmatch(line, -1) {
					calls = append(calls, logCall{where: rel + ":" + itoa(i+1), level: levels[m[1]], msg: m[3]})
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return calls
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// line is one line a function writes and the level it is meant to have.
type line struct {
	what  string
	want  string // Lambda level the line is written at
	bytes []byte
}

// capture runs f with the telemetry output in a buffer and returns each
// line written.
func capture(t *testing.T, f func()) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	telemetry.SetOutput(&buf)
	defer telemetry.SetOutput(os.Stdout)
	f()
	var out [][]byte
	for _, l := range bytes.Split(buf.Bytes(), []byte("\n")) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// functionLines are the lines the functions write: every log call of the
// source through the functions' logger, the runtime adapter's own lines
// (lambdarun.Handler: stage done, stage failed, a bad event), the
// planner's metric line and a stage's metric line.
func functionLines(t *testing.T) []line {
	t.Helper()
	t.Setenv("AWS_LAMBDA_LOG_LEVEL", "TRACE") // write everything; Lambda filters
	var lines []line
	calls := functionLogCalls(t)
	if len(calls) < 20 {
		t.Fatalf("found only %d log calls in functions/ and shared/: the scan is broken", len(calls))
	}
	for _, c := range calls {
		got := capture(t, func() {
			telemetry.NewLogger("scan").Log(context.Background(), c.level, c.msg, "keyArn", "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
		})
		if len(got) != 1 {
			t.Fatalf("%s: %d lines", c.where, len(got))
		}
		lines = append(lines, line{c.where + " " + c.msg, telemetry.LambdaLevel(c.level), got[0]})
	}

	stage := func(ctx context.Context, s flow.State) (flow.State, error) {
		telemetry.Logger(ctx).Debug("a stage's detail")
		if s.Execution.ID == "fail" {
			return s, flow.Errorf(flow.KeyNotEligible, "key is Disabled")
		}
		return s, nil
	}
	h := lambdarun.Handler("adapter", stage)
	for _, c := range []struct{ event, want string }{
		{`{"execution":{"id":"ok"}}`, "INFO"},
		{`{"execution":{"id":"fail"}}`, "ERROR"},
		{`not json`, "ERROR"},
	} {
		got := capture(t, func() { _, _ = h(context.Background(), json.RawMessage(c.event)) })
		if len(got) == 0 {
			t.Fatalf("lambdarun.Handler(%s) wrote nothing", c.event)
		}
		last := got[len(got)-1] // the adapter's own line; a DEBUG line before it
		lines = append(lines, line{"lambdarun " + c.event, c.want, last})
		if len(got) == 2 {
			lines = append(lines, line{"stage debug", "DEBUG", got[0]})
		}
	}

	days := 3.5
	for _, m := range [][][]byte{
		capture(t, func() { planner.Stats{Scanned: 3, Due: 1, FewestDaysLeft: &days}.EmitMetrics() }),
		capture(t, func() {
			telemetry.Emit(telemetry.Service, telemetry.Metric{Name: "KmsThrottled", Value: 1, Unit: telemetry.Count})
		}),
	} {
		if len(m) != 1 {
			t.Fatalf("a metric emission wrote %d lines", len(m))
		}
		lines = append(lines, line{"metrics", telemetry.MetricLevel, m[0]})
	}
	return lines
}

// TestEveryLineAsLambdaReadsIt: every line the functions write is a JSON
// object with "level" (one of Lambda's) and an RFC 3339 "timestamp", so
// that Lambda's log-level filtering (tests/support/lambdalog, from the
// Lambda guide) gives it the level it was written at; at each
// ApplicationLogLevel, Lambda keeps exactly the lines at or above it.
func TestEveryLineAsLambdaReadsIt(t *testing.T) {
	lines := functionLines(t)
	seen := map[string]bool{}
	for _, l := range lines {
		var doc map[string]any
		if err := json.Unmarshal(l.bytes, &doc); err != nil {
			t.Fatalf("%s: not JSON: %s", l.what, l.bytes)
		}
		ts, _ := doc[telemetry.TimestampKey].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("%s: timestamp %v is not RFC 3339: %s", l.what, doc[telemetry.TimestampKey], l.bytes)
		}
		if _, ok := doc["time"]; ok {
			t.Errorf("%s: slog's \"time\" key is still there: %s", l.what, l.bytes)
		}
		if doc["msg"] == nil {
			t.Errorf("%s: no msg: %s", l.what, l.bytes)
		}
		if got := lambdalog.Level(l.bytes); got != l.want {
			t.Errorf("%s: Lambda reads level %s, written at %s: %s", l.what, got, l.want, l.bytes)
		}
		seen[l.want] = true
		for _, app := range lambdalog.Levels {
			want := slices.Index(lambdalog.Levels, l.want) >= slices.Index(lambdalog.Levels, app)
			if got := lambdalog.Keeps(l.bytes, app); got != want {
				t.Errorf("ApplicationLogLevel %s: %s (%s) kept %v, want %v: %s", app, l.what, l.want, got, want, l.bytes)
			}
		}
	}
	for _, lvl := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
		if !seen[lvl] {
			t.Errorf("no line at %s among %d: the collection misses a kind of line", lvl, len(lines))
		}
	}
	t.Logf("%d lines checked at %v", len(lines), lambdalog.Levels)
}

// TestSlogDefaultLinesReadAsInfo: what the fix is for. slog's own JSON
// lines carry "time", not "timestamp"; Lambda reads each as INFO, so at
// ApplicationLogLevel WARN or ERROR the warnings and errors are dropped,
// and at DEBUG the debug lines pass.
func TestSlogDefaultLinesReadAsInfo(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Error("rotation failed")
	l.Debug("detail")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if lambdalog.Level(lines[0]) != "INFO" || lambdalog.Keeps(lines[0], "ERROR") || lambdalog.Keeps(lines[0], "WARN") {
		t.Errorf("a plain slog ERROR line: Lambda level %s", lambdalog.Level(lines[0]))
	}
	if !lambdalog.Keeps(lines[1], "INFO") {
		t.Errorf("a plain slog DEBUG line is read as INFO and kept at INFO")
	}
	if lambdalog.Level([]byte("plain text")) != "INFO" {
		t.Error("a line that is not JSON is INFO")
	}
}

// TestParseLevel: the function's level from AWS_LAMBDA_LOG_LEVEL (which
// Lambda sets to the ApplicationLogLevel: TRACE and FATAL included) or
// LOG_LEVEL; each written line names a Lambda level.
func TestParseLevel(t *testing.T) {
	cases := []struct {
		values []string
		want   slog.Level
		name   string
	}{
		{[]string{"TRACE"}, telemetry.LevelTrace, "TRACE"},
		{[]string{"debug"}, slog.LevelDebug, "DEBUG"},
		{[]string{"", "WARN"}, slog.LevelWarn, "WARN"},
		{[]string{"ERROR", "DEBUG"}, slog.LevelError, "ERROR"},
		{[]string{"FATAL"}, telemetry.LevelFatal, "FATAL"},
		{[]string{"verbose"}, slog.LevelInfo, "INFO"},
		{nil, slog.LevelInfo, "INFO"},
	}
	for _, c := range cases {
		got := telemetry.ParseLevel(c.values...)
		if got != c.want || telemetry.LambdaLevel(got) != c.name {
			t.Errorf("ParseLevel(%q) = %v (%s), want %v (%s)", c.values, got, telemetry.LambdaLevel(got), c.want, c.name)
		}
	}
	if telemetry.LambdaLevel(slog.LevelWarn+2) != "WARN" || telemetry.LambdaLevel(slog.LevelDebug-1) != "TRACE" {
		t.Error("LambdaLevel of levels between Lambda's")
	}
}

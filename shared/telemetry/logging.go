// Package telemetry is what the product tells its operators: JSON logs
// (logging.go) and CloudWatch metrics (metrics.go).
//
// NewLogger sets up the JSON logs every function writes. Log lines
// carry the key ARN and execution id as fields; nothing in this project
// passes key material or an import token to a logger.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// The keys Lambda's log-level filtering reads in a JSON line (Lambda
// developer guide, "Log-level filtering"): "level", and a timestamp in
// RFC 3339 ("If you don't supply a valid timestamp, Lambda will assign the
// log the level INFO"; the guide's example names it "timestamp"). slog's
// own time key is "time", so every line is rewritten to carry
// TimestampKey instead, and its level is always one of LambdaLogLevels.
const (
	LevelKey     = "level"
	TimestampKey = "timestamp"
)

// Lambda's TRACE and FATAL as slog levels (slog has DEBUG, INFO, WARN and
// ERROR, 4 apart).
const (
	LevelTrace = slog.LevelDebug - 4
	LevelFatal = slog.LevelError + 4
)

// NewLogger returns a JSON logger for function fn, writing where the
// metric lines go (SetOutput). The level comes from AWS_LAMBDA_LOG_LEVEL
// (Lambda's advanced logging controls) or LOG_LEVEL.
func NewLogger(fn string) *slog.Logger {
	return newLogger(writer{}, fn, ParseLevel(os.Getenv("AWS_LAMBDA_LOG_LEVEL"), os.Getenv("LOG_LEVEL")))
}

func newLogger(w io.Writer, fn string, lvl slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl, ReplaceAttr: lambdaAttr})
	return slog.New(h).With("function", fn)
}

// ParseLevel is the first non-empty of values read as a Lambda level
// (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, any case) or a slog level;
// INFO when none is set or valid.
func ParseLevel(values ...string) slog.Level {
	for _, v := range values {
		if v == "" {
			continue
		}
		switch strings.ToUpper(v) {
		case "TRACE":
			return LevelTrace
		case "FATAL":
			return LevelFatal
		}
		var l slog.Level
		if l.UnmarshalText([]byte(v)) == nil {
			return l
		}
		return slog.LevelInfo
	}
	return slog.LevelInfo
}

// LambdaLevel names l as one of LambdaLogLevels: the highest of them at or
// below l (slog's "WARN+2" is WARN), TRACE below DEBUG.
func LambdaLevel(l slog.Level) string {
	switch {
	case l >= LevelFatal:
		return "FATAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARN"
	case l >= slog.LevelInfo:
		return "INFO"
	case l >= slog.LevelDebug:
		return "DEBUG"
	}
	return "TRACE"
}

// lambdaAttr rewrites slog's top-level time and level as Lambda reads
// them: "timestamp" in RFC 3339 (UTC), "level" one of LambdaLogLevels.
func lambdaAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		if t, ok := a.Value.Any().(time.Time); ok {
			return slog.String(TimestampKey, t.UTC().Format(time.RFC3339Nano))
		}
	case slog.LevelKey:
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String(LevelKey, LambdaLevel(l))
		}
	}
	return a
}

// writer sends log lines to the output the metric lines use, one line
// per Write, so that a line never interleaves with a metric line.
type writer struct{}

func (writer) Write(b []byte) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	return out.Write(b)
}

type ctxKey struct{}

// WithLogger stores a logger in ctx.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// Logger returns the logger stored in ctx, or the default one.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

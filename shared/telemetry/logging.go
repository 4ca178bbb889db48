// Package telemetry is what the product tells its operators: JSON logs
// (logging.go) and CloudWatch metrics (metrics.go).
//
// NewLogger sets up the JSON logs every function writes. Log lines
// carry the key ARN and execution id as fields; nothing in this project
// passes key material or an import token to a logger.
package telemetry

import (
	"context"
	"log/slog"
	"os"
)

// NewLogger returns a JSON logger for function fn. The level comes from
// AWS_LAMBDA_LOG_LEVEL (Lambda's advanced logging controls) or LOG_LEVEL.
func NewLogger(fn string) *slog.Logger {
	lvl := slog.LevelInfo
	for _, v := range []string{os.Getenv("AWS_LAMBDA_LOG_LEVEL"), os.Getenv("LOG_LEVEL")} {
		if v != "" {
			_ = lvl.UnmarshalText([]byte(v))
			break
		}
	}
	h := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: lvl})
	return slog.New(h).With("function", fn)
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

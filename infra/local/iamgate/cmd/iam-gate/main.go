// Command iam-gate runs the local stack's IAM gate (infra/local/iamgate):
//
//	iam-gate --config <file>
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kms-reimport/kms-reimport/infra/local/iamgate"
)

func main() {
	path := flag.String("config", "", "the gate's configuration (JSON, written by the local stack)")
	flag.Parse()
	b, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "iam-gate:", err)
		os.Exit(2)
	}
	var cfg iamgate.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "iam-gate: %s: %v\n", *path, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := iamgate.New(cfg, log).Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "iam-gate:", err)
		os.Exit(1)
	}
}

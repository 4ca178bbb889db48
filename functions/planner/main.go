// Command planner is the first state of the fleet state machine: it pages
// through the registry and returns the keys due for renewal.
package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

func main() {
	c := settings.MustInit("planner")
	size, _ := strconv.Atoi(os.Getenv("PLANNER_PAGE_SIZE"))
	conc, _ := strconv.Atoi(os.Getenv("MAX_CONCURRENCY"))
	p := &planner.Planner{Registry: &registry.Store{DB: c.DynamoDB, Table: c.Settings.Table}, PageSize: int32(size), MaxConcurrency: conc}
	log := telemetry.NewLogger("planner")
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (planner.State, error) {
		out, err := p.Plan(telemetry.WithLogger(ctx, log), planner.Decode(raw))
		if err == nil && out.Next == "" {
			out.Stats.EmitMetrics()
		}
		return out, lambdarun.Named(err)
	})
}

// Command planner is the first state of the fleet state machine: it pages
// through the registry and returns the keys due for renewal.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

const name = "planner"

func main() {
	c := settings.MustInit(name)
	stage := &planner.Stage{Registry: c.Registry, PageSize: int32(c.Settings.PlannerPageSize), MaxConcurrency: c.Settings.MaxConcurrency}
	lambdarun.Start(name, stage.Run)
}

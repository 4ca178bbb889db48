// Command planner is the first state of the fleet state machine: it pages
// through the registry, reconciles each key with KMS and returns the keys
// due for renewal.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
)

const name = "planner"

func main() {
	c := settings.MustInit(name)
	s := c.Settings
	stage := &planner.Stage{Registry: c.Registry, PageSize: int32(s.PlannerPageSize), MaxConcurrency: s.MaxConcurrency,
		KMS: kmsaccess.Describing{Regional: c.KMS}, Pace: &planner.Pacer{Rate: s.KMSReadRate},
		Notify:   &planner.Notifier{SNS: c.SNS, Topic: s.AlertTopic, Marks: &planner.DynamoMarks{DB: c.Registry.DB, Table: s.Table}},
		Replicas: c.Registry, AlarmDays: s.ExpiryAlarmDays}
	lambdarun.Start(name, stage.Run)
}

// Command planner is the first state of the fleet state machine: it pages
// through the registry, reconciles each key with KMS and returns the keys
// due for renewal. With ADOPT_TAG set, a run's first page discovers and
// adopts tagged keys first (planner.Discovery).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

const name = "planner"

// discoveryReserve is the time a first page keeps for the registry page
// after discovery (the function's Timeout is 60 s).
const discoveryReserve = 20 * time.Second

// pageReserve is the end of an invocation a page's KMS reads leave for
// writing the page out (the rest of the registry page goes to the next).
const pageReserve = 10 * time.Second

func main() {
	c := settings.MustInit(name)
	s := c.Settings
	stage := &planner.Stage{Registry: c.Registry, PageSize: int32(s.PlannerPageSize), MaxConcurrency: s.MaxConcurrency,
		KMS: kmsaccess.Describing{Regional: c.KMS}, Pace: &planner.Pacer{Rate: s.KMSReadRate},
		Notify:   &planner.Notifier{SNS: c.SNS, Topic: s.AlertTopic, Marks: &planner.DynamoMarks{DB: c.Registry.DB, Table: s.Table}},
		Replicas: c.Registry, AlarmDays: s.ExpiryAlarmDays, Reserve: pageReserve}
	d, err := settings.DiscoveryFromEnv()
	if err != nil {
		telemetry.NewLogger(name).Error("configuration", "error", err.Error())
		os.Exit(1)
	}
	if d.On {
		stage.Discovery = discovery(c, d)
	}
	lambdarun.Start(name, stage.Run)
}

// discovery is the discovery step of this deployment: its served accounts
// (its own when ACCOUNT_ID is not set) in its Region.
func discovery(c *settings.Clients, d settings.Discovery) *planner.Discovery {
	s := c.Settings
	accounts := s.Accounts
	if len(accounts) == 0 {
		accounts = []string{s.Account}
	}
	return &planner.Discovery{
		Selector: d.Selector,
		Rules:    planner.AdoptRules{SecretTag: d.SecretTag, Pattern: d.Pattern, Policy: d.Policy, Options: s.RequestOptions(), Deployment: d.Deployment},
		Accounts: accounts, Region: s.Region,
		KMS: func(account, region string) planner.DiscoveryAPI {
			// A key ARN of the account names its clients (the member role's
			// for a member account).
			arn := fmt.Sprintf("arn:%s:kms:%s:%s:key/discovery", kmsaccess.PartitionOfRegion(region), region, account)
			return c.KMS.KeyIn(arn, region).(planner.DiscoveryAPI)
		},
		Secrets: c.Secrets, Store: c.Registry, Reserve: discoveryReserve,
	}
}

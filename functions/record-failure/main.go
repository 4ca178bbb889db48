// Command record-failure runs from every Catch of the state machine: it
// writes the failed import record and abandons an unused token.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/recordfailure"
)

func main() {
	c := settings.MustInit("record-failure")
	stage := &recordfailure.Stage{Audit: c.Audit, Tokens: c.Tokens, Registry: c.Registry, Leases: c.Leases, Notify: c.SNS, Topic: c.Settings.AlertTopic}
	lambdarun.Start("record-failure", stage.Run)
}

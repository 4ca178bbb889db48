// Command record-failure runs from every Catch of the state machine: it
// writes the failed import record and abandons an unused token.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/recordfailure"
)

const name = "record-failure"

func main() {
	c := settings.MustInit(name)
	stage := &recordfailure.Stage{KMS: kmsaccess.Describing{Regional: c.KMS}, Audit: c.Imports, Failures: c.Failures, Tokens: c.Tokens, Registry: c.Registry, Leases: c.Leases, Notify: c.SNS, Topic: c.Settings.AlertTopic}
	lambdarun.Start(name, stage.Run)
}

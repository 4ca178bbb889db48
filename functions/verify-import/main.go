// Command verify-import is the last stage of a rotation: rotate when asked,
// prove the key is Enabled with the asked expiry and works, then write the
// import record.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/verifyimport"
)

const name = "verify-import"

func main() {
	c := settings.MustInit(name)
	stage := &verifyimport.Stage{KMS: c.KMS, Secrets: c.Secrets, Audit: c.Imports, Tokens: c.Tokens, Leases: c.Leases, Materials: c.Materials, Registry: c.Registry, MaxChecks: c.Settings.VerifyMaxChecks}
	lambdarun.Start(name, stage.Run)
}

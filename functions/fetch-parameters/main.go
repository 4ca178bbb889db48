// Command fetch-parameters is the first stage of a rotation: validate the
// request, check key and materials, plan the imports, GetParametersForImport
// for the current one, record the token.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/fetchparameters"
)

const name = "fetch-parameters"

func main() {
	c := settings.MustInit(name)
	stage := &fetchparameters.Stage{KMS: c.KMS, Secrets: c.Secrets, Tokens: c.Tokens, Leases: c.Leases, Materials: c.Materials, Settings: c.Settings}
	lambdarun.Start(name, stage.Run)
}

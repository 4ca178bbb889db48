// Command fetch-parameters is the first stage of a rotation: validate the
// request, check key and material, GetParametersForImport, record the token.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/fetchparameters"
)

func main() {
	c := settings.MustInit("fetch-parameters")
	stage := &fetchparameters.Stage{KMS: c.KMS, Secrets: c.Secrets, Tokens: c.Tokens, Leases: c.Leases, Settings: c.Settings,
		Materials: &records.Materials{DB: c.DynamoDB, Table: c.Settings.Table}, SecretWriter: c.Secrets, Regions: kmsaccess.MustFromEnv("fetch-parameters")}
	lambdarun.Start("fetch-parameters", stage.Run)
}

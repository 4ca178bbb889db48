// Command fetch-parameters is the first stage of a rotation: validate the
// request, check key and material, GetParametersForImport, record the token.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/importparams"
	"github.com/kms-reimport/kms-reimport/shared/kmsregions"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/materials"
	"github.com/kms-reimport/kms-reimport/shared/settings"
)

func main() {
	c := settings.MustInit("fetch-parameters")
	stage := &importparams.Stage{KMS: c.KMS, Secrets: c.Secrets, Tokens: c.Tokens, Leases: c.Leases, Settings: c.Settings,
		Materials: &materials.Store{DB: c.DynamoDB, Table: c.Settings.Table}, SecretWriter: c.Secrets, Regions: kmsregions.MustFromEnv("fetch-parameters")}
	lambdarun.Start("fetch-parameters", stage.Run)
}

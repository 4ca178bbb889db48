// Command import-material is the third stage of a rotation: ImportKeyMaterial
// with the wrapped material, if the token has enough validity left.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/importmaterial"
)

func main() {
	c := settings.MustInit("import-material")
	stage := &importmaterial.Stage{KMS: c.KMS, Tokens: c.Tokens, MinTokenValidity: c.Settings.MinTokenValidity,
		Materials: &records.Materials{DB: c.DynamoDB, Table: c.Settings.Table}, Regions: kmsaccess.MustFromEnv("import-material")}
	lambdarun.Start("import-material", stage.Run)
}

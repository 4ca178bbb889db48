// Command import-material is the third stage of a rotation: ImportKeyMaterial
// with the wrapped material, if the token has enough validity left.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/importing"
	"github.com/kms-reimport/kms-reimport/shared/kmsregions"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/materials"
	"github.com/kms-reimport/kms-reimport/shared/settings"
)

func main() {
	c := settings.MustInit("import-material")
	stage := &importing.Stage{KMS: c.KMS, Tokens: c.Tokens, MinTokenValidity: c.Settings.MinTokenValidity,
		Materials: &materials.Store{DB: c.DynamoDB, Table: c.Settings.Table}, Regions: kmsregions.MustFromEnv("import-material")}
	lambdarun.Start("import-material", stage.Run)
}

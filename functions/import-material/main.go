// Command import-material is the third stage of a rotation: ImportKeyMaterial
// with the wrapped material, if the token has enough validity left.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/importmaterial"
)

const name = "import-material"

func main() {
	c := settings.MustInit(name)
	stage := &importmaterial.Stage{KMS: c.KMS, Tokens: c.Tokens, Materials: c.Materials, Leases: c.Leases, MinTokenValidity: c.Settings.MinTokenValidity}
	lambdarun.Start(name, stage.Run)
}

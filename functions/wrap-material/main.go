// Command wrap-material is the second stage of a rotation: wrap the secret's
// key material with the token record's public key.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/wrapmaterial"
)

const name = "wrap-material"

func main() {
	c := settings.MustInit(name)
	stage := &wrapmaterial.Stage{Secrets: c.Secrets, Tokens: c.Tokens}
	lambdarun.Start(name, stage.Run)
}

// Command verify-import is the last stage of a rotation: prove the key is
// Enabled with the asked expiry and works, then write the import record.
package main

import (
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/lambdarun"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/settings"
	"github.com/kms-reimport/kms-reimport/shared/stages/verifyimport"
)

func main() {
	c := settings.MustInit("verify-import")
	stage := &verifyimport.Stage{KMS: c.KMS, Secrets: c.Secrets, Audit: c.Audit, Registry: c.Registry, Leases: c.Leases, Tokens: c.Tokens,
		Rotator: c.KMS, Materials: &records.Materials{DB: c.DynamoDB, Table: c.Settings.Table}, Regions: kmsaccess.MustFromEnv("verify-import")}
	lambdarun.Start("verify-import", stage.Run)
}

package rotation

import (
	"context"
	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
	"github.com/kms-reimport/kms-reimport/tests/support/kmswait"
)

// firstImport imports the secret's AWSCURRENT material on the
// one-item plan and returns its KeyMaterialId.
func firstImport(t *testing.T, arn, name string) string {
	t.Helper()
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h"})
	mustSucceed(t, r)
	if got := ops(r.reqs); got != "DescribeKey,GetParametersForImport,ImportKeyMaterial,DescribeKey,ListKeyRotations,Encrypt,Decrypt" {
		t.Fatalf("first import: KMS requests %s", got)
	}
	rots := rotations(t, arn)
	if len(rots) != 1 {
		t.Fatalf("after the first import: %d materials", len(rots))
	}
	return *rots[0].KeyMaterialId
}

// polls matches the verify stage's reads while it waits for KMS: how many
// passes a rotation takes depends on timing, not on the product.
const polls = "(?:(?:GetKeyRotationStatus|ListKeyRotations|DescribeKey),)+"

func imports(reqs []kmsstandin.Request) []map[string]any {
	var out []map[string]any
	for _, r := range reqs {
		if r.Operation == "ImportKeyMaterial" {
			out = append(out, r.Params)
		}
	}
	return out
}

// TestRotationGenerated: rotate with product-generated material; the
// material is stored as a new secret version before it is imported, then
// imported as NEW_KEY_MATERIAL and made current with RotateKeyOnDemand.
func TestRotationGenerated(t *testing.T) {
	arn := externalKey(t, false)
	name, v1 := secret(t)
	id1 := firstImport(t, arn, name)
	valid := vt(30 * 24 * time.Hour)

	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validTo": valid.Format(time.RFC3339), "rotate": true, "generateMaterial": true})
	mustSucceed(t, r)
	want := "^DescribeKey,ListKeyRotations," +
		"GetParametersForImport,ImportKeyMaterial," + // the existing material, renewed
		"GetParametersForImport,ImportKeyMaterial," + // the new one
		"GetKeyRotationStatus,ListKeyRotations,RotateKeyOnDemand," + // started, not finished:
		"GetKeyRotationStatus," + polls + // polled (after Waits) until KMS finishes it and reads show it
		"Encrypt,Decrypt$"
	if got := ops(r.reqs); !regexp.MustCompile(want).MatchString(got) {
		t.Fatalf("KMS requests\n %s\nwant\n %s", got, want)
	}
	imp := imports(r.reqs)
	if imp[0]["ImportType"] != "EXISTING_KEY_MATERIAL" || imp[0]["KeyMaterialId"] != id1 || imp[0]["ValidTo"] != valid.Format(time.RFC3339Nano) {
		t.Errorf("first ImportKeyMaterial %v, want EXISTING_KEY_MATERIAL of %s to %s", imp[0], id1, valid)
	}
	if imp[1]["ImportType"] != "NEW_KEY_MATERIAL" || imp[1]["KeyMaterialId"] != nil {
		t.Errorf("second ImportKeyMaterial %v, want NEW_KEY_MATERIAL without KeyMaterialId", imp[1])
	}
	// The generated material is a new secret version, labelled.
	versions := versionIDs(t, name)
	if len(versions) != 2 {
		t.Fatalf("secret versions %v, want the original and one generated", versions)
	}
	gen, err := sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: &name, VersionStage: aws.String("KMSREIMPORT_NEW")})
	if err != nil || len(gen.SecretBinary) != 32 || *gen.VersionId == v1 {
		t.Fatalf("generated version: %v %v", err, gen)
	}
	S.Secret(gen.SecretBinary)
	// KMS: two materials, the new one current.
	rots := rotations(t, arn)
	var id2 string
	for _, e := range rots {
		if *e.KeyMaterialId != id1 {
			id2 = *e.KeyMaterialId
			if e.KeyMaterialState != types.KeyMaterialStateCurrent {
				t.Errorf("new material is %s, want CURRENT", e.KeyMaterialState)
			}
		}
		if e.ImportState != types.ImportStateImported || !e.ValidTo.Equal(valid) {
			t.Errorf("material %s: %s to %v, want IMPORTED to %s", *e.KeyMaterialId, e.ImportState, e.ValidTo, valid)
		}
	}
	// The material map and the audit trail name each material's version.
	mm := materialMap(t, arn)
	if mm[id1].SecretVersionID != v1 || mm[id1].State != records.MaterialNonCurrent || mm[id2].SecretVersionID != *gen.VersionId || mm[id2].State != records.MaterialCurrent || !mm[id2].Generated {
		t.Errorf("material map %+v", mm)
	}
	rec := lastAudit(t, arn)
	if !rec.Rotated || rec.NewMaterialID != id2 || len(rec.Materials) != 2 ||
		rec.Materials[0].KeyMaterialID != id1 || rec.Materials[0].SecretVersionID != v1 || rec.Materials[0].Region != "eu-west-2" ||
		rec.Materials[1].KeyMaterialID != id2 || rec.Materials[1].SecretVersionID != *gen.VersionId || rec.Materials[1].ImportType != "NEW_KEY_MATERIAL" {
		t.Errorf("audit record: rotated %v new %s materials %+v", rec.Rotated, rec.NewMaterialID, rec.Materials)
	}
}

// rotateWith runs a rotation from the user's AWSPENDING version.
func rotateWith(t *testing.T, arn, name string) string {
	t.Helper()
	v := putVersion(t, name, "AWSPENDING")
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "newMaterialStage": "AWSPENDING"})
	mustSucceed(t, r)
	return v
}

// TestRenewThreeMaterials: a key with three materials (the first import,
// a rotation from the user's AWSPENDING version, a generated one) is
// renewed: all three are reimported, each from its own secret version.
func TestRenewThreeMaterials(t *testing.T) {
	arn := externalKey(t, false)
	name, v1 := secret(t)
	id1 := firstImport(t, arn, name)
	v2 := rotateWith(t, arn, name)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	mustSucceed(t, r)
	mm := materialMap(t, arn)
	if len(mm) != 3 {
		t.Fatalf("material map has %d materials, want 3: %+v", len(mm), mm)
	}
	byVersion := map[string]string{}
	for id, rec := range mm {
		byVersion[rec.SecretVersionID] = id
	}
	if byVersion[v1] != id1 || byVersion[v2] == "" {
		t.Fatalf("material map %+v: want %s for %s and a material for %s", mm, id1, v1, v2)
	}

	valid := vt(60 * 24 * time.Hour)
	r = execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validTo": valid.Format(time.RFC3339)})
	mustSucceed(t, r)
	want := "DescribeKey,ListKeyRotations," + strings.Repeat("GetParametersForImport,ImportKeyMaterial,", 3) + "DescribeKey,ListKeyRotations,Encrypt,Decrypt"
	if got := ops(r.reqs); got != want {
		t.Fatalf("KMS requests\n %s\nwant\n %s", got, want)
	}
	var got []string
	for _, p := range imports(r.reqs) {
		if p["ImportType"] != "EXISTING_KEY_MATERIAL" || p["ValidTo"] != valid.Format(time.RFC3339Nano) {
			t.Errorf("ImportKeyMaterial %v, want EXISTING_KEY_MATERIAL to %s", p, valid)
		}
		got = append(got, p["KeyMaterialId"].(string))
	}
	var all []string
	for id := range mm {
		all = append(all, id)
	}
	slices.Sort(got)
	slices.Sort(all)
	if !slices.Equal(got, all) {
		t.Errorf("reimported %v, want every material %v", got, all)
	}
	// Each from its own version: the audit record pairs them, and KMS took
	// each (it refuses material that is not the one named).
	rec := lastAudit(t, arn)
	if len(rec.Materials) != 3 {
		t.Fatalf("audit materials %+v", rec.Materials)
	}
	for _, m := range rec.Materials {
		if mm[m.KeyMaterialID].SecretVersionID != m.SecretVersionID || m.ValidTo == nil || !m.ValidTo.Equal(valid) {
			t.Errorf("audit material %+v, want version %s", m, mm[m.KeyMaterialID].SecretVersionID)
		}
	}
	for _, e := range rotations(t, arn) {
		if e.ImportState != types.ImportStateImported || !e.ValidTo.Equal(valid) {
			t.Errorf("material %s: %s to %v, want IMPORTED to %s", *e.KeyMaterialId, e.ImportState, e.ValidTo, valid)
		}
	}
	d, _ := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if d.KeyMetadata.KeyState != types.KeyStateEnabled || !d.KeyMetadata.ValidTo.Equal(valid) {
		t.Errorf("key %s to %v", d.KeyMetadata.KeyState, d.KeyMetadata.ValidTo)
	}
}

// TestMissingSecretVersionNamesMaterial: a material whose secret version
// is gone fails the renewal loudly, naming the material, before any token.
func TestMissingSecretVersionNamesMaterial(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	rotateWith(t, arn, name)
	// Forget a material's version: the map now points nowhere.
	mm := materialMap(t, arn)
	var lost records.Material
	for _, rec := range mm {
		if rec.State == records.MaterialNonCurrent {
			lost = rec
		}
	}
	lost.SecretVersionID = "00000000-0000-4000-8000-000000000000"
	if err := (&records.Materials{DB: db, Table: st.Table}).Put(context.Background(), lost); err != nil {
		t.Fatal(err)
	}
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h"})
	if r.ex.Status != "FAILED" || r.ex.Error != "MaterialSecretMissing" || !strings.Contains(r.ex.Cause, lost.KeyMaterialID[:16]) {
		t.Fatalf("execution %s %s: %s; want MaterialSecretMissing naming %s", r.ex.Status, r.ex.Error, r.ex.Cause, lost.KeyMaterialID)
	}
	if got := ops(r.reqs); got != "DescribeKey,ListKeyRotations" {
		t.Errorf("KMS requests %s: want no token asked for", got)
	}
}

// TestResumeAfterFailureBeforeRotate: RotateKeyOnDemand fails (throttled
// past every retry) after NEW_KEY_MATERIAL was imported; the next run sees
// the material pending rotation and in the map, and only rotates: no new
// material, no new secret version, no import.
func TestResumeAfterFailureBeforeRotate(t *testing.T) {
	arn := externalKey(t, false)
	name, _ := secret(t)
	firstImport(t, arn, name)
	fault(t, "RotateKeyOnDemand", "ThrottlingException", 1000)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	fault(t, "", "", 0)
	if r.ex.Status != "FAILED" || r.ex.Error != "AWSTransient" {
		t.Fatalf("first run %s %s: %s; want FAILED with AWSTransient", r.ex.Status, r.ex.Error, r.ex.Cause)
	}
	if n := strings.Count(ops(r.reqs), "ImportKeyMaterial"); n != 2 {
		t.Fatalf("first run imported %d times, want 2 (existing, new): %s", n, ops(r.reqs))
	}
	var pending string
	for _, e := range rotations(t, arn) {
		if e.KeyMaterialState == types.KeyMaterialStatePendingRotation {
			pending = *e.KeyMaterialId
		}
	}
	if pending == "" || materialMap(t, arn)[pending].State != records.MaterialPendingRotation {
		t.Fatalf("after the failure: pending material %q, map %+v", pending, materialMap(t, arn))
	}
	versions := versionIDs(t, name)

	r = execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	mustSucceed(t, r)
	want := "^DescribeKey,ListKeyRotations,GetKeyRotationStatus,ListKeyRotations,RotateKeyOnDemand,GetKeyRotationStatus," + polls + "Encrypt,Decrypt$"
	if got := ops(r.reqs); !regexp.MustCompile(want).MatchString(got) {
		t.Fatalf("resumed run: KMS requests\n %s\nwant\n %s", got, want)
	}
	if v := versionIDs(t, name); len(v) != len(versions) {
		t.Errorf("secret versions %v -> %v: the resumed run generated material again", versions, v)
	}
	rots := rotations(t, arn)
	if len(rots) != 2 {
		t.Errorf("%d materials, want 2", len(rots))
	}
	for _, e := range rots {
		if *e.KeyMaterialId == pending && e.KeyMaterialState != types.KeyMaterialStateCurrent {
			t.Errorf("pending material is %s after the resumed run", e.KeyMaterialState)
		}
	}
	rec := lastAudit(t, arn)
	if !rec.Resumed || !rec.Rotated || rec.NewMaterialID != pending || len(rec.Materials) != 0 {
		t.Errorf("audit record: resumed %v rotated %v new %s materials %+v", rec.Resumed, rec.Rotated, rec.NewMaterialID, rec.Materials)
	}
	if materialMap(t, arn)[pending].State != records.MaterialCurrent {
		t.Errorf("material map: %+v", materialMap(t, arn)[pending])
	}
}

// TestRotationRefusedForHMAC: HMAC keys hold one material for life.
func TestRotationRefusedForHMAC(t *testing.T) {
	out, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: types.OriginTypeExternal, KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	if err != nil {
		t.Fatal(err)
	}
	arn := *out.KeyMetadata.Arn
	if err := kmswait.Visible(context.Background(), kc, arn); err != nil {
		t.Fatal(err)
	}
	name, _ := secret(t)
	r := execute(t, arn, map[string]any{"keyId": arn, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true})
	if r.ex.Status != "FAILED" || r.ex.Error != "RotationNotSupported" || ops(r.reqs) != "DescribeKey" {
		t.Fatalf("execution %s %s: %s; requests %s", r.ex.Status, r.ex.Error, r.ex.Cause, ops(r.reqs))
	}
}

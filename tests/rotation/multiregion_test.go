package rotation

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/stages/planner"
	"github.com/kms-reimport/kms-reimport/tests/support/kmsstandin"
)

// mrk creates a multi-Region EXTERNAL primary on the stand-in and
// replicates it to every replica Region (the stand-in serves each on its
// own endpoint, reached through KMS_ENDPOINTS_BY_REGION), waiting, as a
// user of AWS must, until each replica exists and the primary lists it.
func mrk(t *testing.T) (primary string, replicas map[string]string) {
	t.Helper()
	ctx := context.Background()
	primary = externalKey(t, true)
	replicas = map[string]string{}
	for _, region := range replicaRegions {
		out, err := kc.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &primary, ReplicaRegion: &region, Tags: stack.ManagedKeyTags()})
		if err != nil {
			t.Fatalf("ReplicateKey to %s: %v", region, err)
		}
		arn := *out.ReplicaKeyMetadata.Arn
		// A new replica is Creating until the primary's properties reach it.
		rc := regionalKMS(t, region)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			md, err := rc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
			if err == nil && md.KeyMetadata.KeyState == types.KeyStatePendingImport {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s in %s never became PendingImport: %v", arn, region, err)
			}
		}
		replicas[region] = arn
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		d, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &primary})
		if err == nil && d.KeyMetadata.MultiRegionConfiguration != nil && len(d.KeyMetadata.MultiRegionConfiguration.ReplicaKeys) == len(replicaRegions) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the primary never listed its %d replicas: %v", len(replicaRegions), err)
		}
	}
	return primary, replicas
}

// requestsIn reads the request log of a replica Region's endpoint.
func requestsIn(t *testing.T, region, arn string) []kmsstandin.Request {
	t.Helper()
	resp, err := http.Get(st.RegionKMS[region] + "/_standin/requests?keyArn=" + arn)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Requests []kmsstandin.Request }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Requests
}

// TestMultiRegionRotationReplicasLearnLate: rotating a multi-Region key
// imports NEW_KEY_MATERIAL into the primary, then the same material into
// each replica, which learns the new KeyMaterialId only after a delay
// (multi-Region properties are synchronised asynchronously): its refusal
// is ReplicaNotSynced, retried with backoff. The new material is
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION until every replica has it;
// then the primary rotates, and verify waits for the rotation to finish.
func TestMultiRegionRotationReplicasLearnLate(t *testing.T) {
	primary, replicas := mrk(t)
	name, _ := secret(t)
	mustSucceed(t, executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "720h", "wrappingKeySpec": "RSA_2048"}, "0.04"))
	time.Sleep(500 * time.Millisecond) // the first import reached every replica
	before := map[string]int{}
	for region, arn := range replicas {
		before[region] = len(requestsIn(t, region, arn))
	}
	r := executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true, "wrappingKeySpec": "RSA_2048"}, "0.04")
	mustSucceed(t, r)
	var newID string
	for _, e := range rotations(t, primary) {
		if e.KeyMaterialState == types.KeyMaterialStateCurrent {
			newID = *e.KeyMaterialId
		}
	}
	rec := lastAudit(t, primary)
	if !rec.Rotated || rec.NewMaterialID == "" || rec.NewMaterialID != newID {
		t.Fatalf("audit: rotated %v new %s; KMS current %s", rec.Rotated, rec.NewMaterialID, newID)
	}
	late := 0
	for region, arn := range replicas {
		reqs := requestsIn(t, region, arn)[before[region]:]
		imported := false
		for _, q := range reqs {
			switch {
			case q.Operation == "ImportKeyMaterial" && q.Error == "IncorrectKeyMaterialException":
				late++
			case q.Operation == "ImportKeyMaterial" && q.Error == "" && q.Params["KeyMaterialId"] == newID:
				imported = true
			}
		}
		if !imported {
			t.Errorf("replica %s in %s: the new material %s was not imported: %v", arn, region, newID, reqs)
		}
		out, err := regionalKMS(t, region).ListKeyRotations(context.Background(), &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range out.Rotations {
			found = found || (*e.KeyMaterialId == newID && e.ImportState == types.ImportStateImported)
		}
		if !found {
			t.Errorf("replica %s does not list the new material %s as imported", arn, newID)
		}
	}
	retried := 0
	for _, s := range r.ex.States {
		if s.Name == "ImportKeyMaterial" && s.Error == "ReplicaNotSynced" {
			retried++
		}
	}
	if late == 0 || retried != late {
		t.Errorf("%d replica imports refused as not yet synchronised, %d retried as ReplicaNotSynced: want at least one, each retried", late, retried)
	}
	if waits(r) == 0 {
		t.Errorf("no wait between verify passes: the rotation's completion was not waited for")
	}
}

func replicaState(t *testing.T, region, arn string) *types.KeyMetadata {
	t.Helper()
	d, err := regionalKMS(t, region).DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		t.Fatal(err)
	}
	return d.KeyMetadata
}

// TestMultiRegionFanOutAndReplicaDueAlone: the first import of a
// multi-Region key goes to the primary (stand-in, eu-west-2) and the same
// material to each replica (eu-west-1 and eu-west-3, on the stand-in's
// endpoints for those Regions), each through the client of its Region. Then one replica is
// due before the primary: the planner renews it alone.
func TestMultiRegionFanOutAndReplicaDueAlone(t *testing.T) {
	primary, replicas := mrk(t)
	name, version := secret(t)
	valid := vt(30 * 24 * time.Hour)
	r := executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validTo": valid.Format(time.RFC3339),
		"register": true, "renewBefore": "7d", "wrappingKeySpec": "RSA_2048"}, "0.04")
	mustSucceed(t, r)
	want := "DescribeKey,ListKeyRotations,GetParametersForImport,ImportKeyMaterial,DescribeKey,ListKeyRotations,Encrypt,Decrypt"
	if got := ops(r.reqs); got != want {
		t.Fatalf("primary's KMS requests\n %s\nwant\n %s", got, want)
	}
	if p := imports(r.reqs)[0]; p["ImportType"] != nil || p["ValidTo"] != valid.Format(time.RFC3339Nano) {
		t.Errorf("primary's first ImportKeyMaterial %v: want no ImportType (a first import), ValidTo %s", p, valid)
	}
	for region, arn := range replicas {
		md := replicaState(t, region, arn)
		if md.KeyState != types.KeyStateEnabled || md.ValidTo == nil || !md.ValidTo.Equal(valid) {
			t.Errorf("replica in %s: %s to %v, want Enabled to %s", region, md.KeyState, md.ValidTo, valid)
		}
	}
	rec := lastAudit(t, primary)
	var regions []string
	for _, m := range rec.Materials {
		regions = append(regions, m.Region)
		if m.SecretVersionID != version || m.KeyMaterialID != rec.Materials[0].KeyMaterialID {
			t.Errorf("audit material %+v: want version %s, one material", m, version)
		}
	}
	if !slices.Equal(regions, []string{"eu-west-2", "eu-west-1", "eu-west-3"}) {
		t.Errorf("audit materials in %v, want the primary then each replica", regions)
	}
	reg := &registry.Store{DB: db, Table: st.Table}
	e, err := reg.Get(context.Background(), primary)
	if err != nil || len(e.Replicas) != 2 {
		t.Fatalf("registry entry %+v: %v", e, err)
	}

	// eu-west-1 renewed for 3 days only: it is now due before the primary.
	short := vt(3 * 24 * time.Hour)
	r = execute(t, primary, map[string]any{"keyId": primary, "secretId": name, "validTo": short.Format(time.RFC3339), "regions": []string{"eu-west-1"}, "wrappingKeySpec": "RSA_2048"})
	mustSucceed(t, r)
	if md := replicaState(t, "eu-west-1", replicas["eu-west-1"]); !md.ValidTo.Equal(short) {
		t.Fatalf("eu-west-1 ValidTo %v, want %s", md.ValidTo, short)
	}
	p := &planner.Stage{Registry: reg, PageSize: 1000}
	var item *planner.Item
	for next := ""; ; {
		out, err := p.Plan(context.Background(), planner.State{Next: next})
		if err != nil {
			t.Fatal(err)
		}
		for i := range out.Items {
			if out.Items[i].KeyID == primary {
				item = &out.Items[i]
			}
		}
		if next = out.Next; next == "" {
			break
		}
	}
	if item == nil || !slices.Equal(item.Regions, []string{"eu-west-1"}) || item.Rotate {
		t.Fatalf("planner item %+v: want the key with regions [eu-west-1]", item)
	}
	in := map[string]any{"keyId": item.KeyID, "secretId": item.SecretID, "validFor": item.ValidFor, "renewBefore": item.RenewBefore, "regions": item.Regions,
		"wrappingAlgorithm": item.WrappingAlgorithm, "wrappingKeySpec": item.WrappingKeySpec}
	r = execute(t, primary, in)
	mustSucceed(t, r)
	// Reads only (the fetch stage's and the verify stage's, which read the
	// same and so count once), then the round trip.
	if got := ops(r.reqs); got != "DescribeKey,ListKeyRotations,Encrypt,Decrypt" {
		t.Errorf("primary's KMS requests %s: the primary is not due and must not be imported into", got)
	}
	md1 := replicaState(t, "eu-west-1", replicas["eu-west-1"])
	md3 := replicaState(t, "eu-west-3", replicas["eu-west-3"])
	if !md1.ValidTo.After(short) || !md3.ValidTo.Equal(valid) {
		t.Errorf("after the planned run: eu-west-1 to %v (want renewed past %s), eu-west-3 to %v (want untouched %s)", md1.ValidTo, short, md3.ValidTo, valid)
	}
	d, _ := kc.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: &primary})
	if !d.KeyMetadata.ValidTo.Equal(valid) {
		t.Errorf("primary ValidTo %v, want untouched %s", d.KeyMetadata.ValidTo, valid)
	}
	rec = lastAudit(t, primary)
	if len(rec.Materials) != 1 || rec.Materials[0].Region != "eu-west-1" || rec.Materials[0].ImportType != "EXISTING_KEY_MATERIAL" {
		t.Errorf("audit materials %+v, want one import into eu-west-1", rec.Materials)
	}
	e, _ = reg.Get(context.Background(), primary)
	for _, rp := range e.Replicas {
		if rp.Region == "eu-west-1" && !rp.ValidTo.Equal(*md1.ValidTo) {
			t.Errorf("registry replica %+v, want ValidTo %v", rp, md1.ValidTo)
		}
	}
}

// TestResumedMultiRegionRotationVerified: RotateKeyOnDemand fails (throttled
// past every retry) after the new material was imported into the primary
// and both replicas. The next run resumes: it imports the new material
// into each replica again, with a later ValidTo than the earlier run gave
// the replica's other material, and rotates. A replica's ValidTo is "the
// earliest time at which any imported key material permanently associated
// with this KMS key expires" (KeyMetadata.ValidTo, SDK kms v1.62.6), so
// it is not the ValidTo just imported: verification must accept the
// earliest of the replica's materials, and the run succeeds.
func TestResumedMultiRegionRotationVerified(t *testing.T) {
	primary, replicas := mrk(t)
	name, _ := secret(t)
	mustSucceed(t, executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "720h", "wrappingKeySpec": "RSA_2048"}, "0.04"))
	time.Sleep(500 * time.Millisecond) // the first import reached every replica
	fault(t, "RotateKeyOnDemand", "ThrottlingException", 1000)
	r := executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "600h", "rotate": true, "generateMaterial": true, "wrappingKeySpec": "RSA_2048"}, "0.04")
	fault(t, "", "", 0)
	if r.ex.Status != "FAILED" || r.ex.Error != "AWSTransient" {
		t.Fatalf("first rotation %s %s: %s; want FAILED with AWSTransient", r.ex.Status, r.ex.Error, r.ex.Cause)
	}
	r = executeScaled(t, primary, map[string]any{"keyId": primary, "secretId": name, "validFor": "720h", "rotate": true, "generateMaterial": true, "wrappingKeySpec": "RSA_2048"}, "0.04")
	mustSucceed(t, r)
	rec := lastAudit(t, primary)
	if !rec.Resumed || !rec.Rotated {
		t.Fatalf("audit record: resumed %v rotated %v; want a resumed rotation", rec.Resumed, rec.Rotated)
	}
	reimported := map[string]time.Time{}
	for _, m := range rec.Materials {
		if m.ValidTo != nil {
			reimported[m.KeyARN] = *m.ValidTo
		}
	}
	verified := map[string]*time.Time{}
	for _, g := range rec.Regions {
		verified[g.KeyARN] = g.ValidTo
	}
	for region, arn := range replicas {
		md := replicaState(t, region, arn)
		out, err := regionalKMS(t, region).ListKeyRotations(context.Background(), &kms.ListKeyRotationsInput{KeyId: &arn, IncludeKeyMaterial: types.IncludeKeyMaterialAllKeyMaterial})
		if err != nil {
			t.Fatal(err)
		}
		var earliest *time.Time
		for _, e := range out.Rotations {
			if e.ValidTo != nil && (earliest == nil || e.ValidTo.Before(*earliest)) {
				earliest = e.ValidTo
			}
		}
		last, ok := reimported[arn]
		switch {
		case !ok:
			t.Errorf("replica %s: the resumed run did not import the new material into it: %+v", arn, rec.Materials)
		case md.ValidTo == nil || earliest == nil || !md.ValidTo.Equal(*earliest):
			t.Errorf("replica %s: KMS ValidTo %v, earliest of its materials %v", arn, md.ValidTo, earliest)
		case !md.ValidTo.Before(last):
			t.Errorf("replica %s: ValidTo %v is not earlier than the %v just imported: the case this test is about did not arise", arn, md.ValidTo, last)
		case verified[arn] == nil || !verified[arn].Equal(*md.ValidTo):
			t.Errorf("replica %s: the audit record says ValidTo %v after verification, KMS %v", arn, verified[arn], md.ValidTo)
		}
	}
}

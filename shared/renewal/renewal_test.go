package renewal

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

const (
	primary = "arn:aws:kms:eu-west-2:111122223333:key/mrk-1"
	replica = "arn:aws:kms:us-east-1:111122223333:key/mrk-1"
	secret  = "material"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// key is a symmetric EXTERNAL key; with materials it reports a current one.
func key(state types.KeyState, withMaterial bool) *types.KeyMetadata {
	md := &types.KeyMetadata{Arn: aws.String(primary), KeySpec: types.KeySpecSymmetricDefault, KeyState: state, Origin: types.OriginTypeExternal}
	if withMaterial {
		md.CurrentKeyMaterialId = aws.String("m1")
	}
	return md
}

// multiRegion makes md a primary with one replica in us-east-1.
func multiRegion(md *types.KeyMetadata) *types.KeyMetadata {
	md.MultiRegion = aws.Bool(true)
	md.MultiRegionConfiguration = &types.MultiRegionConfiguration{MultiRegionKeyType: types.MultiRegionKeyTypePrimary,
		ReplicaKeys: []types.MultiRegionKey{{Arn: aws.String(replica), Region: aws.String("us-east-1")}}}
	return md
}

func replicaOf(state types.KeyState, origin types.OriginType) []Replica {
	return []Replica{{Region: "us-east-1", ARN: replica, Meta: &types.KeyMetadata{Arn: aws.String(replica), KeyState: state, Origin: origin}}}
}

func material(id string, state types.KeyMaterialState, rt types.RotationType) types.RotationsListEntry {
	return types.RotationsListEntry{KeyMaterialId: aws.String(id), KeyMaterialState: state, ImportState: types.ImportStateImported, RotationType: rt}
}

func mapped(ids ...string) map[string]records.Material {
	m := map[string]records.Material{}
	for _, id := range ids {
		m[id] = records.Material{KeyMaterialID: id, SecretID: secret, SecretVersionID: "ver-" + id, State: records.MaterialCurrent}
	}
	return m
}

func reads(refs ...SecretRef) map[SecretRef]SecretRead {
	out := map[SecretRef]SecretRead{}
	for _, r := range refs {
		v := r.VersionID
		if v == "" {
			v = "ver-" + r.Stage
		}
		out[r] = SecretRead{VersionID: v, Length: 32}
	}
	return out
}

func ver(id string) SecretRef { return SecretRef{SecretID: secret, VersionID: "ver-" + id} }

var (
	current = SecretRef{SecretID: secret, Stage: "AWSCURRENT"}
	pending = SecretRef{SecretID: secret, Stage: "PENDING"}
)

func request(mod func(*flow.Request)) *flow.Request {
	r := &flow.Request{KeyID: primary, SecretID: secret, Policy: flow.Policy{SecretVersionStage: "AWSCURRENT", ExpirationModel: flow.Expires, NewMaterialStage: "PENDING"}}
	if mod != nil {
		mod(r)
	}
	return r
}

func rotate(r *flow.Request)   { r.Rotate = true }
func generate(r *flow.Request) { r.Rotate, r.GenerateMaterial = true, true }

// item is an item's shape: "region importType material version [new]".
func item(it flow.PlanItem) string {
	s := it.Region + " " + it.ImportType + " " + it.KeyMaterialID + " " + it.SecretVersionID
	if it.Replica {
		s += " replica"
	}
	if it.New {
		s += " new"
	}
	return s
}

func TestDecide(t *testing.T) {
	onDemand := func(n int) []types.RotationsListEntry {
		rots := []types.RotationsListEntry{material("m0", types.KeyMaterialStateNonCurrent, "")}
		for i := 1; i <= n; i++ {
			st := types.KeyMaterialStateNonCurrent
			if i == n {
				st = types.KeyMaterialStateCurrent
			}
			rots = append(rots, material("r"+string(rune('a'+i%26))+string(rune('a'+i/26)), st, types.RotationTypeOnDemand))
		}
		return rots
	}
	quota := onDemand(flow.MaxOnDemandRotations)
	quotaMap := map[string]records.Material{}
	quotaReads := reads(pending)
	for _, e := range quota {
		id := aws.ToString(e.KeyMaterialId)
		quotaMap[id] = mapped(id)[id]
		quotaReads[ver(id)] = SecretRead{VersionID: "ver-" + id, Length: 32}
	}
	pendingMap := mapped("m1", "m2")
	pendingMap["m2"] = records.Material{KeyMaterialID: "m2", SecretID: secret, SecretVersionID: "ver-m2", State: records.MaterialPendingRotation}

	cases := []struct {
		name      string
		f         Facts
		wantErr   string // flow error name
		wantMsg   string
		want      []string // items
		wantVer   string   // Plan.SecretVersionID
		wantGen   bool     // Decision.Generate
		check     func(t *testing.T, d Decision)
		wantSkips []string // targets skipped
	}{
		{name: "first import", f: Facts{Request: request(nil), Key: key(types.KeyStatePendingImport, false), Secrets: reads(current)},
			want: []string{"eu-west-2   ver-AWSCURRENT new"}, wantVer: "ver-AWSCURRENT",
			check: func(t *testing.T, d Decision) {
				if w := d.Plan.Wrapping; w.Algorithm != "RSAES_OAEP_SHA_256" || w.KeySpec != "RSA_4096" || !w.Defaulted || d.Plan.Listed {
					t.Errorf("wrapping %+v, listed %v", w, d.Plan.Listed)
				}
			}},
		{name: "renewal of one mapped material", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1"}, wantVer: "ver-m1"},
		{name: "renewal of one material the map does not know yet: bootstrapped from the request", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: map[string]records.Material{}, Secrets: reads(current)},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-AWSCURRENT"}, wantVer: "ver-AWSCURRENT",
			check: func(t *testing.T, d Decision) {
				if d.Bootstrapped != "m1" {
					t.Errorf("bootstrapped %q", d.Bootstrapped)
				}
			}},
		{name: "renewal of many materials", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateNonCurrent, ""), material("m2", types.KeyMaterialStateCurrent, types.RotationTypeOnDemand)},
			Map:       mapped("m1", "m2"), Secrets: reads(ver("m1"), ver("m2"))},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1", "eu-west-2 EXISTING_KEY_MATERIAL m2 ver-m2"}, wantVer: "ver-m2"},
		{name: "material the map does not know", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateNonCurrent, ""), material("m2", types.KeyMaterialStateCurrent, "")},
			Map:       mapped("m1"), Secrets: reads(ver("m1"))},
			wantErr: flow.MaterialSecretMissing, wantMsg: "material map does not know"},
		{name: "mapped version that cannot be read", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"),
			Secrets: map[SecretRef]SecretRead{ver("m1"): {Err: flow.Errorf(flow.SecretNotFound, "gone")}}},
			wantErr: flow.MaterialSecretMissing, wantMsg: "cannot be read"},
		{name: "mapped version with the wrong shape", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"),
			Secrets: map[SecretRef]SecretRead{ver("m1"): {Err: flow.Errorf(flow.InvalidSecret, "31 bytes")}}},
			wantErr: flow.InvalidSecret},
		{name: "new rotation with the user's material", f: Facts{Request: request(rotate), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"), pending)},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1", "eu-west-2 NEW_KEY_MATERIAL  ver-PENDING new"}, wantVer: "ver-PENDING",
			check: func(t *testing.T, d Decision) {
				if p := d.Plan; !p.Rotate || p.Resumed || p.Generated || p.NewSecretVersionID != "ver-PENDING" {
					t.Errorf("plan %+v", p)
				}
			}},
		{name: "new rotation with generated material", f: Facts{Request: request(generate), ExecutionID: "exec-1", Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"),
			Secrets: map[SecretRef]SecretRead{ver("m1"): {VersionID: "ver-m1", Length: 32}, pending: {Err: flow.Errorf(flow.SecretNotFound, "no version at PENDING")}}},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1", "eu-west-2 NEW_KEY_MATERIAL  " + GeneratedVersionID("exec-1") + " new"}, wantVer: GeneratedVersionID("exec-1"), wantGen: true},
		{name: "new rotation without new material", f: Facts{Request: request(rotate), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"),
			Secrets: map[SecretRef]SecretRead{ver("m1"): {VersionID: "ver-m1", Length: 32}, pending: {Err: flow.Errorf(flow.SecretNotFound, "no version at PENDING")}}},
			wantErr: flow.NewMaterialInvalid, wantMsg: "no new key material"},
		{name: "new rotation whose new material is an old one", f: Facts{Request: request(rotate), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"),
			Secrets: map[SecretRef]SecretRead{ver("m1"): {VersionID: "ver-m1", Length: 32}, pending: {VersionID: "ver-m1", Length: 32}}},
			wantErr: flow.NewMaterialInvalid, wantMsg: "already holds key material"},
		{name: "rotation of a key with no material yet", f: Facts{Request: request(rotate), Key: key(types.KeyStatePendingImport, false), Map: mapped(), Secrets: reads(pending)},
			wantErr: flow.InvalidInput, wantMsg: "no key material yet"},
		{name: "resumed rotation: new material pending rotation", f: Facts{Request: request(rotate), Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, ""), material("m2", types.KeyMaterialStatePendingRotation, "")},
			Map:       pendingMap, Secrets: reads(ver("m1"), ver("m2"))},
			want: []string{}, wantVer: "ver-m2", // every material imported already: only rotated
			check: func(t *testing.T, d Decision) {
				if p := d.Plan; !p.Resumed || p.Rotated || p.NewMaterialID != "m2" || d.Generate {
					t.Errorf("plan %+v", p)
				}
			}},
		{name: "resumed rotation: already current", f: Facts{Request: request(rotate), Now: now, Key: key(types.KeyStateEnabled, true),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateNonCurrent, ""), material("m2", types.KeyMaterialStateCurrent, types.RotationTypeOnDemand)},
			Map:       pendingMap, Secrets: reads(ver("m1"), ver("m2"))},
			want: []string{}, wantVer: "ver-m2", // every material imported already: only rotated
			check: func(t *testing.T, d Decision) {
				if p := d.Plan; !p.Resumed || !p.Rotated || p.NewMaterialID != "m2" || p.RotationStartedAt == nil || !p.RotationStartedAt.Equal(now) {
					t.Errorf("plan %+v", p)
				}
			}},
		{name: "on-demand rotation quota reached", f: Facts{Request: request(rotate), Key: key(types.KeyStateEnabled, true), Materials: quota, Map: quotaMap, Secrets: quotaReads},
			wantErr: flow.RotationLimitExceeded, wantMsg: "25 on-demand rotations"},
		{name: "quota reached but renewal only", f: Facts{Request: request(nil), Key: key(types.KeyStateEnabled, true), Materials: quota, Map: quotaMap, Secrets: quotaReads},
			check: func(t *testing.T, d Decision) {
				if len(d.Plan.Items) != flow.MaxOnDemandRotations+1 {
					t.Errorf("%d items", len(d.Plan.Items))
				}
			}},
		{name: "first import of a multi-Region key and its replica", f: Facts{Request: request(nil), Key: multiRegion(key(types.KeyStatePendingImport, false)),
			Replicas: replicaOf(types.KeyStatePendingImport, types.OriginTypeExternal), Secrets: reads(current)},
			want: []string{"eu-west-2   ver-AWSCURRENT new", "us-east-1 EXISTING_KEY_MATERIAL  ver-AWSCURRENT replica new"}, wantVer: "ver-AWSCURRENT"},
		{name: "renewal of a multi-Region key and its replica", f: Facts{Request: request(nil), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStateEnabled, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1", "us-east-1 EXISTING_KEY_MATERIAL m1 ver-m1 replica"}, wantVer: "ver-m1"},
		{name: "new rotation of a multi-Region key", f: Facts{Request: request(rotate), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStateEnabled, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"), pending)},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1", "us-east-1 EXISTING_KEY_MATERIAL m1 ver-m1 replica",
				"eu-west-2 NEW_KEY_MATERIAL  ver-PENDING new", "us-east-1 EXISTING_KEY_MATERIAL  ver-PENDING replica new"}, wantVer: "ver-PENDING"},
		{name: "resumed rotation of a multi-Region key: replicas pending", f: Facts{Request: request(rotate), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas: replicaOf(types.KeyStateEnabled, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, ""),
				material("m2", types.KeyMaterialStatePendingMultiRegionImportAndRotation, "")}, Map: pendingMap, Secrets: reads(ver("m1"), ver("m2"))},
			want: []string{"us-east-1 EXISTING_KEY_MATERIAL m2 ver-m2 replica new"}, wantVer: "ver-m2"},
		{name: "regions filter: the replica only", f: Facts{Request: request(func(r *flow.Request) { r.Regions = []string{"us-east-1"} }), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStateEnabled, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			want: []string{"us-east-1 EXISTING_KEY_MATERIAL m1 ver-m1 replica"}, wantVer: "ver-m1", wantSkips: []string{"eu-west-2"}},
		{name: "regions filter names a Region the key is not in", f: Facts{Request: request(func(r *flow.Request) { r.Regions = []string{"ap-south-1"} }), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStateEnabled, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			wantErr: flow.InvalidInput, wantMsg: "names ap-south-1"},
		// Issue 16, scenario 4: a replica pending deletion outside the
		// request's "regions" blocks nothing; inside them it still refuses.
		{name: "regions filter: the primary only, replica pending deletion", f: Facts{Request: request(func(r *flow.Request) { r.Regions = []string{"eu-west-2"} }), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStatePendingDeletion, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			want: []string{"eu-west-2 EXISTING_KEY_MATERIAL m1 ver-m1"}, wantVer: "ver-m1", wantSkips: []string{"us-east-1"}},
		{name: "regions filter: the replica pending deletion named", f: Facts{Request: request(func(r *flow.Request) { r.Regions = []string{"us-east-1"} }), Key: multiRegion(key(types.KeyStateEnabled, true)),
			Replicas:  replicaOf(types.KeyStatePendingDeletion, types.OriginTypeExternal),
			Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"))},
			wantErr: flow.KeyNotEligible, wantMsg: "state PendingDeletion"},
		{name: "replica in a passing state", f: Facts{Request: request(nil), Key: multiRegion(key(types.KeyStatePendingImport, false)),
			Replicas: replicaOf(types.KeyStateCreating, types.OriginTypeExternal), Secrets: reads(current)},
			wantErr: flow.KeyNotReady, wantMsg: "which passes"},
		{name: "replica disabled", f: Facts{Request: request(nil), Key: multiRegion(key(types.KeyStatePendingImport, false)),
			Replicas: replicaOf(types.KeyStateDisabled, types.OriginTypeExternal), Secrets: reads(current)},
			wantErr: flow.KeyNotEligible, wantMsg: "state Disabled"},
		{name: "replica of the wrong origin", f: Facts{Request: request(nil), Key: multiRegion(key(types.KeyStatePendingImport, false)),
			Replicas: replicaOf(types.KeyStateEnabled, types.OriginTypeAwsKms), Secrets: reads(current)},
			wantErr: flow.KeyNotEligible, wantMsg: "origin AWS_KMS"},
		{name: "a replica key given instead of its primary", f: Facts{Request: request(nil), Key: &types.KeyMetadata{Arn: aws.String(replica), KeySpec: types.KeySpecSymmetricDefault,
			MultiRegion: aws.Bool(true), MultiRegionConfiguration: &types.MultiRegionConfiguration{MultiRegionKeyType: types.MultiRegionKeyTypeReplica,
				PrimaryKey: &types.MultiRegionKey{Arn: aws.String(primary)}}}},
			wantErr: flow.KeyNotEligible, wantMsg: "run kms-reimport on its primary key " + primary},
		{name: "HMAC key asked to rotate", f: Facts{Request: request(rotate), Key: &types.KeyMetadata{Arn: aws.String(primary), KeySpec: types.KeySpecHmac256}},
			wantErr: flow.RotationNotSupported},
		{name: "asymmetric key asked to rotate on a schedule", f: Facts{Request: request(func(r *flow.Request) { r.RotateEvery = "90d" }), Key: &types.KeyMetadata{Arn: aws.String(primary), KeySpec: types.KeySpecEccNistP256}},
			wantErr: flow.RotationNotSupported},
		{name: "asymmetric key renewed: its one material, wrapped with AES key wrap", f: Facts{Request: request(nil),
			Key: &types.KeyMetadata{Arn: aws.String(primary), KeySpec: types.KeySpecRsa2048, KeyState: types.KeyStateEnabled}, Secrets: map[SecretRef]SecretRead{current: {VersionID: "v", Length: 1217}}},
			want: []string{"eu-west-2   v new"}, wantVer: "v",
			check: func(t *testing.T, d Decision) {
				if d.Plan.Wrapping.Algorithm != "RSA_AES_KEY_WRAP_SHA_256" {
					t.Errorf("wrapping %+v", d.Plan.Wrapping)
				}
			}},
		{name: "request's secret missing", f: Facts{Request: request(nil), Key: key(types.KeyStatePendingImport, false),
			Secrets: map[SecretRef]SecretRead{current: {Err: flow.Errorf(flow.SecretNotFound, "no such secret")}}},
			wantErr: flow.SecretNotFound},
		{name: "wrapping the request names that the key can't take", f: Facts{Request: request(func(r *flow.Request) { r.WrappingAlgorithm = "RSAES_PKCS1_V1_5" }),
			Key: key(types.KeyStatePendingImport, false), Secrets: reads(current)},
			wantErr: flow.UnsupportedWrapping},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Decide(c.f)
			if (err == nil) != (c.wantErr == "") || (err != nil && (flow.NameOf(err) != c.wantErr || !strings.Contains(err.Error(), c.wantMsg))) {
				t.Fatalf("error %v, want %q saying %q", err, c.wantErr, c.wantMsg)
			}
			if err != nil {
				if d.Plan != nil {
					t.Fatal("a refused decision has a plan")
				}
				return
			}
			var items []string
			for _, it := range d.Plan.Items {
				items = append(items, item(it))
			}
			if c.want != nil && strings.Join(items, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("items:\n%s\nwant:\n%s", strings.Join(items, "\n"), strings.Join(c.want, "\n"))
			}
			if c.wantVer != "" && d.Plan.SecretVersionID != c.wantVer {
				t.Errorf("plan's secret version %q, want %q", d.Plan.SecretVersionID, c.wantVer)
			}
			if d.Generate != c.wantGen {
				t.Errorf("generate %v, want %v", d.Generate, c.wantGen)
			}
			var skipped []string
			for _, tg := range d.Plan.Targets {
				if tg.Skipped {
					skipped = append(skipped, tg.Region)
				}
			}
			if strings.Join(skipped, ",") != strings.Join(c.wantSkips, ",") {
				t.Errorf("skipped %v, want %v", skipped, c.wantSkips)
			}
			if c.check != nil {
				c.check(t, d)
			}
		})
	}
}

// TestDecideLeavesTheRequestAsGiven: the plan holds what was resolved.
func TestDecideLeavesTheRequestAsGiven(t *testing.T) {
	r := request(rotate)
	before := *r
	_, err := Decide(Facts{Request: r, Key: key(types.KeyStateEnabled, true),
		Materials: []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, Map: mapped("m1"), Secrets: reads(ver("m1"), pending)})
	if err != nil || r.SecretVersionID != before.SecretVersionID || r.WrappingAlgorithm != "" || r.WrappingKeySpec != "" {
		t.Fatalf("request after Decide: %+v (%v)", r, err)
	}
}

func TestSecretsToRead(t *testing.T) {
	cases := []struct {
		name string
		r    *flow.Request
		rots []types.RotationsListEntry
		mm   map[string]records.Material
		want []SecretRef
	}{
		{"first import", request(nil), nil, nil, []SecretRef{current}},
		{"one material not mapped", request(nil), []types.RotationsListEntry{material("m1", types.KeyMaterialStateCurrent, "")}, mapped(), []SecretRef{current}},
		{"two mapped materials", request(nil), []types.RotationsListEntry{material("m1", "", ""), material("m2", "", "")}, mapped("m1", "m2"), []SecretRef{ver("m1"), ver("m2")}},
		{"rotation", request(rotate), []types.RotationsListEntry{material("m1", "", "")}, mapped("m1"), []SecretRef{ver("m1"), pending}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := SecretsToRead(c.r, c.rots, c.mm)
			if len(got) != len(c.want) {
				t.Fatalf("reads %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("reads %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

func TestGeneratedVersionIDIsAUUIDOfTheExecution(t *testing.T) {
	a, b := GeneratedVersionID("exec-1"), GeneratedVersionID("exec-2")
	if a == b || a != GeneratedVersionID("exec-1") || len(a) != 36 || a[14] != '4' {
		t.Fatalf("%s %s", a, b)
	}
}

// TestPermitted: what the deployment's roles do not allow is refused
// before anything is read or changed; everything else passes.
func TestPermitted(t *testing.T) {
	none := Deployment{NoRotation: true, NoGeneratedMaterial: true, NoMaterialProofs: true}
	cases := []struct {
		name string
		r    flow.Request
		spec types.KeySpec
		d    Deployment
		want string // error name, "" = permitted
	}{
		{"renewal, nothing allowed", flow.Request{}, types.KeySpecSymmetricDefault, none, ""},
		{"rotate without RotateOnDemand", flow.Request{Rotate: true}, types.KeySpecSymmetricDefault, Deployment{NoRotation: true}, flow.InvalidInput},
		{"rotateEvery without RotateOnDemand", flow.Request{Policy: flow.Policy{RotateEvery: "90d"}}, types.KeySpecSymmetricDefault, Deployment{NoRotation: true}, flow.InvalidInput},
		{"rotate with RotateOnDemand", flow.Request{Rotate: true}, types.KeySpecSymmetricDefault, Deployment{NoGeneratedMaterial: true}, ""},
		{"generateMaterial without GeneratedMaterial", flow.Request{Rotate: true, Policy: flow.Policy{GenerateMaterial: true}}, types.KeySpecSymmetricDefault, Deployment{NoGeneratedMaterial: true}, flow.InvalidInput},
		{"generateMaterial with GeneratedMaterial", flow.Request{Rotate: true, Policy: flow.Policy{GenerateMaterial: true}}, types.KeySpecSymmetricDefault, Deployment{}, ""},
		{"HMAC without MaterialProofs", flow.Request{}, types.KeySpecHmac256, Deployment{NoMaterialProofs: true}, flow.InvalidInput},
		{"ECC without MaterialProofs", flow.Request{}, types.KeySpecEccNistP256, Deployment{NoMaterialProofs: true}, flow.InvalidInput},
		{"HMAC with MaterialProofs", flow.Request{}, types.KeySpecHmac256, Deployment{NoRotation: true}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Permitted(&c.r, c.spec, c.d)
			if got := ""; err != nil {
				got = flow.NameOf(err)
				if got != c.want {
					t.Fatalf("error %s (%v), want %q", got, err, c.want)
				}
			} else if c.want != "" {
				t.Fatalf("permitted, want %s", c.want)
			}
		})
	}
}

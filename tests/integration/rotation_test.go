package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

// local-kms supports RSA_2048 wrapping keys only; other specs are proven in
// shared/wrapping against OpenSSL and end to end on the KMS stand-in.
const spec = "RSA_2048"

func TestFirstImportThenRenewal(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))

	// First import: PendingImport -> Enabled with the ValidTo asked for.
	validTo := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
	ex := execute(t, input{"keyId": arn, "secretId": secret, "validTo": validTo.Format(time.RFC3339), "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	s := mustSucceed(t, ex)
	md := describe(t, arn)
	if md.KeyState != kmstypes.KeyStateEnabled || md.ValidTo == nil || !md.ValidTo.Equal(validTo) {
		t.Fatalf("after first import: state %s ValidTo %v, want Enabled %v", md.KeyState, md.ValidTo, validTo)
	}
	if s.Key.StateBefore != "PendingImport" || s.Verified == nil || !strings.Contains(s.Verified.RoundTrip, "equal") {
		t.Fatalf("state after first import: key %+v verification %+v", s.Key, s.Verified)
	}
	for _, want := range []string{"Start", "FetchImportParameters", "WrapKeyMaterial", "ImportKeyMaterial", "VerifyImport"} {
		if !ranState(ex, want, "ok") {
			t.Errorf("state %s did not run ok: %+v", want, ex.States)
		}
	}
	trs := tokenRecords(t, arn)
	if len(trs) != 1 || trs[0].Status != records.TokenUsed || trs[0].WrappingAlgorithm != "RSAES_OAEP_SHA_256" || trs[0].WrappingKeySpec != spec ||
		trs[0].ExecutionID != s.Execution.ID || trs[0].ExpiresAt <= trs[0].ParametersValidTo.Unix() || !trs[0].ParametersValidTo.After(time.Now().Add(23*time.Hour)) {
		t.Fatalf("token records after first import: %+v", trs)
	}
	irs := importRecords(t, arn)
	if len(irs) != 1 {
		t.Fatalf("import records: %d", len(irs))
	}
	r := irs[0]
	if r.Outcome != records.ImportSucceeded || r.ExecutionID != s.Execution.ID || r.ExpirationModel != flow.Expires || !r.ValidTo.Equal(validTo) ||
		r.SecretID != secret || r.SecretVersionID == "" || r.KeyStateBefore != "PendingImport" || r.KeyStateAfter != "Enabled" || r.Verification == "" {
		t.Fatalf("import record: %+v", r)
	}

	// Renewal of the same material, with the other OAEP algorithm: ValidTo moves.
	renewed := validTo.Add(24 * time.Hour)
	ex = execute(t, input{"keyId": arn, "secretId": secret, "validTo": renewed.Format(time.RFC3339), "wrappingKeySpec": spec, "wrappingAlgorithm": "RSAES_OAEP_SHA_1"}, stack.ExecuteOptions{})
	s = mustSucceed(t, ex)
	md = describe(t, arn)
	if md.KeyState != kmstypes.KeyStateEnabled || !md.ValidTo.Equal(renewed) {
		t.Fatalf("after renewal: state %s ValidTo %v, want Enabled %v", md.KeyState, md.ValidTo, renewed)
	}
	if s.Key.StateBefore != "Enabled" || s.Key.ValidToBefore == nil || !s.Key.ValidToBefore.Equal(validTo) {
		t.Fatalf("renewal state: %+v", s.Key)
	}
	irs = importRecords(t, arn)
	if len(irs) != 2 || irs[1].Outcome != records.ImportSucceeded || !irs[1].ValidTo.Equal(renewed) || !irs[1].ValidToBefore.Equal(validTo) || irs[1].WrappingAlgorithm != "RSAES_OAEP_SHA_1" {
		t.Fatalf("import records after renewal: %+v", irs)
	}
	if trs := tokenRecords(t, arn); len(trs) != 2 || trs[1].Status != records.TokenUsed {
		t.Fatalf("token records after renewal: %+v", trs)
	}
}

func TestValidForAndAliasAndBase64Secret(t *testing.T) {
	arn := externalKey(t)
	alias := "alias/" + uniq("it")
	if _, err := kc.CreateAlias(context.Background(), &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	secret := materialSecretString(t, randomBytes(t, 32))
	before := time.Now().UTC()
	ex := execute(t, input{"keyId": alias, "secretId": secret, "validFor": "30d", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	s := mustSucceed(t, ex)
	md := describe(t, arn)
	want := s.Request.ValidTo
	if md.KeyState != kmstypes.KeyStateEnabled || !md.ValidTo.Equal(*want) {
		t.Fatalf("state %s ValidTo %v want %v", md.KeyState, md.ValidTo, want)
	}
	if d := want.Sub(before); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("validFor 30d gave ValidTo %v (from %v)", want, before)
	}
	if s.Key.ARN != arn {
		t.Fatalf("alias resolved to %s, want %s", s.Key.ARN, arn)
	}
}

func TestNoExpiry(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))
	ex := execute(t, input{"keyId": arn, "secretId": secret, "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	mustSucceed(t, ex)
	md := describe(t, arn)
	if md.KeyState != kmstypes.KeyStateEnabled || md.ExpirationModel != kmstypes.ExpirationModelTypeKeyMaterialDoesNotExpire || md.ValidTo != nil {
		t.Fatalf("state %s model %s ValidTo %v", md.KeyState, md.ExpirationModel, md.ValidTo)
	}
	irs := importRecords(t, arn)
	if len(irs) != 1 || irs[0].ExpirationModel != flow.DoesNotExpire || irs[0].ValidTo != nil {
		t.Fatalf("import records: %+v", irs)
	}
}

func TestDifferentMaterialIsRefusedAndRecorded(t *testing.T) {
	arn := externalKey(t)
	good := materialSecret(t, randomBytes(t, 32))
	validTo := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second)
	mustSucceed(t, execute(t, input{"keyId": arn, "secretId": good, "validTo": validTo.Format(time.RFC3339), "wrappingKeySpec": spec}, stack.ExecuteOptions{}))

	other := materialSecret(t, randomBytes(t, 32))
	ex := execute(t, input{"keyId": arn, "secretId": other, "validFor": "240h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	mustFail(t, ex, flow.IncorrectKeyMaterial)
	if !ranState(ex, "ImportKeyMaterial", "caught") || !ranState(ex, "RecordFailure", "ok") {
		t.Errorf("states: %+v", ex.States)
	}
	// KMS unchanged: same state and ValidTo as after the first import.
	md := describe(t, arn)
	if md.KeyState != kmstypes.KeyStateEnabled || !md.ValidTo.Equal(validTo) {
		t.Fatalf("key changed: %s %v", md.KeyState, md.ValidTo)
	}
	irs := importRecords(t, arn)
	if len(irs) != 2 {
		t.Fatalf("import records: %+v", irs)
	}
	f := irs[1]
	if f.Outcome != records.ImportFailed || f.ErrorName != flow.IncorrectKeyMaterial || f.Stage != "import-material" || f.SecretID != other || f.Cause == "" || f.ExecutionID == "" {
		t.Fatalf("failure record: %+v", f)
	}
	trs := tokenRecords(t, arn)
	if len(trs) != 2 || trs[1].Status != records.TokenFailed || !strings.Contains(trs[1].StatusReason, flow.IncorrectKeyMaterial) {
		t.Fatalf("token records: %+v", trs)
	}
}

func TestKeyNotExternal(t *testing.T) {
	out, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Description: aws.String(t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	arn := *out.KeyMetadata.Arn
	secret := materialSecret(t, randomBytes(t, 32))
	ex := execute(t, input{"keyId": arn, "secretId": secret, "validFor": "24h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	// The roles may describe only keys with origin EXTERNAL (kms:KeyOrigin):
	// KMS, and the local stack's IAM gate, deny DescribeKey of any other
	// key before the fetch stage can look at its origin: AccessDenied, which
	// leaves the key's registry status as it was.
	mustFail(t, ex, flow.AccessDenied)
	if !strings.Contains(ex.Cause, "AccessDeniedException") || !strings.Contains(ex.Cause, "kms:DescribeKey") {
		t.Errorf("cause does not name the denied DescribeKey: %s", ex.Cause)
	}
	// Nothing was read of the key, so the cause states no facts about it.
	if _, f := flow.ParseCause(ex.Cause); f != nil && f.Check != "" {
		t.Errorf("facts %+v in the execution's cause of a denied DescribeKey, want none", f)
	}
	if md := describe(t, arn); md.KeyState != kmstypes.KeyStateEnabled || md.Origin != kmstypes.OriginTypeAwsKms {
		t.Fatalf("key changed: %+v", md)
	}
	if trs := tokenRecords(t, arn); len(trs) != 0 {
		t.Fatalf("a token was fetched for a non-EXTERNAL key: %+v", trs)
	}
	irs := importRecords(t, arn)
	if len(irs) != 1 || irs[0].Outcome != records.ImportFailed || irs[0].ErrorName != flow.AccessDenied || irs[0].Stage != "fetch-parameters" {
		t.Fatalf("import records: %+v", irs)
	}
}

func TestKeyInWrongState(t *testing.T) {
	arn := externalKey(t)
	if _, err := kc.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: &arn}); err != nil {
		t.Fatal(err)
	}
	secret := materialSecret(t, randomBytes(t, 32))
	ex := execute(t, input{"keyId": arn, "secretId": secret, "validFor": "24h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	mustFail(t, ex, flow.KeyNotEligible)
	if !strings.Contains(ex.Cause, "Disabled") || !strings.Contains(ex.Cause, "PendingImport, Enabled") {
		t.Errorf("cause does not explain: %s", ex.Cause)
	}
	if _, f := flow.ParseCause(ex.Cause); f == nil || f.Check != flow.CheckKeyState || f.KeyState != "Disabled" || f.KeyARN != arn {
		t.Errorf("facts %+v in the execution's cause, want check keyState, Disabled, %s", f, arn)
	}
	if irs := importRecords(t, arn); len(irs) != 1 || strings.Contains(irs[0].Cause, "facts") {
		t.Errorf("import records %+v: want one, its cause the message alone", irs)
	}
	if trs := tokenRecords(t, arn); len(trs) != 0 {
		t.Fatalf("token fetched: %+v", trs)
	}
}

func TestSecretOfWrongLength(t *testing.T) {
	for _, n := range []int{16, 31, 33, 64} {
		arn := externalKey(t)
		material := randomBytes(t, n)
		secret := materialSecret(t, material)
		ex := execute(t, input{"keyId": arn, "secretId": secret, "validFor": "24h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
		mustFail(t, ex, flow.InvalidSecret)
		if !strings.Contains(ex.Cause, secret) || !strings.Contains(ex.Cause, "32 bytes") {
			t.Errorf("%d bytes: cause does not name the secret and the rule: %s", n, ex.Cause)
		}
		if md := describe(t, arn); md.KeyState != kmstypes.KeyStatePendingImport {
			t.Fatalf("key changed: %s", md.KeyState)
		}
		// Checked before GetParametersForImport: no token was spent.
		if trs := tokenRecords(t, arn); len(trs) != 0 {
			t.Fatalf("token fetched for a bad secret: %+v", trs)
		}
		// Fixed right away, the next run goes through: the failed one left
		// no lease behind.
		good := randomBytes(t, 32)
		remember(good)
		if _, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: &secret, SecretBinary: good}); err != nil {
			t.Fatal(err)
		}
		ex = execute(t, input{"keyId": arn, "secretId": secret, "validFor": "24h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
		if s := mustSucceed(t, ex); s.Verified == nil {
			t.Fatalf("%d bytes, then fixed: the rerun did not import (lease left behind?): %s", n, ex.Output)
		}
	}
}

func TestMissingSecretVersion(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))
	ex := execute(t, input{"keyId": arn, "secretId": secret, "secretVersionId": "00000000-0000-0000-0000-000000000000", "validFor": "24h", "wrappingKeySpec": spec}, stack.ExecuteOptions{})
	mustFail(t, ex, flow.SecretNotFound)
	if trs := tokenRecords(t, arn); len(trs) != 0 {
		t.Fatalf("token fetched: %+v", trs)
	}
}

func TestBadExecutionInput(t *testing.T) {
	arn := externalKey(t)
	secret := materialSecret(t, randomBytes(t, 32))
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	far := time.Now().Add(400 * 24 * time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name  string
		in    string
		field string
	}{
		{"unknown field", `{"keyId":"` + arn + `","secretId":"` + secret + `","validFor":"24h","colour":"red"}`, `"colour"`},
		{"missing keyId", `{"secretId":"` + secret + `","validFor":"24h"}`, `"keyId"`},
		{"malformed keyId", `{"keyId":"not a key","secretId":"` + secret + `","validFor":"24h"}`, `"keyId"`},
		{"malformed secretId", `{"keyId":"` + arn + `","secretId":"bad secret!","validFor":"24h"}`, `"secretId"`},
		{"validTo in the past", `{"keyId":"` + arn + `","secretId":"` + secret + `","validTo":"` + past + `"}`, `"validTo"`},
		{"validTo too far", `{"keyId":"` + arn + `","secretId":"` + secret + `","validTo":"` + far + `"}`, `"validTo"`},
		{"validFor and validTo", `{"keyId":"` + arn + `","secretId":"` + secret + `","validFor":"24h","validTo":"` + far + `"}`, `"validFor"`},
		{"bad algorithm", `{"keyId":"` + arn + `","secretId":"` + secret + `","validFor":"24h","wrappingAlgorithm":"ROT13"}`, `"wrappingAlgorithm"`},
		{"wrong type", `{"keyId":"` + arn + `","secretId":"` + secret + `","validFor":24}`, `"validFor"`},
		{"not an object", `["` + arn + `"]`, "JSON"},
		{"key of another account", `{"keyId":"arn:aws:kms:eu-west-2:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab","secretId":"` + secret + `","validFor":"24h"}`, "account 444455556666 is not served by this deployment; it serves 111122223333"},
		{"key of another Region", `{"keyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","secretId":"` + secret + `","validFor":"24h"}`, "this deployment serves keys in Region eu-west-2"},
		{"key of another Region", `{"keyId":"` + strings.Replace(arn, "eu-west-2", "us-east-1", 1) + `","secretId":"` + secret + `","validFor":"24h"}`, "Region us-east-1"},
		{"null field", `{"keyId":"` + arn + `","secretId":"` + secret + `","validFor":"24h","register":null}`, `"register" is null`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ex := executeRaw(t, []byte(c.in), stack.ExecuteOptions{})
			mustFail(t, ex, flow.InvalidInput)
			if !strings.Contains(ex.Cause, c.field) {
				t.Errorf("cause does not name %s: %s", c.field, ex.Cause)
			}
			if !ranState(ex, "FetchImportParameters", "caught") {
				t.Errorf("states: %+v", ex.States)
			}
		})
	}
	if md := describe(t, arn); md.KeyState != kmstypes.KeyStatePendingImport {
		t.Fatalf("key changed: %s", md.KeyState)
	}
	if trs := tokenRecords(t, arn); len(trs) != 0 {
		t.Fatalf("token fetched: %+v", trs)
	}
}

func ranState(ex *stack.Execution, name, outcome string) bool {
	for _, s := range ex.States {
		if s.Name == name && s.Outcome == outcome {
			return true
		}
	}
	return false
}

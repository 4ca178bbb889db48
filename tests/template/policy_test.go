package template_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

// The rules (docs/deploy.md, "IAM permissions"):
//   - no "*" action and no wildcard in an action; no NotAction/NotResource;
//   - a "*" resource only for actions that support no resource-level
//     permissions (noResourceLevel);
//   - KMS actions only on keys with origin EXTERNAL (kms:KeyOrigin), on key
//     ARNs of this account (or the ManagedKeyArns list), and with the tag
//     ManagedKeyTagKey=ManagedKeyTagValue (aws:ResourceTag) unless the tag
//     value is empty, which is allowed only with a key list: never every
//     EXTERNAL key of the account; the one exception is kms:Decrypt of the
//     SecretKmsKeyArns through Secrets Manager (kms:ViaService);
//   - kms:GetParametersForImport only with kms:WrappingAlgorithm among the
//     OAEP and RSA_AES_KEY_WRAP algorithms (RSAES_PKCS1_V1_5 only with
//     AllowLegacyPkcs1) and kms:WrappingKeySpec RSA_2048/3072/4096;
//   - kms:Encrypt/kms:Decrypt only with the verification's encryption
//     context (purpose, execution; no other key) on symmetric keys, or
//     kms:Decrypt alone on RSA keys with RSAES_OAEP_SHA_256 (asymmetric keys
//     take no encryption context); no set operator on
//     kms:EncryptionContext:*;
//   - DynamoDB reads (GetItem, Query) only with dynamodb:Attributes (every
//     readable record attribute, never the token bytes) and dynamodb:Select
//     SPECIFIC_ATTRIBUTES, except the import stage's GetItem (it sends the
//     token) and the planner's Query, limited to the registry partition
//     (dynamodb:LeadingKeys); writes only with dynamodb:ReturnValues NONE;
//     no other DynamoDB action;
//   - sqs:SendMessage only by a function's role, only to that function's
//     on-failure destination (AWS::Lambda::EventInvokeConfig);
//   - secretsmanager:GetSecretValue only, on the secret name prefix (and
//     the tag when ManagedSecretTagValue is set);
//   - DynamoDB only on the table; logs only on the function's log group;
//   - sns:Publish only, only on the notification topic: exactly
//     !If [TopicGiven, !Ref AlarmTopicArn, !Ref NotificationTopic];
//   - lambda:InvokeFunction only on the functions the role's own state
//     machine substitutes into its definition;
//   - states:StartExecution only on the state machines the role's own state
//     machine starts (startExecution Tasks, through substitutions) and, for
//     a Distributed Map, on itself by its fixed name; states:DescribeExecution
//     and states:StopExecution only on those executions (execution:<name>:*
//     for .sync Tasks, execution:<own name>/* for Distributed Map children);
//   - events:PutTargets, events:PutRule, events:DescribeRule only on the
//     managed rule StepFunctionsGetEventsForStepFunctionsExecutionRule, and
//     only for a state machine with a .sync Task;
//   - any other service, or any of these from a role whose owner has no
//     use for it (a function role starting executions), is refused;
//   - each role grants exactly the actions its function calls or its state
//     machine's definition needs.

// expectedActions: what each stage calls (shared/*), plus its logs.
var expectedActions = map[string][]string{
	"FetchParametersFunction": {"kms:DescribeKey", "kms:GetParametersForImport", "kms:GetPublicKey", "kms:ListKeyRotations", "secretsmanager:GetSecretValue", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"},
	"WrapMaterialFunction":    {"secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:UpdateItem"},
	"ImportMaterialFunction":  {"kms:ImportKeyMaterial", "kms:ListKeyRotations", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:Query"},
	"VerifyImportFunction":    {"kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateMac", "kms:Sign", "kms:GetPublicKey", "kms:ListKeyRotations", "kms:GetKeyRotationStatus", "secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"},
	"RecordFailureFunction":   {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "sns:Publish", "sqs:SendMessage", "kms:DescribeKey"},
	// Planner: the registry (Query), gone replicas (UpdateItem), the
	// notification marks (PutItem, DeleteItem), each key's state from KMS,
	// the notifications (issue 16).
	"PlannerFunction": {"dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "kms:DescribeKey", "sns:Publish"},
}

// optionalActions: what a parameter adds to (true) or takes from (false) a
// function's expectedActions, the defaults' set (least privilege: only the
// deployments that use a permission get it).
var optionalActions = map[string]map[string][]string{
	"GeneratedMaterial": {"FetchParametersFunction": {"secretsmanager:PutSecretValue"}},
	"RotateOnDemand":    {"VerifyImportFunction": {"kms:RotateKeyOnDemand"}},
	"MaterialProofs":    {"VerifyImportFunction": {"secretsmanager:GetSecretValue"}},
}

// actionsFor is a function's expected actions under the parameter values
// given (defaults: GeneratedMaterial and RotateOnDemand false,
// MaterialProofs true).
func actionsFor(fn string, overrides map[string]any) []string {
	on := map[string]bool{"MaterialProofs": true}
	for k, v := range overrides {
		if _, ok := optionalActions[k]; ok {
			on[k] = fmt.Sprint(v) == "true"
		}
	}
	out := append([]string{}, expectedActions[fn]...)
	for param, byFn := range optionalActions {
		for _, a := range byFn[fn] {
			has := contains(out, a)
			switch {
			case on[param] && !has:
				out = append(out, a)
			case !on[param] && has:
				var kept []string
				for _, x := range out {
					if x != a {
						kept = append(kept, x)
					}
				}
				out = kept
			}
		}
	}
	return out
}

// Step Functions actions of a state machine that starts others.
var (
	startActions  = []string{"states:StartExecution"}
	followActions = []string{"states:DescribeExecution", "states:StopExecution"}
	// The managed rule through which Step Functions learns that a .sync
	// child execution ended (Step Functions developer guide, "IAM policies
	// for nested workflows").
	syncRuleActions = []string{"events:PutTargets", "events:PutRule", "events:DescribeRule"}
	syncRule        = "arn:aws:events:" + region + ":" + account + ":rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"
)

// noResourceLevel: actions IAM cannot scope to a resource (Step Functions'
// CloudWatch Logs delivery).
var noResourceLevel = map[string]bool{
	"logs:CreateLogDelivery": true, "logs:GetLogDelivery": true, "logs:UpdateLogDelivery": true,
	"logs:DeleteLogDelivery": true, "logs:ListLogDeliveries": true, "logs:PutResourcePolicy": true,
	"logs:DescribeResourcePolicies": true, "logs:DescribeLogGroups": true,
}

type statement struct {
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
	Condition map[string]any
	Broad     []string // NotAction / NotResource / NotPrincipal present
}

func strs(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if x != nil {
				out = append(out, fmt.Sprint(x))
			}
		}
		return out
	}
	return nil
}

func statements(doc any) []statement {
	if js, ok := doc.(string); ok {
		// A policy document written as a JSON string (the managed-key
		// statements: their tag condition key is a parameter).
		var v any
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return []statement{{Sid: "UNPARSABLE", Broad: []string{"policy document is not JSON: " + err.Error()}}}
		}
		doc = v
	}
	d, _ := doc.(map[string]any)
	var list []any
	switch s := d["Statement"].(type) {
	case []any:
		list = s
	case map[string]any:
		list = []any{s}
	}
	var out []statement
	for _, x := range list {
		m, ok := x.(map[string]any)
		if !ok {
			continue // an !If that resolved to AWS::NoValue
		}
		st := statement{Effect: fmt.Sprint(m["Effect"]), Actions: strs(m["Action"]), Resources: strs(m["Resource"])}
		st.Sid, _ = m["Sid"].(string)
		st.Condition, _ = m["Condition"].(map[string]any)
		for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
			if _, ok := m[k]; ok {
				st.Broad = append(st.Broad, k)
			}
		}
		out = append(out, st)
	}
	return out
}

// condEquals returns Condition.StringEquals[key] as a list of values.
func (s statement) condEquals(key string) []string {
	return s.cond("StringEquals", key)
}

// cond returns Condition[op][key] as a list of values.
func (s statement) cond(op, key string) []string {
	m, _ := s.Condition[op].(map[string]any)
	return strs(m[key])
}

// condKeys lists "op key" for every condition key of the statement.
func (s statement) condKeys() []string {
	var out []string
	for op, m := range s.Condition {
		mm, _ := m.(map[string]any)
		for k := range mm {
			out = append(out, op+" "+k)
		}
	}
	sort.Strings(out)
	return out
}

// scope is what one set of parameter values allows.
type scope struct {
	keyTagKey     string
	keyTag        string // "" = no tag condition (only with keyArns)
	keyArns       []string
	legacyPkcs1   bool
	secretPrefix  string
	secretTag     string
	secretKeyArns []string
	topic         string // the notification topic's ARN
}

type policyChecker struct {
	sc    scope
	table string
	// readable: the attributes a projected read may name (the record
	// attributes of the Go code but the token bytes).
	readable []string
}

// roleUse is what one role's owner needs beyond the scope: its log group
// (a function), and for a state machine what its definition calls.
type roleUse struct {
	logGroup string          // the function's log group ARN ("" for a state machine)
	invoke   map[string]bool // function ARNs its Tasks invoke
	start    map[string]bool // state machine ARNs it may start
	follow   map[string]bool // execution ARN patterns it may describe and stop
	syncRule bool            // it has a .sync Task
	queues   map[string]bool // queue ARNs that are its function's on-failure destination
}

// Keys of this account in any Region ("*", or a listed key's Region): a
// multi-Region key's replicas live in other Regions (docs/rotation.md).
var keyArnRe = regexp.MustCompile(`^arn:aws:kms:(\*|[a-z]{2}(-[a-z]+)+-[0-9]):` + account + `:key/(\*|[0-9a-f-]{36}|mrk-[0-9a-f]{32})$`)

// storesSecrets: the role that writes generated material as a new secret
// version (PutSecretValue; GenerateDataKey for a secret under a customer
// managed key).
const storesSecrets = "FetchParametersRole"

// readsTokenBytes: the reads a role may make without a projection, because
// it needs the token bytes: the import stage's GetItem of the token record
// (ImportKeyMaterial sends the import token and the wrapped material).
var readsTokenBytes = map[string][]string{"ImportMaterialRole": {"dynamodb:GetItem"}}

// registryReader: the role that only reads the registry partition (its
// Query is limited with dynamodb:LeadingKeys instead of a projection).
const registryReader = "PlannerRole"

// registryPK is the registry's partition key value (registry.PK).
const registryPK = "REGISTRY"

// tokenBytes are the token record attributes no other role may read.
var tokenBytes = []string{"importToken", "encryptedKeyMaterial"}

// Wrapping algorithms and specs GetParametersForImport may ask for.
var (
	wrappingAlgorithms = []string{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"}
	legacyAlgorithm    = "RSAES_PKCS1_V1_5"
	wrappingKeySpecs   = []string{"RSA_2048", "RSA_3072", "RSA_4096"}
	rsaKeySpecs        = []string{"RSA_2048", "RSA_3072", "RSA_4096"}
)

// The encryption context the verify stage sends (shared/stages/verifyimport).
const (
	verificationPurpose = "kms-reimport verification"
	executionPattern    = "arn:aws:states:" + region + ":" + account + ":execution:*"
)

// check returns every rule a role's statements break, for a role whose
// owner needs what use says.
func (c *policyChecker) check(role string, sts []statement, use roleUse) []string {
	var bad []string
	add := func(s statement, format string, a ...any) {
		bad = append(bad, fmt.Sprintf("%s statement %q: %s", role, s.Sid, fmt.Sprintf(format, a...)))
	}
	for _, s := range sts {
		if len(s.Broad) > 0 {
			add(s, "uses %v", s.Broad)
		}
		if len(s.Actions) == 0 || len(s.Resources) == 0 {
			add(s, "needs explicit Action and Resource")
		}
		if s.Effect != "Allow" {
			continue
		}
		starResource := false
		for _, r := range s.Resources {
			if r == "*" {
				starResource = true
			}
		}
		services := map[string]bool{}
		for _, a := range s.Actions {
			if strings.Contains(a, "*") || strings.Contains(a, "?") {
				add(s, "wildcard action %q", a)
			}
			svc, _, _ := strings.Cut(a, ":")
			services[svc] = true
			if starResource && !noResourceLevel[a] {
				add(s, "action %s on resource \"*\" (it supports resource-level permissions)", a)
			}
		}
		if len(services) > 1 {
			add(s, "mixes services %v: one service per statement keeps the scoping checkable", services)
		}
		switch {
		case services["kms"]:
			c.checkKMS(role, s, add)
		case services["secretsmanager"]:
			for _, a := range s.Actions {
				if a != "secretsmanager:GetSecretValue" && !(a == "secretsmanager:PutSecretValue" && role == storesSecrets && s.Sid == "GeneratedMaterial") {
					add(s, "Secrets Manager action %s: only GetSecretValue is needed (and PutSecretValue by %s)", a, storesSecrets)
				}
			}
			want := fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s*", region, account, c.sc.secretPrefix)
			if len(s.Resources) != 1 || s.Resources[0] != want {
				add(s, "secret resources %v, want [%s]", s.Resources, want)
			}
			if c.sc.secretTag != "" {
				if got := s.condEquals("secretsmanager:ResourceTag/kms-reimport"); len(got) != 1 || got[0] != c.sc.secretTag {
					add(s, "ManagedSecretTagValue is %q but the statement requires tag value %v", c.sc.secretTag, got)
				}
			}
		case services["dynamodb"]:
			if len(s.Resources) != 1 || s.Resources[0] != c.table {
				add(s, "DynamoDB resources %v, want the table alone (%s)", s.Resources, c.table)
			}
			c.checkDynamoDB(role, s, add)
		case services["sqs"]:
			for _, a := range s.Actions {
				if a != "sqs:SendMessage" {
					add(s, "SQS action %s: only SendMessage (an on-failure destination) is needed", a)
				}
			}
			for _, r := range s.Resources {
				if !use.queues[r] {
					add(s, "sqs:SendMessage to %s, which is not its function's on-failure destination (%v)", r, keys(use.queues))
				}
			}
		case services["sns"]:
			for _, a := range s.Actions {
				if a != "sns:Publish" {
					add(s, "SNS action %s: only Publish is needed", a)
				}
			}
			if len(s.Resources) != 1 || s.Resources[0] != c.sc.topic || c.sc.topic == "" {
				add(s, "SNS resources %v, want the notification topic alone (%s)", s.Resources, c.sc.topic)
			}
		case services["lambda"]:
			for _, a := range s.Actions {
				if a != "lambda:InvokeFunction" {
					add(s, "Lambda action %s", a)
				}
			}
			for _, r := range s.Resources {
				if !use.invoke[r] {
					add(s, "invokes %s, which no Task of its state machine invokes", r)
				}
			}
		case services["states"]:
			for _, a := range s.Actions {
				var allowed map[string]bool
				switch {
				case contains(startActions, a):
					allowed = use.start
				case contains(followActions, a):
					allowed = use.follow
				default:
					add(s, "Step Functions action %s: only StartExecution, DescribeExecution and StopExecution are needed", a)
					continue
				}
				for _, r := range s.Resources {
					if !allowed[r] {
						add(s, "%s on %s: its state machine starts (or follows) no such state machine or execution (allowed: %v)", a, r, keys(allowed))
					}
				}
			}
		case services["events"]:
			for _, a := range s.Actions {
				if !contains(syncRuleActions, a) {
					add(s, "EventBridge action %s: only %v on the .sync managed rule", a, syncRuleActions)
				}
			}
			if !use.syncRule {
				add(s, "EventBridge actions %v, but its owner has no .sync Task", s.Actions)
			}
			if len(s.Resources) != 1 || s.Resources[0] != syncRule {
				add(s, "EventBridge resources %v, want the managed rule alone (%s)", s.Resources, syncRule)
			}
		case services["logs"]:
			if !starResource && (len(s.Resources) != 1 || s.Resources[0] != use.logGroup || use.logGroup == "") {
				add(s, "logs resources %v, want the function's own log group %s", s.Resources, use.logGroup)
			}
		default:
			add(s, "service %v is not expected in this application", services)
		}
	}
	return bad
}

func (c *policyChecker) checkKMS(role string, s statement, add func(statement, string, ...any)) {
	if via := s.condEquals("kms:ViaService"); len(via) > 0 {
		// The secrets' encryption key, used by Secrets Manager on the
		// function's behalf.
		want := "[kms:Decrypt]"
		if role == storesSecrets && s.Sid == "GeneratedSecretEncryption" {
			want = "[kms:GenerateDataKey]"
		}
		if fmt.Sprint(s.Actions) != want {
			add(s, "a kms:ViaService statement may only allow %s, has %v", want, s.Actions)
		}
		if len(via) != 1 || via[0] != "secretsmanager."+region+".amazonaws.com" {
			add(s, "kms:ViaService %v, want Secrets Manager in this Region", via)
		}
		if fmt.Sprint(s.Resources) != fmt.Sprint(c.sc.secretKeyArns) || len(c.sc.secretKeyArns) == 0 {
			add(s, "secret decryption on %v, want exactly SecretKmsKeyArns %v", s.Resources, c.sc.secretKeyArns)
		}
		return
	}
	if origin := s.condEquals("kms:KeyOrigin"); len(origin) != 1 || origin[0] != "EXTERNAL" {
		add(s, "KMS actions %v are not limited to keys with origin EXTERNAL (Condition StringEquals kms:KeyOrigin = EXTERNAL)", s.Actions)
	}
	for _, r := range s.Resources {
		if !keyArnRe.MatchString(r) {
			add(s, "KMS resource %q is not a key ARN of this account and Region", r)
		}
	}
	if len(c.sc.keyArns) > 0 && fmt.Sprint(s.Resources) != fmt.Sprint(c.sc.keyArns) {
		add(s, "ManagedKeyArns is %v but the statement allows %v", c.sc.keyArns, s.Resources)
	}
	var tagConds []string
	for _, k := range s.condKeys() {
		if strings.Contains(strings.ToLower(k), " aws:resourcetag/") {
			tagConds = append(tagConds, k)
		}
	}
	switch {
	case c.sc.keyTag != "":
		want := "aws:ResourceTag/" + c.sc.keyTagKey
		if got := s.condEquals(want); len(got) != 1 || got[0] != c.sc.keyTag || len(tagConds) != 1 {
			add(s, "keys must carry tag %s=%s: the statement's tag conditions are %v (StringEquals %s = %v)", c.sc.keyTagKey, c.sc.keyTag, tagConds, want, got)
		}
	case len(c.sc.keyArns) == 0:
		add(s, "neither a tag condition nor a key list: %v would apply to every EXTERNAL key of the account", s.Actions)
	case len(tagConds) > 0:
		add(s, "ManagedKeyTagValue is empty but the statement has tag conditions %v", tagConds)
	}
	// A set operator with the single-valued kms:EncryptionContext:<key>
	// matches requests without that pair (KMS developer guide).
	for op, m := range s.Condition {
		mm, _ := m.(map[string]any)
		for k := range mm {
			if strings.Contains(op, ":") && strings.HasPrefix(strings.ToLower(k), "kms:encryptioncontext:") {
				add(s, "set operator %s with the single-valued %s", op, k)
			}
		}
	}
	if contains(s.Actions, "kms:GetParametersForImport") {
		algs := append([]string(nil), wrappingAlgorithms...)
		if c.sc.legacyPkcs1 {
			algs = append(algs, legacyAlgorithm)
		}
		if got := s.condEquals("kms:WrappingAlgorithm"); sorted(got) != sorted(algs) {
			add(s, "kms:GetParametersForImport with StringEquals kms:WrappingAlgorithm %v, want exactly %v", got, algs)
		}
		if got := s.condEquals("kms:WrappingKeySpec"); sorted(got) != sorted(wrappingKeySpecs) {
			add(s, "kms:GetParametersForImport with StringEquals kms:WrappingKeySpec %v, want exactly %v", got, wrappingKeySpecs)
		}
	}
	if contains(s.Actions, "kms:Encrypt") || contains(s.Actions, "kms:Decrypt") {
		purpose := s.condEquals("kms:EncryptionContext:purpose")
		if contains(s.Actions, "kms:Encrypt") || len(purpose) > 0 {
			// The symmetric round trip: exactly the context the stage sends.
			if len(purpose) != 1 || purpose[0] != verificationPurpose {
				add(s, "%v needs StringEquals kms:EncryptionContext:purpose = %q, has %v", s.Actions, verificationPurpose, purpose)
			}
			if got := s.cond("ForAllValues:StringEquals", "kms:EncryptionContextKeys"); sorted(got) != "execution purpose" {
				add(s, "%v needs ForAllValues:StringEquals kms:EncryptionContextKeys = [purpose execution] (no other context key), has %v", s.Actions, got)
			}
			if got := s.cond("StringLike", "kms:EncryptionContext:execution"); len(got) != 1 || got[0] != executionPattern {
				add(s, "%v needs StringLike kms:EncryptionContext:execution = %s, has %v", s.Actions, executionPattern, got)
			}
			if got := s.condEquals("kms:KeySpec"); fmt.Sprint(got) != "[SYMMETRIC_DEFAULT]" {
				add(s, "the round trip is for symmetric keys: StringEquals kms:KeySpec = SYMMETRIC_DEFAULT, has %v", got)
			}
		} else {
			// Decrypt alone, no context: an RSA encryption key's probe.
			if fmt.Sprint(s.Actions) != "[kms:Decrypt]" {
				add(s, "a statement without encryption context may allow kms:Decrypt alone, has %v", s.Actions)
			}
			if got := s.condEquals("kms:KeySpec"); len(got) == 0 || !subset(got, rsaKeySpecs) {
				add(s, "kms:Decrypt without encryption context only for RSA keys (StringEquals kms:KeySpec within %v), has %v", rsaKeySpecs, got)
			}
			if got := s.condEquals("kms:EncryptionAlgorithm"); fmt.Sprint(got) != "[RSAES_OAEP_SHA_256]" {
				add(s, "kms:Decrypt of an RSA key only with StringEquals kms:EncryptionAlgorithm = RSAES_OAEP_SHA_256, has %v", got)
			}
		}
	}
}

// checkDynamoDB: projected reads, the planner's registry partition, the
// import stage's token read, writes that return nothing, nothing else.
func (c *policyChecker) checkDynamoDB(role string, s statement, add func(statement, string, ...any)) {
	var reads, writes []string
	for _, a := range s.Actions {
		switch a {
		case "dynamodb:GetItem", "dynamodb:Query":
			reads = append(reads, a)
		case "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem":
			writes = append(writes, a)
		default:
			add(s, "DynamoDB action %s is not needed (a Scan, batch or PartiQL read would also escape the projection rule)", a)
		}
	}
	if len(reads) > 0 && len(writes) > 0 {
		add(s, "mixes reads %v and writes %v: they take different conditions", reads, writes)
	}
	if len(writes) > 0 {
		rv := append(s.cond("StringEqualsIfExists", "dynamodb:ReturnValues"), s.condEquals("dynamodb:ReturnValues")...)
		if fmt.Sprint(rv) != "[NONE]" {
			add(s, "writes %v may return the item (ReturnValues ALL_OLD/ALL_NEW): want StringEqualsIfExists dynamodb:ReturnValues = NONE, has %v", writes, rv)
		}
	}
	if len(reads) == 0 {
		return
	}
	switch {
	case role == registryReader:
		if fmt.Sprint(reads) != "[dynamodb:Query]" {
			add(s, "%s reads the registry with Query only, has %v", role, reads)
		}
		if got := s.cond("ForAllValues:StringEquals", "dynamodb:LeadingKeys"); fmt.Sprint(got) != "["+registryPK+"]" {
			add(s, "%s: Query only in the registry partition (ForAllValues:StringEquals dynamodb:LeadingKeys = [%s]), has %v", role, registryPK, got)
		}
	case subset(reads, readsTokenBytes[role]) && len(s.Condition) == 1 && len(s.cond("ForAllValues:StringLike", "dynamodb:LeadingKeys")) > 0:
		// The token read of the import stage (documented exception), in
		// the keys' partitions only.
	default:
		got := s.cond("ForAllValues:StringEquals", "dynamodb:Attributes")
		for _, b := range tokenBytes {
			if contains(got, b) {
				add(s, "reads %v may return the token bytes: dynamodb:Attributes names %s", reads, b)
			}
		}
		if sorted(got) != sorted(c.readable) {
			add(s, "reads %v: want ForAllValues:StringEquals dynamodb:Attributes = every readable record attribute\n  %s\nhas\n  %s", reads, sorted(c.readable), sorted(got))
		}
		// IfExists, as in the IAM user guide's example ("Amazon DynamoDB:
		// Allows access to specific attributes"): GetItem has no Select
		// parameter and the stages never send one, so a plain StringEquals
		// on it never matches and denies every read.
		if sel := s.cond("StringEqualsIfExists", "dynamodb:Select"); fmt.Sprint(sel) != "[SPECIFIC_ATTRIBUTES]" {
			add(s, "reads %v: want StringEqualsIfExists dynamodb:Select = SPECIFIC_ATTRIBUTES (a read that asks for more than the projection is refused), has %v", reads, sel)
		}
		if sel := s.condEquals("dynamodb:Select"); len(sel) > 0 {
			add(s, "reads %v: StringEquals dynamodb:Select requires a parameter GetItem doesn't have and the stages never send: every read denied", reads)
		}
	}
}

// subset reports whether every element of a is in b (and a is not empty).
func subset(a, b []string) bool {
	if len(a) == 0 {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// The topic the template creates, and one given with AlarmTopicArn.
var (
	ownTopic   = fmt.Sprintf("arn:aws:sns:%s:%s:NotificationTopic", region, account)
	givenTopic = fmt.Sprintf("arn:aws:sns:%s:%s:ops-alerts", region, account)
)

var (
	listedKeys = []string{"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"}
	scopes     = []struct {
		name      string
		overrides map[string]any
		sc        scope
	}{
		// Least privilege by default: keys tagged kms-reimport:managed=true.
		{"defaults", nil, scope{keyTagKey: "kms-reimport:managed", keyTag: "true", secretPrefix: "kms-reimport/", topic: ownTopic}},
		{"tags", map[string]any{"ManagedKeyTagKey": "team:crypto/owner", "ManagedKeyTagValue": "prod", "ManagedSecretTagValue": "prod", "AlarmEmail": "ops@example.com", "MaterialProofs": "false"},
			scope{keyTagKey: "team:crypto/owner", keyTag: "prod", secretPrefix: "kms-reimport/", secretTag: "prod", topic: ownTopic}},
		// A key list alone (no tag condition), legacy wrapping allowed.
		{"lists", map[string]any{
			"ManagedKeyArns":     strings.Join(listedKeys, ","),
			"ManagedKeyTagValue": "",
			"AllowLegacyPkcs1":   "true",
			"SecretKmsKeyArns":   "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
			"SecretNamePrefix":   "team-a/kms/",
			"AlarmTopicArn":      givenTopic,
			"AlarmEmail":         "ops@example.com",
			"GeneratedMaterial":  "true",
			"RotateOnDemand":     "true",
		}, scope{secretPrefix: "team-a/kms/", keyArns: listedKeys, legacyPkcs1: true,
			secretKeyArns: []string{"arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"},
			topic:         givenTopic}},
		// A key list and the default tag: both apply.
		{"list and tag", map[string]any{"ManagedKeyArns": strings.Join(listedKeys, ",")},
			scope{keyTagKey: "kms-reimport:managed", keyTag: "true", keyArns: listedKeys, secretPrefix: "kms-reimport/", topic: ownTopic}},
	}
)

// machineUse is what a state machine's role must allow, from its
// definition: the functions its Tasks invoke, the state machines its
// startExecution Tasks start (and their executions for .sync), and, for a
// Distributed Map, itself and its own child executions.
func machineUse(p *parsed, b *binding, id string) roleUse {
	u := roleUse{invoke: map[string]bool{}, start: map[string]bool{}, follow: map[string]bool{}}
	execs := func(smArn, sep string) string {
		name := smArn[strings.LastIndex(smArn, ":")+1:]
		return fmt.Sprintf("arn:aws:states:%s:%s:execution:%s%s*", region, account, name, sep)
	}
	for _, tk := range b.tasks {
		if tk.machine != id {
			continue
		}
		switch tk.kind {
		case lambdaTask:
			u.invoke[fmt.Sprint(p.r.GetAtt(tk.target, "Arn"))] = true
		case startTask:
			arn := p.arnOf(tk.target)
			u.start[arn] = true
			if tk.sync {
				u.follow[execs(arn, ":")] = true
				u.syncRule = true
			}
		}
	}
	if b.distributed[id] {
		own := p.arnOf(id)
		u.start[own] = true
		u.follow[execs(own, "/")] = true
	}
	return u
}

// TestPolicies checks every role of the template against the rules, for
// default, tag-scoped and list-scoped parameter values (the last with an
// existing topic in AlarmTopicArn).
func TestPolicies(t *testing.T) {
	for _, tc := range scopes {
		t.Run(tc.name, func(t *testing.T) {
			p := parseTemplate(t, tc.overrides)
			b := bindings(t, p)
			c := &policyChecker{sc: tc.sc, table: fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/RotationTable", region, account), readable: readableAttributes(t)}
			destinations := onFailureDestinations(p)
			fns := p.T.GetAllServerlessFunctionResources()
			sms := p.T.GetAllServerlessStateMachineResources()
			roles := p.T.GetAllIAMRoleResources()
			roleOf := map[string]string{} // role logical id -> function or state machine logical id
			for id, f := range fns {
				if f.Role == nil {
					t.Errorf("%s has no Role", id)
					continue
				}
				roleOf[strings.TrimPrefix(*f.Role, "arn:aws:iam::"+account+":role/"+stackName+"-")] = id
			}
			for id, sm := range sms {
				if sm.Role == nil {
					t.Errorf("%s has no Role", id)
					continue
				}
				roleOf[strings.TrimPrefix(*sm.Role, "arn:aws:iam::"+account+":role/"+stackName+"-")] = id
			}
			for rid, role := range roles {
				owner, ok := roleOf[rid]
				if !ok {
					t.Errorf("role %s is used by no function or state machine", rid)
					continue
				}
				if len(role.ManagedPolicyArns) > 0 {
					t.Errorf("role %s has managed policies %v: write the statements out", rid, role.ManagedPolicyArns)
				}
				_, isFn := fns[owner]
				// Trust: one service principal (Lambda for a function, Step
				// Functions for a state machine), this account only.
				trust := statements(role.AssumeRolePolicyDocument)
				principal := "states.amazonaws.com"
				if isFn {
					principal = "lambda.amazonaws.com"
				}
				if len(trust) != 1 || fmt.Sprint(trust[0].Actions) != "[sts:AssumeRole]" || len(trust[0].condEquals("aws:SourceAccount")) != 1 ||
					fmt.Sprint(trustPrincipal(role.AssumeRolePolicyDocument)) != "[map[Service:"+principal+"]]" {
					t.Errorf("role %s: trust policy must let %s alone assume it, for this account (aws:SourceAccount)", rid, principal)
				}
				var sts []statement
				for _, pol := range role.Policies {
					sts = append(sts, statements(pol.PolicyDocument)...)
				}
				// Customer managed policies of the template attached to it
				// (AWS::IAM::ManagedPolicy Roles) count as its own.
				for _, mp := range p.T.GetAllIAMManagedPolicyResources() {
					if slices.Contains(mp.Roles, rid) {
						sts = append(sts, statements(mp.PolicyDocument)...)
					}
				}
				var use roleUse
				if isFn {
					use.logGroup = fmt.Sprintf("arn:aws:logs:%s:%s:log-group:/aws/lambda/%s/%s:*", region, account, stackName, owner)
					use.queues = destinations[owner]
				} else {
					use = machineUse(p, b, owner)
				}
				for _, msg := range c.check(rid, sts, use) {
					t.Error(msg)
				}
				granted := map[string]bool{}
				for _, s := range sts {
					if s.Effect == "Allow" && len(s.condEquals("kms:ViaService")) == 0 {
						for _, a := range s.Actions {
							granted[a] = true
						}
					}
				}
				var want []string
				if isFn {
					_, ok := expectedActions[owner]
					w := actionsFor(owner, tc.overrides)
					if !ok {
						t.Errorf("function %s has no expected action list in tests/template/policy_test.go: add what it calls", owner)
						continue
					}
					want = append(append(want, w...), "logs:CreateLogStream", "logs:PutLogEvents")
				} else {
					// A state machine: what its definition needs, and the
					// log delivery actions (it logs to CloudWatch Logs).
					if len(use.invoke) > 0 {
						want = append(want, "lambda:InvokeFunction")
					}
					if len(use.start) > 0 {
						want = append(want, startActions...)
					}
					if len(use.follow) > 0 {
						want = append(want, followActions...)
					}
					if use.syncRule {
						want = append(want, syncRuleActions...)
					}
					for a := range noResourceLevel {
						want = append(want, a)
					}
					// Exactly these resources for each action: nothing
					// missing (the check above refused anything extra).
					for action, res := range map[string]map[string]bool{
						"lambda:InvokeFunction": use.invoke, "states:StartExecution": use.start,
						"states:DescribeExecution": use.follow, "states:StopExecution": use.follow,
					} {
						if got := resourcesOf(sts, action); got != keys(res) {
							t.Errorf("%s (%s): %s on\n  %s\nwant exactly\n  %s", rid, owner, action, got, keys(res))
						}
					}
				}
				if got, w := keys(granted), sorted(want); got != w {
					t.Errorf("%s (%s) grants\n  %s\nwant exactly\n  %s", rid, owner, got, w)
				}
			}
		})
	}
}

// onFailureDestinations maps a function's logical id to the queue ARNs its
// AWS::Lambda::EventInvokeConfig sends failed asynchronous invocations to.
func onFailureDestinations(p *parsed) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	rs, _ := p.Raw["Resources"].(map[string]any)
	for _, r := range rs {
		m, _ := r.(map[string]any)
		if m["Type"] != "AWS::Lambda::EventInvokeConfig" {
			continue
		}
		props, _ := m["Properties"].(map[string]any)
		fn := fmt.Sprint(props["FunctionName"])
		dc, _ := props["DestinationConfig"].(map[string]any)
		of, _ := dc["OnFailure"].(map[string]any)
		if d, ok := of["Destination"].(string); ok && strings.HasPrefix(d, "arn:aws:sqs:") {
			if out[fn] == nil {
				out[fn] = map[string]bool{}
			}
			out[fn][d] = true
		}
	}
	return out
}

// resourcesOf lists the resources an Allow statement grants action on.
func resourcesOf(sts []statement, action string) string {
	set := map[string]bool{}
	for _, s := range sts {
		if s.Effect == "Allow" && contains(s.Actions, action) {
			for _, r := range s.Resources {
				set[r] = true
			}
		}
	}
	return keys(set)
}

func trustPrincipal(doc any) []any {
	d, _ := doc.(map[string]any)
	var out []any
	switch s := d["Statement"].(type) {
	case []any:
		for _, x := range s {
			if m, ok := x.(map[string]any); ok {
				out = append(out, m["Principal"])
			}
		}
	case map[string]any:
		out = append(out, s["Principal"])
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sorted(out)
}

func sorted(s []string) string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return strings.Join(c, " ")
}

// TestPolicyCheckerCatches proves the checker fails what it must: a "*"
// action, a service wildcard, an unscoped kms:ImportKeyMaterial (no origin
// condition, or on "*"), secrets beyond the prefix, another table, another
// topic, and Step Functions, EventBridge and Lambda grants beyond what the
// role's state machine calls (or from a function's role at all).
func TestPolicyCheckerCatches(t *testing.T) {
	c := &policyChecker{sc: defaultScope(), table: "arn:aws:dynamodb:eu-west-2:111122223333:table/RotationTable"}
	keyStar := "arn:aws:kms:eu-west-2:111122223333:key/*"
	origin := map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL", "aws:ResourceTag/kms-reimport:managed": "true"}}
	rotation := "arn:aws:states:eu-west-2:111122223333:stateMachine:RotationStateMachine"
	fleet := "arn:aws:states:eu-west-2:111122223333:stateMachine:kms-reimport-fleet"
	planner := "arn:aws:lambda:eu-west-2:111122223333:function:PlannerFunction"
	fleetUse := roleUse{
		invoke: map[string]bool{planner: true},
		start:  map[string]bool{rotation: true, fleet: true},
		follow: map[string]bool{
			"arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:*": true,
			"arn:aws:states:eu-west-2:111122223333:execution:kms-reimport-fleet/*":   true,
		},
		syncRule: true,
	}
	fnUse := roleUse{logGroup: "arn:aws:logs:eu-west-2:111122223333:log-group:PlannerLogs:*"}
	cases := map[string]struct {
		s   statement
		use roleUse
	}{
		"star action":             {statement{Sid: "x", Effect: "Allow", Actions: []string{"*"}, Resources: []string{"*"}}, fleetUse},
		"star action, scoped":     {statement{Sid: "x", Effect: "Allow", Actions: []string{"*"}, Resources: []string{c.table}}, fnUse},
		"service wildcard":        {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{keyStar}, Condition: origin}, fnUse},
		"import without origin":   {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}}, fnUse},
		"import on star":          {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{"*"}, Condition: origin}, fnUse},
		"import on alias":         {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{"arn:aws:kms:eu-west-2:111122223333:alias/x"}, Condition: origin}, fnUse},
		"import other origin":     {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}, Condition: map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "AWS_KMS"}}}, fnUse},
		"any secret":              {statement{Sid: "x", Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{"arn:aws:secretsmanager:eu-west-2:111122223333:secret:*"}}, fnUse},
		"another table":           {statement{Sid: "x", Effect: "Allow", Actions: []string{"dynamodb:PutItem"}, Resources: []string{"arn:aws:dynamodb:eu-west-2:111122223333:table/*"}}, fnUse},
		"NotAction":               {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:Decrypt"}, Resources: []string{keyStar}, Condition: origin, Broad: []string{"NotAction"}}, fnUse},
		"decrypt via, wrong keys": {statement{Sid: "x", Effect: "Allow", Actions: []string{"kms:Decrypt"}, Resources: []string{keyStar}, Condition: map[string]any{"StringEquals": map[string]any{"kms:ViaService": "secretsmanager.eu-west-2.amazonaws.com"}}}, fnUse},
		"another log group":       {statement{Sid: "x", Effect: "Allow", Actions: []string{"logs:PutLogEvents"}, Resources: []string{"arn:aws:logs:eu-west-2:111122223333:log-group:Other:*"}}, fnUse},
		// SNS: Publish on the topic only.
		"publish to another topic": {statement{Sid: "x", Effect: "Allow", Actions: []string{"sns:Publish"}, Resources: []string{givenTopic}}, fnUse},
		"publish to any topic":     {statement{Sid: "x", Effect: "Allow", Actions: []string{"sns:Publish"}, Resources: []string{"arn:aws:sns:eu-west-2:111122223333:*"}}, fnUse},
		"subscribe":                {statement{Sid: "x", Effect: "Allow", Actions: []string{"sns:Subscribe"}, Resources: []string{ownTopic}}, fnUse},
		// Lambda: only what the role's own state machine invokes.
		"invoke unsubstituted": {statement{Sid: "x", Effect: "Allow", Actions: []string{"lambda:InvokeFunction"}, Resources: []string{"arn:aws:lambda:eu-west-2:111122223333:function:VerifyImportFunction"}}, fleetUse},
		"invoke from function": {statement{Sid: "x", Effect: "Allow", Actions: []string{"lambda:InvokeFunction"}, Resources: []string{planner}}, fnUse},
		// Step Functions: the started state machines and their executions.
		"start any":                {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:StartExecution"}, Resources: []string{"*"}}, fleetUse},
		"start another":            {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:StartExecution"}, Resources: []string{"arn:aws:states:eu-west-2:111122223333:stateMachine:Other"}}, fleetUse},
		"start from function":      {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:StartExecution"}, Resources: []string{rotation}}, fnUse},
		"describe every execution": {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:DescribeExecution"}, Resources: []string{"arn:aws:states:eu-west-2:111122223333:execution:*"}}, fleetUse},
		"stop on state machine":    {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:StopExecution"}, Resources: []string{rotation}}, fleetUse},
		"describe, other action":   {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:SendTaskSuccess"}, Resources: []string{rotation}}, fleetUse},
		// EventBridge: the managed rule only, and only with a .sync Task.
		"any rule":        {statement{Sid: "x", Effect: "Allow", Actions: []string{"events:PutRule"}, Resources: []string{"arn:aws:events:eu-west-2:111122223333:rule/*"}}, fleetUse},
		"rule, no sync":   {statement{Sid: "x", Effect: "Allow", Actions: []string{"events:PutRule"}, Resources: []string{syncRule}}, roleUse{invoke: fleetUse.invoke}},
		"put events":      {statement{Sid: "x", Effect: "Allow", Actions: []string{"events:PutEvents"}, Resources: []string{syncRule}}, fleetUse},
		"mixed services":  {statement{Sid: "x", Effect: "Allow", Actions: []string{"states:StartExecution", "events:PutRule"}, Resources: []string{rotation, syncRule}}, fleetUse},
		"unknown service": {statement{Sid: "x", Effect: "Allow", Actions: []string{"s3:GetObject"}, Resources: []string{"arn:aws:s3:::bucket/key"}}, fleetUse},
	}
	for name, tc := range cases {
		if bad := c.check("TestRole", []statement{tc.s}, tc.use); len(bad) == 0 {
			t.Errorf("%s: the checker accepted %+v", name, tc.s)
		}
	}
	goods := map[string]struct {
		s   statement
		use roleUse
	}{
		"scoped import":   {statement{Sid: "ok", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}, Condition: origin}, fnUse},
		"publish":         {statement{Sid: "ok", Effect: "Allow", Actions: []string{"sns:Publish"}, Resources: []string{ownTopic}}, fnUse},
		"start rotations": {statement{Sid: "ok", Effect: "Allow", Actions: []string{"states:StartExecution"}, Resources: []string{rotation, fleet}}, fleetUse},
		"follow":          {statement{Sid: "ok", Effect: "Allow", Actions: []string{"states:DescribeExecution", "states:StopExecution"}, Resources: []string{"arn:aws:states:eu-west-2:111122223333:execution:RotationStateMachine:*"}}, fleetUse},
		"sync rule":       {statement{Sid: "ok", Effect: "Allow", Actions: syncRuleActions, Resources: []string{syncRule}}, fleetUse},
		"invoke planner":  {statement{Sid: "ok", Effect: "Allow", Actions: []string{"lambda:InvokeFunction"}, Resources: []string{planner}}, fleetUse},
	}
	for name, g := range goods {
		if bad := c.check("TestRole", []statement{g.s}, g.use); len(bad) > 0 {
			t.Errorf("%s: the checker refused %+v: %v", name, g.s, bad)
		}
	}
	// The whole-template scan finds a "*" action wherever it is.
	doc := map[string]any{"Resources": map[string]any{
		"TopicPolicy": map[string]any{"Type": "AWS::SNS::TopicPolicy", "Properties": map[string]any{"PolicyDocument": map[string]any{
			"Statement": []any{map[string]any{"Effect": "Allow", "Action": []any{"sns:Publish", "*"}, "Resource": "*"}}}}},
		"Policy": map[string]any{"Type": "AWS::IAM::Policy", "Properties": map[string]any{"PolicyDocument": map[string]any{
			"Statement": map[string]any{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}}},
	}}
	if got := starActions(doc, ""); len(got) != 2 {
		t.Errorf("starActions found %v, want the topic policy's \"*\" and the policy's iam:*", got)
	}
}

// starActions lists every Action / NotAction value with a wildcard, at any
// depth of the document.
func starActions(v any, path string) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "Action" || k == "NotAction" {
				for _, a := range strs(x) {
					if strings.ContainsAny(a, "*?") {
						out = append(out, fmt.Sprintf("%s.%s: %q", path, k, a))
					}
				}
			}
			out = append(out, starActions(x, path+"."+k)...)
		}
	case []any:
		for i, x := range v {
			out = append(out, starActions(x, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	sort.Strings(out)
	return out
}

// TestNoStarActionAnywhere: no policy document anywhere in the template
// (roles, and any policy or resource policy added later) has a wildcard
// action, for every set of parameter values.
func TestNoStarActionAnywhere(t *testing.T) {
	for _, tc := range scopes {
		p := parseTemplate(t, tc.overrides)
		for _, a := range starActions(p.Raw["Resources"], "Resources") {
			t.Errorf("%s: wildcard action at %s", tc.name, a)
		}
	}
}

// defaultScope is what the template's defaults allow.
func defaultScope() scope {
	return scope{keyTagKey: "kms-reimport:managed", keyTag: "true", secretPrefix: "kms-reimport/", topic: ownTopic}
}

// TestConditionCheckerCatches proves the checker refuses what the
// conditions on keys and records are for: keys not limited by tag or list,
// a wrong tag, unconditioned import parameters or round trips, set
// operators on encryption context keys, reads that could return the token
// bytes, writes that could return items, the planner outside the registry,
// and queues other than the function's on-failure destination; and accepts
// the template's own shapes.
func TestConditionCheckerCatches(t *testing.T) {
	table := "arn:aws:dynamodb:eu-west-2:111122223333:table/RotationTable"
	readable := []string{"keyArn", "pk", "publicKey", "sk", "status"}
	c := &policyChecker{sc: defaultScope(), table: table, readable: readable}
	list := &policyChecker{sc: scope{keyArns: listedKeys, secretPrefix: "kms-reimport/", topic: ownTopic}, table: table, readable: readable}
	legacy := &policyChecker{sc: scope{keyTagKey: "kms-reimport:managed", keyTag: "true", legacyPkcs1: true, secretPrefix: "kms-reimport/", topic: ownTopic}, table: table, readable: readable}
	unscoped := &policyChecker{sc: scope{secretPrefix: "kms-reimport/", topic: ownTopic}, table: table, readable: readable}
	keys := []string{"arn:aws:kms:*:111122223333:key/*"}
	queue := "arn:aws:sqs:eu-west-2:111122223333:FailedRotationDLQ"
	fnUse := roleUse{logGroup: "arn:aws:logs:eu-west-2:111122223333:log-group:RecordFailureLogs:*", queues: map[string]bool{queue: true}}
	tagged := func(extra map[string]any) map[string]any {
		se := map[string]any{"kms:KeyOrigin": "EXTERNAL", "aws:ResourceTag/kms-reimport:managed": "true"}
		for k, v := range extra {
			se[k] = v
		}
		return map[string]any{"StringEquals": se}
	}
	with := func(cond map[string]any, op string, kv map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range cond {
			out[k] = v
		}
		out[op] = kv
		return out
	}
	wrapping := map[string]any{
		"kms:WrappingAlgorithm": []any{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1"},
		"kms:WrappingKeySpec":   []any{"RSA_2048", "RSA_3072", "RSA_4096"},
	}
	roundTrip := with(with(tagged(map[string]any{"kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:EncryptionContext:purpose": verificationPurpose}),
		"StringLike", map[string]any{"kms:EncryptionContext:execution": executionPattern}),
		"ForAllValues:StringEquals", map[string]any{"kms:EncryptionContextKeys": []any{"purpose", "execution"}})
	asym := tagged(map[string]any{"kms:KeySpec": []any{"RSA_2048", "RSA_4096"}, "kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
	projected := map[string]any{
		"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": []any{"pk", "sk", "keyArn", "status", "publicKey"}},
		"StringEqualsIfExists":      map[string]any{"dynamodb:Select": "SPECIFIC_ATTRIBUTES"},
	}
	noReturn := map[string]any{"StringEqualsIfExists": map[string]any{"dynamodb:ReturnValues": "NONE"}}
	st := func(actions []string, resources []string, cond map[string]any) statement {
		return statement{Sid: "x", Effect: "Allow", Actions: actions, Resources: resources, Condition: cond}
	}
	type tc struct {
		c    *policyChecker
		role string
		s    statement
	}
	bad := map[string]tc{
		"no tag in the default scope":         {c, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}})},
		"old fixed tag key":                   {c, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL", "aws:ResourceTag/kms-reimport": "true"}})},
		"wrong tag value":                     {c, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL", "aws:ResourceTag/kms-reimport:managed": "yes"}})},
		"second tag condition":                {c, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, with(tagged(nil), "StringLike", map[string]any{"aws:ResourceTag/owner": "*"}))},
		"neither tag nor list":                {unscoped, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}})},
		"list scope with a tag":               {list, "FetchParametersRole", st([]string{"kms:DescribeKey"}, listedKeys, tagged(nil))},
		"list scope, other keys":              {list, "FetchParametersRole", st([]string{"kms:DescribeKey"}, keys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}})},
		"import parameters, no wrapping cond": {c, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(nil))},
		"import parameters, PKCS1 not allowed": {c, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(map[string]any{
			"kms:WrappingAlgorithm": []any{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSAES_PKCS1_V1_5"},
			"kms:WrappingKeySpec":   []any{"RSA_2048", "RSA_3072", "RSA_4096"}}))},
		"import parameters, PKCS1 missing with legacy": {legacy, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(wrapping))},
		"import parameters, SM2 spec": {c, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(map[string]any{
			"kms:WrappingAlgorithm": wrapping["kms:WrappingAlgorithm"], "kms:WrappingKeySpec": []any{"RSA_2048", "RSA_3072", "RSA_4096", "SM2"}}))},
		"import parameters, spec not limited": {c, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(map[string]any{"kms:WrappingAlgorithm": wrapping["kms:WrappingAlgorithm"]}))},
		"encrypt without context":             {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, tagged(nil))},
		"encrypt, other purpose": {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, with(tagged(map[string]any{"kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:EncryptionContext:purpose": "other"}),
			"ForAllValues:StringEquals", map[string]any{"kms:EncryptionContextKeys": []any{"purpose", "execution"}}))},
		"encrypt, context keys open":       {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, with(tagged(map[string]any{"kms:KeySpec": "SYMMETRIC_DEFAULT", "kms:EncryptionContext:purpose": verificationPurpose}), "StringLike", map[string]any{"kms:EncryptionContext:execution": executionPattern}))},
		"encrypt, set operator on purpose": {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, with(roundTrip, "ForAnyValue:StringEquals", map[string]any{"kms:EncryptionContext:purpose": verificationPurpose}))},
		"encrypt, any key spec": {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, with(with(tagged(map[string]any{"kms:EncryptionContext:purpose": verificationPurpose}),
			"StringLike", map[string]any{"kms:EncryptionContext:execution": executionPattern}), "ForAllValues:StringEquals", map[string]any{"kms:EncryptionContextKeys": []any{"purpose", "execution"}}))},
		"decrypt without context, any key":  {c, "VerifyImportRole", st([]string{"kms:Decrypt"}, keys, tagged(nil))},
		"decrypt without context, ECC spec": {c, "VerifyImportRole", st([]string{"kms:Decrypt"}, keys, tagged(map[string]any{"kms:KeySpec": "ECC_NIST_P256", "kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}))},
		"decrypt without context, SHA-1":    {c, "VerifyImportRole", st([]string{"kms:Decrypt"}, keys, tagged(map[string]any{"kms:KeySpec": "RSA_2048", "kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}))},
		"query without projection":          {c, "VerifyImportRole", st([]string{"dynamodb:Query"}, []string{table}, nil)},
		"get item, select not required":     {c, "WrapMaterialRole", st([]string{"dynamodb:GetItem"}, []string{table}, map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": []any{"pk", "sk", "keyArn", "status", "publicKey"}}})},
		"select required, GetItem never sends it": {c, "WrapMaterialRole", st([]string{"dynamodb:GetItem"}, []string{table}, map[string]any{
			"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": []any{"pk", "sk", "keyArn", "status", "publicKey"}},
			"StringEquals":              map[string]any{"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}})},
		"projection names the token": {c, "RecordFailureRole", st([]string{"dynamodb:Query"}, []string{table}, map[string]any{
			"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": []any{"pk", "sk", "keyArn", "status", "publicKey", "importToken"}},
			"StringEquals":              map[string]any{"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}})},
		"projection misses attributes": {c, "RecordFailureRole", st([]string{"dynamodb:Query"}, []string{table}, map[string]any{
			"ForAllValues:StringEquals": map[string]any{"dynamodb:Attributes": []any{"pk", "sk"}},
			"StringEquals":              map[string]any{"dynamodb:Select": "SPECIFIC_ATTRIBUTES"}})},
		"token read by another role":   {c, "VerifyImportRole", st([]string{"dynamodb:GetItem"}, []string{table}, nil)},
		"import stage queries freely":  {c, "ImportMaterialRole", st([]string{"dynamodb:GetItem", "dynamodb:Query"}, []string{table}, nil)},
		"write returns the old item":   {c, "RecordFailureRole", st([]string{"dynamodb:UpdateItem"}, []string{table}, nil)},
		"write returns ALL_OLD":        {c, "RecordFailureRole", st([]string{"dynamodb:UpdateItem"}, []string{table}, map[string]any{"StringEqualsIfExists": map[string]any{"dynamodb:ReturnValues": []any{"NONE", "ALL_OLD"}}})},
		"reads and writes mixed":       {c, "RecordFailureRole", st([]string{"dynamodb:GetItem", "dynamodb:UpdateItem"}, []string{table}, with(projected, "StringEqualsIfExists", map[string]any{"dynamodb:ReturnValues": "NONE"}))},
		"scan":                         {c, "RecordFailureRole", st([]string{"dynamodb:Scan"}, []string{table}, projected)},
		"batch get":                    {c, "RecordFailureRole", st([]string{"dynamodb:BatchGetItem"}, []string{table}, projected)},
		"planner outside the registry": {c, registryReader, st([]string{"dynamodb:Query"}, []string{table}, nil)},
		"planner, other partition":     {c, registryReader, st([]string{"dynamodb:Query"}, []string{table}, map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": []any{registryPK, "KEY#x"}}})},
		"another queue":                {c, "RecordFailureRole", st([]string{"sqs:SendMessage"}, []string{"arn:aws:sqs:eu-west-2:111122223333:Other"}, nil)},
		"queue receive":                {c, "RecordFailureRole", st([]string{"sqs:ReceiveMessage"}, []string{queue}, nil)},
	}
	for name, x := range bad {
		use := fnUse
		if x.role != "RecordFailureRole" {
			use = roleUse{logGroup: fnUse.logGroup}
		}
		if name == "another queue" || name == "queue receive" {
			use = fnUse
		}
		if got := x.c.check(x.role, []statement{x.s}, use); len(got) == 0 {
			t.Errorf("%s: the checker accepted %+v", name, x.s)
		}
	}
	if got := c.check("VerifyImportRole", []statement{st([]string{"sqs:SendMessage"}, []string{queue}, nil)}, roleUse{}); len(got) == 0 {
		t.Error("sqs:SendMessage from a role without on-failure destination accepted")
	}
	good := map[string]tc{
		"tagged keys":          {c, "FetchParametersRole", st([]string{"kms:DescribeKey", "kms:GetPublicKey"}, keys, tagged(nil))},
		"listed keys, no tag":  {list, "FetchParametersRole", st([]string{"kms:DescribeKey"}, listedKeys, map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}})},
		"import parameters":    {c, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(wrapping))},
		"legacy import params": {legacy, "FetchParametersRole", st([]string{"kms:GetParametersForImport"}, keys, tagged(map[string]any{"kms:WrappingAlgorithm": []any{"RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1", "RSAES_PKCS1_V1_5"}, "kms:WrappingKeySpec": wrapping["kms:WrappingKeySpec"]}))},
		"round trip":           {c, "VerifyImportRole", st([]string{"kms:Encrypt", "kms:Decrypt"}, keys, roundTrip)},
		"asymmetric decrypt":   {c, "VerifyImportRole", st([]string{"kms:Decrypt"}, keys, asym)},
		"projected reads":      {c, "VerifyImportRole", st([]string{"dynamodb:GetItem", "dynamodb:Query"}, []string{table}, projected)},
		"token read":           {c, "ImportMaterialRole", st([]string{"dynamodb:GetItem"}, []string{table}, map[string]any{"ForAllValues:StringLike": map[string]any{"dynamodb:LeadingKeys": []any{"KEY#arn:aws:kms:*:111122223333:key/*"}}})},
		"writes":               {c, "VerifyImportRole", st([]string{"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}, []string{table}, noReturn)},
		"planner registry":     {c, registryReader, st([]string{"dynamodb:Query"}, []string{table}, map[string]any{"ForAllValues:StringEquals": map[string]any{"dynamodb:LeadingKeys": []any{registryPK}}})},
		"on-failure queue":     {c, "RecordFailureRole", st([]string{"sqs:SendMessage"}, []string{queue}, nil)},
	}
	for name, x := range good {
		if got := x.c.check(x.role, []statement{x.s}, fnUse); len(got) > 0 {
			t.Errorf("%s: the checker refused %+v: %v", name, x.s, got)
		}
	}
}

// TestManagedKeysScopedRule evaluates the template's Rules (CloudFormation
// refuses the stack when an assertion fails): with an empty
// ManagedKeyTagValue, ManagedKeyArns must list keys.
func TestManagedKeysScopedRule(t *testing.T) {
	p := parseTemplate(t, nil)
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.Unmarshal(js, &raw)
	rules, _ := raw["Rules"].(map[string]any)
	if rules["ManagedKeysScoped"] == nil {
		t.Fatal("no rule ManagedKeysScoped")
	}
	for _, tc := range []struct {
		overrides map[string]any
		ok        bool
	}{
		{nil, true},
		{map[string]any{"ManagedKeyTagValue": ""}, false},
		{map[string]any{"ManagedKeyTagValue": "", "ManagedKeyArns": strings.Join(listedKeys, ",")}, true},
		{map[string]any{"ManagedKeyArns": strings.Join(listedKeys, ",")}, true},
		{map[string]any{"ManagedKeyTagValue": "prod"}, true},
	} {
		r := newResolver(raw, tc.overrides)
		ok := true
		for name, rv := range rules {
			rule, _ := rv.(map[string]any)
			if cond, has := rule["RuleCondition"]; has && !evalRule(t, r, cond) {
				continue
			}
			as, _ := rule["Assertions"].([]any)
			for _, a := range as {
				am, _ := a.(map[string]any)
				if !evalRule(t, r, am["Assert"]) {
					ok = false
					t.Logf("%v: rule %s refuses: %v", tc.overrides, name, am["AssertDescription"])
				}
			}
		}
		if ok != tc.ok {
			t.Errorf("parameters %v: rules pass %v, want %v", tc.overrides, ok, tc.ok)
		}
	}
	_ = p
}

// evalRule evaluates the rule functions the template uses.
func evalRule(t *testing.T, r *stack.Resolver, v any) bool {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		t.Fatalf("rule expression %v", v)
	}
	value := func(x any) any {
		if xm, ok := x.(map[string]any); ok {
			if ref, ok := xm["Ref"].(string); ok {
				return r.Ref(ref)
			}
		}
		return x
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Fn::Not":
			return !evalRule(t, r, args[0])
		case "Fn::And", "Fn::Or":
			all := fn == "Fn::And"
			for _, a := range args {
				if evalRule(t, r, a) != all {
					return !all
				}
			}
			return all
		case "Fn::Equals":
			return fmt.Sprint(value(args[0])) == fmt.Sprint(value(args[1]))
		case "Fn::EachMemberEquals":
			list, _ := value(args[0]).([]any)
			for _, x := range list {
				if fmt.Sprint(x) != fmt.Sprint(value(args[1])) {
					return false
				}
			}
			return true
		}
		t.Fatalf("rule function %s is not evaluated here: add it", fn)
	}
	return false
}

// TestReadableAttributes: the projection the template allows
// (Mappings TableRecords.Readable.Attributes) is every top-level attribute
// of the table's record types in the Go code but the token bytes, with the
// key attributes: a renamed or added field fails here until the list, and
// the code's ProjectionExpression, follow.
func TestReadableAttributes(t *testing.T) {
	p := parseTemplate(t, nil)
	maps, _ := p.Raw["Mappings"].(map[string]any)
	tr, _ := maps["TableRecords"].(map[string]any)
	rd, _ := tr["Readable"].(map[string]any)
	got := strs(rd["Attributes"])
	want := readableAttributes(t)
	if sorted(got) != sorted(want) {
		t.Errorf("Mappings.TableRecords.Readable.Attributes\n  %s\nwant every record attribute of the Go code but the token bytes\n  %s", sorted(got), sorted(want))
	}
	for _, k := range []string{"pk", "sk"} {
		if !contains(got, k) {
			t.Errorf("readable attributes lack the key attribute %s (fine-grained access control needs it)", k)
		}
	}
	recs := recordAttributes(t)
	found := map[string]bool{}
	for _, names := range recs {
		for _, n := range names {
			found[n] = true
		}
	}
	for _, b := range tokenBytes {
		if !found[b] {
			t.Errorf("no record type has the attribute %s: the token bytes were renamed, update tokenBytes and the list", b)
		}
		if contains(got, b) {
			t.Errorf("the readable attributes include the token bytes %s", b)
		}
	}
	if len(recs) < 4 {
		t.Errorf("found %d record types (%v), want at least tokens, registry, imports and materials", len(recs), recs)
	}
	// The registry partition the planner is limited to.
	if !regexp.MustCompile(`PK\s*=\s*"` + registryPK + `"`).MatchString(sourceText(t)) {
		t.Errorf("no PK = %q in the Go source: the planner's dynamodb:LeadingKeys would not match the registry", registryPK)
	}
}

// TestVerificationContext: the encryption context the template requires
// is the one the verify stage sends.
func TestVerificationContext(t *testing.T) {
	code := sourceText(t)
	re := regexp.MustCompile(`"purpose":\s*"` + regexp.QuoteMeta(verificationPurpose) + `",\s*"execution":\s*execID`)
	if !re.MatchString(code) {
		t.Errorf("the Go source sends no encryption context {\"purpose\": %q, \"execution\": execID}: the RoundTrip statement would refuse the verify stage", verificationPurpose)
	}
}

// maxListedKeys is how many ManagedKeyArns docs/deploy.md promises fit.
const maxListedKeys = 25

// TestInlinePolicySize: IAM limits a role's inline policies to 10,240
// characters in all and a managed policy to 6,144 (whitespace not
// counted). The verify role names the key list in three statements: with
// maxListedKeys keys (and the tag, the secrets' keys), the names a
// deployment gives its log groups and a stack name of maxStackName
// characters, every role and managed policy still fits.
func TestInlinePolicySize(t *testing.T) {
	var arns []string
	for i := 0; i < maxListedKeys; i++ {
		arns = append(arns, fmt.Sprintf("arn:aws:kms:eu-west-2:111122223333:key/mrk-%032x", i))
	}
	p := parseTemplate(t, map[string]any{
		"ManagedKeyArns":   strings.Join(arns, ","),
		"SecretKmsKeyArns": "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
		"ManagedKeyTagKey": strings.Repeat("k", 128), "ManagedKeyTagValue": strings.Repeat("v", 256),
	})
	// size is a document's length as IAM counts it, with the stack name
	// (in the log group names) as long as maxStackName.
	size := func(doc any) int {
		s, ok := doc.(string)
		if !ok {
			b, _ := json.Marshal(doc)
			s = string(b)
		}
		s = strings.Join(strings.Fields(s), "")
		return len(s) + strings.Count(s, stackName)*(maxStackName-len(stackName))
	}
	for id, role := range p.T.GetAllIAMRoleResources() {
		n := 0
		for _, pol := range role.Policies {
			n += size(pol.PolicyDocument)
		}
		t.Logf("%s: inline policies of %d characters", id, n)
		if n > 10240 {
			t.Errorf("%s: inline policies of %d characters with %d listed keys: over IAM's 10,240", id, n, maxListedKeys)
		}
	}
	for id, pol := range p.T.GetAllIAMManagedPolicyResources() {
		n := size(pol.PolicyDocument)
		t.Logf("%s: managed policy of %d characters", id, n)
		if n > 6144 {
			t.Errorf("%s: a managed policy of %d characters: over IAM's 6,144", id, n)
		}
	}
}

// maxStackName is the longest stack name TestInlinePolicySize allows for
// (CloudFormation allows 128; docs/deploy.md asks for at most this).
const maxStackName = 40

// TestReadableAttributesMatchTheCode: the attributes the table roles may
// read (dynamodb:Attributes) are exactly those the code projects its reads
// on (records.Readable): one more in the code would be AccessDenied in
// AWS, one more in the template a read the code never makes.
func TestReadableAttributesMatchTheCode(t *testing.T) {
	p := parseTemplate(t, nil)
	m, _ := p.Raw["Mappings"].(map[string]any)["TableRecords"].(map[string]any)["Readable"].(map[string]any)
	var got []string
	for _, a := range m["Attributes"].([]any) {
		got = append(got, fmt.Sprint(a))
	}
	want := slices.Clone(records.Readable)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("template TableRecords.Readable.Attributes\n %v\nrecords.Readable\n %v", got, want)
	}
}

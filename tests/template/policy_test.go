package template_test

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The rules (docs/deploy.md, "IAM permissions"):
//   - no "*" action and no wildcard in an action; no NotAction/NotResource;
//   - a "*" resource only for actions that support no resource-level
//     permissions (noResourceLevel);
//   - KMS actions only on keys with origin EXTERNAL (kms:KeyOrigin), on key
//     ARNs of this account and Region (or the ManagedKeyArns list), and with
//     the kms-reimport tag when ManagedKeyTagValue is set; the one exception
//     is kms:Decrypt of the SecretKmsKeyArns through Secrets Manager
//     (kms:ViaService);
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
	"FetchParametersFunction": {"kms:DescribeKey", "kms:GetParametersForImport", "kms:GetPublicKey", "kms:ListKeyRotations", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"},
	"WrapMaterialFunction":    {"secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:UpdateItem"},
	"ImportMaterialFunction":  {"kms:ImportKeyMaterial", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:Query"},
	"VerifyImportFunction":    {"kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateMac", "kms:Sign", "kms:GetPublicKey", "kms:RotateKeyOnDemand", "kms:ListKeyRotations", "secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"},
	"RecordFailureFunction":   {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query", "sns:Publish"},
	"PlannerFunction":         {"dynamodb:Query"},
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
	se, _ := s.Condition["StringEquals"].(map[string]any)
	return strs(se[key])
}

// scope is what one set of parameter values allows.
type scope struct {
	keyTag        string
	keyArns       []string
	secretPrefix  string
	secretTag     string
	secretKeyArns []string
	topic         string // the notification topic's ARN
}

type policyChecker struct {
	sc    scope
	table string
}

// roleUse is what one role's owner needs beyond the scope: its log group
// (a function), and for a state machine what its definition calls.
type roleUse struct {
	logGroup string          // the function's log group ARN ("" for a state machine)
	invoke   map[string]bool // function ARNs its Tasks invoke
	start    map[string]bool // state machine ARNs it may start
	follow   map[string]bool // execution ARN patterns it may describe and stop
	syncRule bool            // it has a .sync Task
}

// Keys in this Region, or in any Region ("*"): a multi-Region key's
// replicas live in other Regions (docs/rotation.md).
var keyArnRe = regexp.MustCompile(`^arn:aws:kms:(` + region + `|\*):` + account + `:key/(\*|[0-9a-f-]{36}|mrk-[0-9a-f]{32})$`)

// storesSecrets: the role that writes generated material as a new secret
// version (PutSecretValue; GenerateDataKey for a secret under a customer
// managed key).
const storesSecrets = "FetchParametersRole"

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
				if a != "secretsmanager:GetSecretValue" && !(a == "secretsmanager:PutSecretValue" && role == storesSecrets) {
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
		if role == storesSecrets {
			want = "[kms:Decrypt kms:GenerateDataKey]"
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
	if c.sc.keyTag != "" {
		if got := s.condEquals("aws:ResourceTag/kms-reimport"); len(got) != 1 || got[0] != c.sc.keyTag {
			add(s, "ManagedKeyTagValue is %q but the statement requires tag value %v", c.sc.keyTag, got)
		}
	}
}

// The topic the template creates, and one given with AlarmTopicArn.
var (
	ownTopic   = fmt.Sprintf("arn:aws:sns:%s:%s:NotificationTopic", region, account)
	givenTopic = fmt.Sprintf("arn:aws:sns:%s:%s:ops-alerts", region, account)
)

var scopes = []struct {
	name      string
	overrides map[string]any
	sc        scope
}{
	{"defaults", nil, scope{secretPrefix: "kms-reimport/", topic: ownTopic}},
	{"tags", map[string]any{"ManagedKeyTagValue": "prod", "ManagedSecretTagValue": "prod", "AlarmEmail": "ops@example.com"},
		scope{secretPrefix: "kms-reimport/", keyTag: "prod", secretTag: "prod", topic: ownTopic}},
	{"lists", map[string]any{
		"ManagedKeyArns":   "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab,arn:aws:kms:eu-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
		"SecretKmsKeyArns": "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
		"SecretNamePrefix": "team-a/kms/",
		"AlarmTopicArn":    givenTopic,
		"AlarmEmail":       "ops@example.com",
	}, scope{secretPrefix: "team-a/kms/",
		keyArns:       []string{"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"},
		secretKeyArns: []string{"arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"},
		topic:         givenTopic}},
}

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
			u.invoke[fmt.Sprint(p.r.getAtt(tk.target, "Arn"))] = true
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
			c := &policyChecker{sc: tc.sc, table: fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/RotationTable", region, account)}
			fns := p.T.GetAllServerlessFunctionResources()
			sms := p.T.GetAllServerlessStateMachineResources()
			roles := p.T.GetAllIAMRoleResources()
			roleOf := map[string]string{} // role logical id -> function or state machine logical id
			for id, f := range fns {
				if f.Role == nil {
					t.Errorf("%s has no Role", id)
					continue
				}
				roleOf[strings.TrimPrefix(*f.Role, "arn:aws:iam::"+account+":role/")] = id
			}
			for id, sm := range sms {
				if sm.Role == nil {
					t.Errorf("%s has no Role", id)
					continue
				}
				roleOf[strings.TrimPrefix(*sm.Role, "arn:aws:iam::"+account+":role/")] = id
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
				var use roleUse
				if isFn {
					use.logGroup = fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s:*", region, account, strings.TrimSuffix(owner, "Function")+"Logs")
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
					w, ok := expectedActions[owner]
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
	c := &policyChecker{sc: scope{secretPrefix: "kms-reimport/", topic: ownTopic}, table: "arn:aws:dynamodb:eu-west-2:111122223333:table/RotationTable"}
	keyStar := "arn:aws:kms:eu-west-2:111122223333:key/*"
	origin := map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}}
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

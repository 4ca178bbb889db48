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
//     lambda:InvokeFunction only on the template's functions;
//   - each function's role grants exactly the actions its stage calls.

// expectedActions: what each stage calls (shared/*), plus its logs.
var expectedActions = map[string][]string{
	"FetchParametersFunction": {"kms:DescribeKey", "kms:GetParametersForImport", "kms:GetPublicKey", "secretsmanager:GetSecretValue", "dynamodb:PutItem"},
	"WrapMaterialFunction":    {"secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:UpdateItem"},
	"ImportMaterialFunction":  {"kms:ImportKeyMaterial", "dynamodb:GetItem", "dynamodb:UpdateItem"},
	"VerifyImportFunction":    {"kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateMac", "kms:Sign", "kms:GetPublicKey", "secretsmanager:GetSecretValue", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"},
	"RecordFailureFunction":   {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}

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
}

type policyChecker struct {
	sc        scope
	table     string
	functions map[string]bool // function ARNs of the template
}

var keyArnRe = regexp.MustCompile(`^arn:aws:kms:` + region + `:` + account + `:key/(\*|[0-9a-f-]{36}|mrk-[0-9a-f]{32})$`)

// check returns every rule a role's statements break; logGroup is the role's
// function's log group ARN ("" for the state machine).
func (c *policyChecker) check(role string, sts []statement, logGroup string) []string {
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
			c.checkKMS(s, add)
		case services["secretsmanager"]:
			for _, a := range s.Actions {
				if a != "secretsmanager:GetSecretValue" {
					add(s, "Secrets Manager action %s: only GetSecretValue is needed", a)
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
		case services["lambda"]:
			for _, a := range s.Actions {
				if a != "lambda:InvokeFunction" {
					add(s, "Lambda action %s", a)
				}
			}
			for _, r := range s.Resources {
				if !c.functions[r] {
					add(s, "invokes %s, not a function of this template", r)
				}
			}
		case services["logs"]:
			if !starResource && (len(s.Resources) != 1 || s.Resources[0] != logGroup) {
				add(s, "logs resources %v, want the function's own log group %s", s.Resources, logGroup)
			}
		default:
			add(s, "service %v is not expected in this application", services)
		}
	}
	return bad
}

func (c *policyChecker) checkKMS(s statement, add func(statement, string, ...any)) {
	if via := s.condEquals("kms:ViaService"); len(via) > 0 {
		// The secrets' encryption key, used by Secrets Manager on the
		// function's behalf.
		if len(s.Actions) != 1 || s.Actions[0] != "kms:Decrypt" {
			add(s, "a kms:ViaService statement may only allow kms:Decrypt, has %v", s.Actions)
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

var scopes = []struct {
	name      string
	overrides map[string]any
	sc        scope
}{
	{"defaults", nil, scope{secretPrefix: "kms-reimport/"}},
	{"tags", map[string]any{"ManagedKeyTagValue": "prod", "ManagedSecretTagValue": "prod"},
		scope{secretPrefix: "kms-reimport/", keyTag: "prod", secretTag: "prod"}},
	{"lists", map[string]any{
		"ManagedKeyArns":   "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab,arn:aws:kms:eu-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
		"SecretKmsKeyArns": "arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321",
		"SecretNamePrefix": "team-a/kms/",
	}, scope{secretPrefix: "team-a/kms/",
		keyArns:       []string{"arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "arn:aws:kms:eu-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"},
		secretKeyArns: []string{"arn:aws:kms:eu-west-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321"}}},
}

// TestPolicies checks every role of the template against the rules, for
// default, tag-scoped and list-scoped parameter values.
func TestPolicies(t *testing.T) {
	for _, tc := range scopes {
		t.Run(tc.name, func(t *testing.T) {
			p := parseTemplate(t, tc.overrides)
			c := &policyChecker{sc: tc.sc, table: fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/RotationTable", region, account), functions: map[string]bool{}}
			fns := p.T.GetAllServerlessFunctionResources()
			for id := range fns {
				c.functions[fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", region, account, id)] = true
			}
			roles := p.T.GetAllIAMRoleResources()
			roleOf := map[string]string{} // role logical id -> function logical id
			for id, f := range fns {
				if f.Role == nil {
					t.Errorf("%s has no Role", id)
					continue
				}
				roleOf[strings.TrimPrefix(*f.Role, "arn:aws:iam::"+account+":role/")] = id
			}
			for id, sm := range p.T.GetAllServerlessStateMachineResources() {
				if sm.Role != nil {
					roleOf[strings.TrimPrefix(*sm.Role, "arn:aws:iam::"+account+":role/")] = id
				}
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
				// Trust: one service principal, this account only.
				trust := statements(role.AssumeRolePolicyDocument)
				if len(trust) != 1 || fmt.Sprint(trust[0].Actions) != "[sts:AssumeRole]" || len(trust[0].condEquals("aws:SourceAccount")) != 1 {
					t.Errorf("role %s: trust policy must let one service assume it, for this account (aws:SourceAccount)", rid)
				}
				var sts []statement
				for _, pol := range role.Policies {
					sts = append(sts, statements(pol.PolicyDocument)...)
				}
				logGroup := ""
				if _, isFn := fns[owner]; isFn {
					logGroup = fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s:*", region, account, strings.TrimSuffix(owner, "Function")+"Logs")
				}
				for _, b := range c.check(rid, sts, logGroup) {
					t.Error(b)
				}
				granted := map[string]bool{}
				for _, s := range sts {
					if s.Effect == "Allow" && len(s.condEquals("kms:ViaService")) == 0 {
						for _, a := range s.Actions {
							granted[a] = true
						}
					}
				}
				if _, isFn := fns[owner]; isFn {
					want, ok := expectedActions[owner]
					if !ok {
						t.Errorf("function %s has no expected action list in tests/template/policy_test.go: add what it calls", owner)
						continue
					}
					want = append(append([]string(nil), want...), "logs:CreateLogStream", "logs:PutLogEvents")
					if got, w := keys(granted), sorted(want); got != w {
						t.Errorf("%s (%s) grants\n  %s\nwant exactly\n  %s", rid, owner, got, w)
					}
				} else {
					// The state machine invokes exactly its own functions.
					var inv []string
					for _, s := range sts {
						for _, a := range s.Actions {
							if a == "lambda:InvokeFunction" {
								inv = append(inv, s.Resources...)
							}
						}
					}
					var subs []string
					for _, v := range p.T.GetAllServerlessStateMachineResources()[owner].DefinitionSubstitutions {
						subs = append(subs, v)
					}
					if sorted(inv) != sorted(subs) {
						t.Errorf("%s invokes %v, want exactly the substituted functions %v", rid, sorted(inv), sorted(subs))
					}
				}
			}
		})
	}
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
// condition, or on "*"), secrets beyond the prefix, another table.
func TestPolicyCheckerCatches(t *testing.T) {
	c := &policyChecker{sc: scope{secretPrefix: "kms-reimport/"}, table: "arn:aws:dynamodb:eu-west-2:111122223333:table/RotationTable"}
	keyStar := "arn:aws:kms:eu-west-2:111122223333:key/*"
	origin := map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "EXTERNAL"}}
	cases := map[string]statement{
		"star action":             {Sid: "x", Effect: "Allow", Actions: []string{"*"}, Resources: []string{"*"}},
		"service wildcard":        {Sid: "x", Effect: "Allow", Actions: []string{"kms:*"}, Resources: []string{keyStar}, Condition: origin},
		"import without origin":   {Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}},
		"import on star":          {Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{"*"}, Condition: origin},
		"import on alias":         {Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{"arn:aws:kms:eu-west-2:111122223333:alias/x"}, Condition: origin},
		"import other origin":     {Sid: "x", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}, Condition: map[string]any{"StringEquals": map[string]any{"kms:KeyOrigin": "AWS_KMS"}}},
		"any secret":              {Sid: "x", Effect: "Allow", Actions: []string{"secretsmanager:GetSecretValue"}, Resources: []string{"arn:aws:secretsmanager:eu-west-2:111122223333:secret:*"}},
		"another table":           {Sid: "x", Effect: "Allow", Actions: []string{"dynamodb:PutItem"}, Resources: []string{"arn:aws:dynamodb:eu-west-2:111122223333:table/*"}},
		"NotAction":               {Sid: "x", Effect: "Allow", Actions: []string{"kms:Decrypt"}, Resources: []string{keyStar}, Condition: origin, Broad: []string{"NotAction"}},
		"decrypt via, wrong keys": {Sid: "x", Effect: "Allow", Actions: []string{"kms:Decrypt"}, Resources: []string{keyStar}, Condition: map[string]any{"StringEquals": map[string]any{"kms:ViaService": "secretsmanager.eu-west-2.amazonaws.com"}}},
	}
	for name, s := range cases {
		if bad := c.check("TestRole", []statement{s}, ""); len(bad) == 0 {
			t.Errorf("%s: the checker accepted %+v", name, s)
		}
	}
	good := statement{Sid: "ok", Effect: "Allow", Actions: []string{"kms:ImportKeyMaterial"}, Resources: []string{keyStar}, Condition: origin}
	if bad := c.check("TestRole", []statement{good}, ""); len(bad) > 0 {
		t.Errorf("the checker refused a scoped import: %v", bad)
	}
}

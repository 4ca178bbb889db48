package template_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The product's metrics: namespace and dimensions of the code's Emit.
const productNamespace = "KmsReimport"

var productDims = map[string]string{"Service": "kms-reimport"}

// pendingMetrics are product metrics the template already shows while the
// code does not emit them yet. Once emitted, a pending metric is checked
// like any other (and can leave this list).
var pendingMetrics = map[string]string{}

// metricUse is one metric an alarm or a widget names.
type metricUse struct {
	where     string
	namespace string
	name      string
	dims      map[string]string
}

// metricChecker knows what the template and the code offer.
type metricChecker struct {
	p             *parsed
	emitted       map[string]*emission
	stateMachines map[string]string // ARN -> logical id
	queues        map[string]string // queue name -> logical id
}

func newMetricChecker(t *testing.T, p *parsed) *metricChecker {
	t.Helper()
	mp := findMetricsPackage(t)
	if mp == nil {
		t.Fatal("no package in the Go source declares func Emit, const Namespace and var Service")
	}
	if mp.namespace != productNamespace || fmt.Sprint(mp.dims) != fmt.Sprint(productDims) {
		t.Fatalf("%s emits namespace %q with dimensions %v; the template expects %q with %v", mp.path, mp.namespace, mp.dims, productNamespace, productDims)
	}
	mc := &metricChecker{p: p, emitted: emittedMetrics(t), stateMachines: map[string]string{}, queues: map[string]string{}}
	for id := range p.T.GetAllServerlessStateMachineResources() {
		mc.stateMachines[p.arnOf(id)] = id
	}
	rs, _ := p.Raw["Resources"].(map[string]any)
	for id, r := range rs {
		if m, _ := r.(map[string]any); m["Type"] == "AWS::SQS::Queue" {
			mc.queues[fmt.Sprint(p.r.GetAtt(id, "QueueName"))] = id
		}
	}
	return mc
}

// check: a product metric is emitted by the code with the product's
// namespace and the Service dimension alone; an AWS metric names a state
// machine (AWS/States) or queue (AWS/SQS) of this template.
func (mc *metricChecker) check(t *testing.T, m metricUse) {
	t.Helper()
	switch m.namespace {
	case productNamespace:
		if fmt.Sprint(m.dims) != fmt.Sprint(productDims) {
			t.Errorf("%s: %s with dimensions %v, want exactly %v (what the code emits)", m.where, m.name, m.dims, productDims)
		}
		e := mc.emitted[m.name]
		switch {
		case e == nil && pendingMetrics[m.name] != "":
			t.Logf("%s: %s is not emitted yet (%s)", m.where, m.name, pendingMetrics[m.name])
		case e == nil:
			t.Errorf("%s: metric %s is emitted nowhere in the Go source (no Metric{Name: %q} passed to Emit)", m.where, m.name, m.name)
		case len(e.problems) > 0:
			t.Errorf("%s: metric %s: %v", m.where, m.name, e.problems)
		case pendingMetrics[m.name] != "":
			t.Logf("%s: %s is emitted now (%v): remove it from pendingMetrics", m.where, m.name, e.sites)
		}
	case "AWS/States":
		if len(m.dims) != 1 || mc.stateMachines[m.dims["StateMachineArn"]] == "" {
			t.Errorf("%s: AWS/States %s with dimensions %v: want StateMachineArn of a state machine of the template %v", m.where, m.name, m.dims, mc.stateMachines)
		}
	case "AWS/SQS":
		if len(m.dims) != 1 || mc.queues[m.dims["QueueName"]] == "" {
			t.Errorf("%s: AWS/SQS %s with dimensions %v: want QueueName of a queue of the template %v", m.where, m.name, m.dims, mc.queues)
		}
	default:
		t.Errorf("%s: namespace %q: only %s, AWS/States and AWS/SQS are expected", m.where, m.namespace, productNamespace)
	}
}

// alarmSpec is what each alarm must be.
type alarmSpec struct {
	namespace, metric, stat string
	target                  string // logical id the AWS/* dimension names
	period                  float64
	threshold               float64
	op, missing             string
}

var alarmSpecs = map[string]alarmSpec{
	"RotationFailuresAlarm":           {productNamespace, "RotationFailures", "Sum", "", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
	"KeyNearExpiryAlarm":              {productNamespace, "FewestDaysLeft", "Minimum", "", 86400, 7, "LessThanThreshold", "notBreaching"},
	"FleetRunMissingAlarm":            {productNamespace, "FleetRuns", "Sum", "", 3600, 1, "LessThanThreshold", "breaching"}, // metric math: missingrun_test.go
	"FleetRunFailedAlarm":             {"AWS/States", "ExecutionsFailed", "Sum", "FleetStateMachine", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
	"RotationExecutionsFailedAlarm":   {"AWS/States", "ExecutionsFailed", "Sum", "RotationStateMachine", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
	"RotationExecutionsTimedOutAlarm": {"AWS/States", "ExecutionsTimedOut", "Sum", "RotationStateMachine", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
	"RotationExecutionsAbortedAlarm":  {"AWS/States", "ExecutionsAborted", "Sum", "RotationStateMachine", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
	// A count reported once per fleet run: the state follows the last run.
	"KeysIneligibleAlarm": {productNamespace, "KeysIneligible", "Maximum", "", 3600, 0, "GreaterThanThreshold", "ignore"},
	// Keys within ExpiryAlarmDays, counted per key from KMS (issue 16,
	// scenario 2): a second key near expiry is never hidden by a first.
	"KeysExpiringSoonAlarm":      {productNamespace, "KeysExpiringSoon", "Maximum", "", 3600, 0, "GreaterThanThreshold", "ignore"},
	"UnmanagedKeysExpiringAlarm": {productNamespace, "UnmanagedKeysExpiring", "Maximum", "", 3600, 0, "GreaterThanThreshold", "ignore"},
	"NotificationFailuresAlarm":  {productNamespace, "NotificationFailures", "Sum", "", 300, 0, "GreaterThanThreshold", "notBreaching"},
	"FailedRotationDLQAlarm":     {"AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", "FailedRotationDLQ", 300, 1, "GreaterThanOrEqualToThreshold", "notBreaching"},
}

func dimsOf(v any) map[string]string {
	out := map[string]string{}
	list, _ := v.([]any)
	for _, d := range list {
		dm, _ := d.(map[string]any)
		out[fmt.Sprint(dm["Name"])] = fmt.Sprint(dm["Value"])
	}
	return out
}

// alarms returns the template's alarms (logical id -> properties).
func alarms(p *parsed) map[string]map[string]any {
	out := map[string]map[string]any{}
	rs, _ := p.Raw["Resources"].(map[string]any)
	for id, r := range rs {
		m, _ := r.(map[string]any)
		if m["Type"] == "AWS::CloudWatch::Alarm" {
			props, _ := m["Properties"].(map[string]any)
			out[id] = props
		}
	}
	return out
}

// TestNotifications: failures and alarms go to one topic, exactly
// !If [TopicGiven, !Ref AlarmTopicArn, !Ref NotificationTopic]: the
// record-failure function's ALERT_TOPIC_ARN, every alarm's action, and the
// NotificationTopicArn output; the e-mail subscription exists only with
// AlarmEmail and no AlarmTopicArn. Every alarm is one of alarmSpecs (metric,
// statistic, threshold, missing-data treatment) and is documented; its
// metric is checked like the dashboard's.
func TestNotifications(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range scopes {
		t.Run(tc.name, func(t *testing.T) {
			p := parseTemplate(t, tc.overrides)
			mc := newMetricChecker(t, p)
			topic := tc.sc.topic
			if got := p.environment("RecordFailureFunction")["ALERT_TOPIC_ARN"]; got != topic {
				t.Errorf("RecordFailureFunction ALERT_TOPIC_ARN %v, want %s", got, topic)
			}
			if p.resource("NotificationTopic") == nil {
				t.Error("no NotificationTopic (always created)")
			}
			email, _ := tc.overrides["AlarmEmail"].(string)
			given, _ := tc.overrides["AlarmTopicArn"].(string)
			sub := p.resource("NotificationEmail")
			if want := email != "" && given == ""; (sub != nil) != want {
				t.Errorf("NotificationEmail present %v, want %v (AlarmEmail %q, AlarmTopicArn %q)", sub != nil, want, email, given)
			}
			if sub != nil {
				sp, _ := sub["Properties"].(map[string]any)
				if sp["TopicArn"] != ownTopic || sp["Protocol"] != "email" || sp["Endpoint"] != email {
					t.Errorf("NotificationEmail: %v", sp)
				}
			}
			if out, _ := p.Raw["Outputs"].(map[string]any)["NotificationTopicArn"].(map[string]any); out == nil || out["Value"] != topic {
				t.Errorf("output NotificationTopicArn %v, want %s", out, topic)
			}
			as := alarms(p)
			for id, ap := range as {
				if fmt.Sprint(ap["AlarmActions"]) != "["+topic+"]" {
					t.Errorf("%s: AlarmActions %v, want [%s]", id, ap["AlarmActions"], topic)
				}
				am := alarmMetricOf(ap)
				dims := am.dims
				mc.check(t, metricUse{where: "alarm " + id, namespace: am.namespace, name: am.name, dims: dims})
				spec, ok := alarmSpecs[id]
				if !ok {
					t.Errorf("alarm %s has no expectation in alarmSpecs: add it (metric, statistic, threshold, missing data)", id)
					continue
				}
				got := alarmSpec{am.namespace, am.name, am.stat, "",
					am.period, num(ap["Threshold"]), fmt.Sprint(ap["ComparisonOperator"]), fmt.Sprint(ap["TreatMissingData"])}
				switch spec.namespace {
				case "AWS/States":
					got.target = mc.stateMachines[dims["StateMachineArn"]]
				case "AWS/SQS":
					got.target = mc.queues[dims["QueueName"]]
				}
				if got != spec {
					t.Errorf("%s:\n  %+v\nwant\n  %+v", id, got, spec)
				}
				if want := evaluationPeriods(id); num(ap["EvaluationPeriods"]) != want {
					t.Errorf("%s: EvaluationPeriods %v, want %v", id, ap["EvaluationPeriods"], want)
				}
				if !strings.Contains(string(doc), "`"+id+"`") {
					t.Errorf("alarm %s is not described in docs/deploy.md", id)
				}
			}
			for id := range alarmSpecs {
				if as[id] == nil {
					t.Errorf("no alarm %s", id)
				}
			}
		})
	}
}

func num(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case string:
		var f float64
		_, _ = fmt.Sscan(v, &f)
		return f
	}
	return -1
}

// TestDashboard parses the dashboard body: every metric a widget names is
// checked like an alarm's (product metrics emitted by the code, with its
// namespace and Service dimension alone; AWS/States and AWS/SQS metrics of
// this template's resources); the Logs Insights widget reads the planner's
// log group and relies only on what the planner logs; the alarm widget
// shows every alarm; the widgets the operators need are there.
func TestDashboard(t *testing.T) {
	p := parseTemplate(t, nil)
	mc := newMetricChecker(t, p)
	var dash map[string]any
	rs, _ := p.Raw["Resources"].(map[string]any)
	for id, r := range rs {
		if m, _ := r.(map[string]any); m["Type"] == "AWS::CloudWatch::Dashboard" {
			if dash != nil {
				t.Errorf("more than one dashboard (%s)", id)
			}
			dash, _ = m["Properties"].(map[string]any)
		}
	}
	if dash == nil {
		t.Fatal("no AWS::CloudWatch::Dashboard")
	}
	bodyStr, ok := dash["DashboardBody"].(string)
	if !ok {
		t.Fatalf("DashboardBody did not resolve to a string: %v", dash["DashboardBody"])
	}
	if strings.Contains(bodyStr, "UNRESOLVED") {
		t.Fatalf("DashboardBody has unresolved references: %s", bodyStr)
	}
	var body struct {
		Widgets []struct {
			Type                string
			X, Y, Width, Height float64
			Properties          map[string]any
		}
	}
	if err := json.Unmarshal([]byte(bodyStr), &body); err != nil {
		t.Fatalf("DashboardBody is not JSON: %v\n%s", err, bodyStr)
	}
	shown := map[string]bool{} // "namespace name target"
	var logWidgets, alarmWidgets int
	for i, w := range body.Widgets {
		where := fmt.Sprintf("widget %d (%v)", i, w.Properties["title"])
		if w.Width <= 0 || w.Height <= 0 || w.X < 0 || w.X+w.Width > 24 {
			t.Errorf("%s: position x %v width %v height %v outside the 24-column grid", where, w.X, w.Width, w.Height)
		}
		if w.Properties["title"] == nil {
			t.Errorf("%s: no title", where)
		}
		switch w.Type {
		case "metric":
			if w.Properties["region"] != region {
				t.Errorf("%s: region %v, want the stack's (${AWS::Region})", where, w.Properties["region"])
			}
			rows, _ := w.Properties["metrics"].([]any)
			if len(rows) == 0 {
				t.Errorf("%s: no metrics", where)
			}
			for _, r := range rows {
				row, _ := r.([]any)
				var parts []string
				opts := map[string]any{}
				for _, x := range row {
					switch x := x.(type) {
					case string:
						parts = append(parts, x)
					case map[string]any:
						opts = x
					default:
						t.Errorf("%s: metric row element %v", where, x)
					}
				}
				if len(parts) < 2 || len(parts)%2 != 0 || contains(parts, "...") || opts["expression"] != nil {
					t.Errorf("%s: metric row %v: want [namespace, name, dimension, value, ..., {options}] written out", where, row)
					continue
				}
				dims := map[string]string{}
				for j := 2; j+1 < len(parts); j += 2 {
					dims[parts[j]] = parts[j+1]
				}
				mc.check(t, metricUse{where: where, namespace: parts[0], name: parts[1], dims: dims})
				if opts["stat"] == nil && w.Properties["stat"] == nil {
					t.Errorf("%s: %s has no statistic", where, parts[1])
				}
				if opts["period"] == nil && w.Properties["period"] == nil {
					t.Errorf("%s: %s has no period", where, parts[1])
				}
				target := mc.stateMachines[dims["StateMachineArn"]] + mc.queues[dims["QueueName"]]
				shown[strings.TrimSpace(parts[0]+" "+parts[1]+" "+target)] = true
			}
		case "log":
			logWidgets++
			checkLogWidget(t, p, where, w.Properties)
		case "alarm":
			alarmWidgets++
			got := strs(w.Properties["alarms"])
			var want []string
			for id := range alarms(p) {
				want = append(want, fmt.Sprint(p.r.GetAtt(id, "Arn")))
			}
			if sorted(got) != sorted(want) {
				t.Errorf("%s: alarms\n  %s\nwant every alarm of the template\n  %s", where, sorted(got), sorted(want))
			}
		case "text":
		default:
			t.Errorf("%s: widget type %q", where, w.Type)
		}
	}
	for _, need := range []string{
		"KmsReimport FewestDaysLeft", "KmsReimport KeysDue", "KmsReimport KeysRenewed", "KmsReimport KeysIneligible",
		"KmsReimport RotationFailures", "KmsReimport NotificationFailures", "KmsReimport KmsThrottled",
		"AWS/States ExecutionTime FleetStateMachine",
	} {
		if !shown[need] {
			t.Errorf("the dashboard does not show %s", need)
		}
	}
	if logWidgets != 1 || alarmWidgets != 1 {
		t.Errorf("%d log widgets and %d alarm widgets, want one of each", logWidgets, alarmWidgets)
	}
	// The widgets' horizontal reference line is ExpiryAlarmDays.
	if !strings.Contains(bodyStr, `"value": 7}`) {
		t.Errorf("the fewest-days-left graph has no ExpiryAlarmDays (7) line")
	}
}

// checkLogWidget: the query reads the planner's own log group (the one its
// LoggingConfig names) and every field and message it filters on is one the
// planner logs, at INFO, which the default LogLevel keeps.
func checkLogWidget(t *testing.T, p *parsed, where string, props map[string]any) {
	t.Helper()
	lc, _ := p.functionProp("PlannerFunction", "LoggingConfig").(map[string]any)
	group := fmt.Sprint(lc["LogGroup"])
	if want := "/aws/lambda/" + stackName + "/PlannerFunction"; group != want {
		t.Errorf("PlannerFunction logs to %s, want %s", group, want)
	}
	q := fmt.Sprint(props["query"])
	if !strings.HasPrefix(q, "SOURCE '"+group+"' |") {
		t.Errorf("%s: query %q does not read the planner's log group %s", where, q, group)
	}
	if props["region"] != region {
		t.Errorf("%s: region %v", where, props["region"])
	}
	// What the query relies on, in one file of the Go source: the message
	// and the fields, logged at INFO.
	relied := []string{`"fleet planned"`, `"fewestDaysLeft"`, `"fewestDaysLeftKey"`, `"scanned"`, `"due"`, `"ineligible"`}
	for _, r := range relied {
		if !strings.Contains(q, strings.Trim(r, `"`)) {
			t.Errorf("%s: query does not use %s (keep this list in step with the query)", where, r)
		}
	}
	found := false
	for _, gf := range sourceGo(t) {
		src := string(gf.src)
		all := regexp.MustCompile(`\.Info\("fleet planned"`).MatchString(src)
		for _, r := range relied {
			all = all && strings.Contains(src, r)
		}
		found = found || all
	}
	if !found {
		t.Errorf("%s: no Go file logs Info(\"fleet planned\", ...) with the fields %v the query reads", where, relied)
	}
	if lvl := p.r.Ref("LogLevel"); lvl != "INFO" && lvl != "DEBUG" {
		t.Errorf("LogLevel default %v drops the planner's INFO line the dashboard reads", lvl)
	}
}

// TestFailedRotationRule: every rotation execution that ends FAILED,
// TIMED_OUT or ABORTED reaches RecordFailureFunction through EventBridge,
// with the Lambda permission for that rule alone, a retry policy and a
// dead-letter queue on the target, the same queue as Lambda's on-failure
// destination for the asynchronous invocation, and a queue policy letting
// only that rule send to it; events/execution-status-change.json is such an
// event.
func TestFailedRotationRule(t *testing.T) {
	p := parseTemplate(t, nil)
	rule := p.resource("FailedRotationRule")
	if rule == nil || rule["Type"] != "AWS::Events::Rule" {
		t.Fatal("no AWS::Events::Rule FailedRotationRule")
	}
	rp, _ := rule["Properties"].(map[string]any)
	ruleArn := fmt.Sprint(p.r.GetAtt("FailedRotationRule", "Arn"))
	fnArn := fmt.Sprint(p.r.GetAtt("RecordFailureFunction", "Arn"))
	queueArn := fmt.Sprint(p.r.GetAtt("FailedRotationDLQ", "Arn"))
	rotation := p.arnOf("RotationStateMachine")
	if rp["State"] != "ENABLED" {
		t.Errorf("rule State %v", rp["State"])
	}
	pat, _ := rp["EventPattern"].(map[string]any)
	detail, _ := pat["detail"].(map[string]any)
	if fmt.Sprint(pat["source"]) != "[aws.states]" || fmt.Sprint(pat["detail-type"]) != "[Step Functions Execution Status Change]" || len(pat) != 3 {
		t.Errorf("pattern %v: want source aws.states, detail-type Step Functions Execution Status Change, detail", pat)
	}
	if fmt.Sprint(detail["stateMachineArn"]) != "["+rotation+"]" || sorted(strs(detail["status"])) != "ABORTED FAILED TIMED_OUT" || len(detail) != 2 {
		t.Errorf("pattern detail %v: want the rotation state machine %s, statuses FAILED TIMED_OUT ABORTED", detail, rotation)
	}
	targets, _ := rp["Targets"].([]any)
	if len(targets) != 1 {
		t.Fatalf("targets %v, want RecordFailureFunction alone", targets)
	}
	tg, _ := targets[0].(map[string]any)
	if tg["Arn"] != fnArn {
		t.Errorf("target %v, want %s", tg["Arn"], fnArn)
	}
	if tg["Input"] != nil || tg["InputPath"] != nil || tg["InputTransformer"] != nil {
		t.Errorf("target changes the event (%v): RecordFailureFunction takes the event as EventBridge sends it", tg)
	}
	retry, _ := tg["RetryPolicy"].(map[string]any)
	if age, n := num(retry["MaximumEventAgeInSeconds"]), num(retry["MaximumRetryAttempts"]); age < 60 || age > 86400 || n < 1 || n > 185 {
		t.Errorf("target RetryPolicy %v: want retries (1-185) within 60 s-24 h", retry)
	}
	if dl, _ := tg["DeadLetterConfig"].(map[string]any); dl["Arn"] != queueArn {
		t.Errorf("target DeadLetterConfig %v, want %s", tg["DeadLetterConfig"], queueArn)
	}

	var perms, invokeConfigs, queuePolicies int
	rs, _ := p.Raw["Resources"].(map[string]any)
	for id, r := range rs {
		m, _ := r.(map[string]any)
		props, _ := m["Properties"].(map[string]any)
		switch m["Type"] {
		case "AWS::Lambda::Permission":
			perms++
			if props["FunctionName"] != fnArn || props["Action"] != "lambda:InvokeFunction" || props["Principal"] != "events.amazonaws.com" ||
				props["SourceArn"] != ruleArn || props["SourceAccount"] != account {
				t.Errorf("%s: %v: want events.amazonaws.com to invoke %s for %s only, from this account", id, props, fnArn, ruleArn)
			}
		case "AWS::Lambda::EventInvokeConfig":
			invokeConfigs++
			dc, _ := props["DestinationConfig"].(map[string]any)
			of, _ := dc["OnFailure"].(map[string]any)
			if props["FunctionName"] != "RecordFailureFunction" || props["Qualifier"] != "$LATEST" || of["Destination"] != queueArn || num(props["MaximumRetryAttempts"]) > 2 {
				t.Errorf("%s: %v: want RecordFailureFunction's failed asynchronous invocations sent to %s", id, props, queueArn)
			}
		case "AWS::SQS::QueuePolicy":
			queuePolicies++
			if fmt.Sprint(props["Queues"]) != "["+p.arnOf("FailedRotationDLQ")+"]" {
				t.Errorf("%s: Queues %v", id, props["Queues"])
			}
			sts := statements(props["PolicyDocument"])
			if len(sts) != 1 {
				t.Fatalf("%s: %d statements", id, len(sts))
			}
			s := sts[0]
			pm, _ := props["PolicyDocument"].(map[string]any)
			st0, _ := pm["Statement"].([]any)
			principal, _ := st0[0].(map[string]any)
			if fmt.Sprint(s.Actions) != "[sqs:SendMessage]" || fmt.Sprint(s.Resources) != "["+queueArn+"]" || fmt.Sprint(s.cond("ArnEquals", "aws:SourceArn")) != "["+ruleArn+"]" ||
				fmt.Sprint(principal["Principal"]) != "map[Service:events.amazonaws.com]" {
				t.Errorf("%s: %+v: want events.amazonaws.com to send to the queue for the rule alone", id, s)
			}
		case "AWS::SQS::Queue":
			if props["SqsManagedSseEnabled"] != true && props["KmsMasterKeyId"] == nil {
				t.Errorf("%s: not encrypted", id)
			}
			if num(props["MessageRetentionPeriod"]) < 4*86400 {
				t.Errorf("%s: MessageRetentionPeriod %v: keep dead letters at least 4 days", id, props["MessageRetentionPeriod"])
			}
		}
	}
	if perms != 1 || invokeConfigs != 1 || queuePolicies != 1 {
		t.Errorf("%d Lambda permissions, %d EventInvokeConfigs, %d queue policies: want one each", perms, invokeConfigs, queuePolicies)
	}
	if alarms(p)["FailedRotationDLQAlarm"] == nil {
		t.Error("no alarm on the dead-letter queue")
	}

	// The sample event matches the rule and is shaped as Step Functions
	// sends it.
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "events/execution-status-change.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Version    string   `json:"version"`
		ID         string   `json:"id"`
		DetailType string   `json:"detail-type"`
		Source     string   `json:"source"`
		Account    string   `json:"account"`
		Time       string   `json:"time"`
		Region     string   `json:"region"`
		Resources  []string `json:"resources"`
		Detail     struct {
			ExecutionArn    string                   `json:"executionArn"`
			StateMachineArn string                   `json:"stateMachineArn"`
			Name            string                   `json:"name"`
			Status          string                   `json:"status"`
			StartDate       int64                    `json:"startDate"`
			StopDate        int64                    `json:"stopDate"`
			Input           string                   `json:"input"`
			InputDetails    *struct{ Included bool } `json:"inputDetails"`
			Output          *string                  `json:"output"`
			Error           *string                  `json:"error"`
			Cause           *string                  `json:"cause"`
		} `json:"detail"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("events/execution-status-change.json: %v", err)
	}
	d := ev.Detail
	if !contains(strs(pat["source"]), ev.Source) || !contains(strs(pat["detail-type"]), ev.DetailType) || !contains(strs(detail["status"]), d.Status) {
		t.Errorf("sample event (%s, %s, %s) does not match the rule", ev.Source, ev.DetailType, d.Status)
	}
	// CloudFormation names the state machine <logical id>-<suffix>.
	smRe := regexp.MustCompile(`^arn:aws:states:` + ev.Region + `:` + ev.Account + `:stateMachine:RotationStateMachine(-[A-Za-z0-9]{12})?$`)
	if !smRe.MatchString(d.StateMachineArn) || ev.Account != account {
		t.Errorf("sample stateMachineArn %s is not the rotation state machine (%s)", d.StateMachineArn, rotation)
	}
	smName := d.StateMachineArn[strings.LastIndex(d.StateMachineArn, ":")+1:]
	wantExec := fmt.Sprintf("arn:aws:states:%s:%s:execution:%s:%s", ev.Region, ev.Account, smName, d.Name)
	if d.ExecutionArn != wantExec || fmt.Sprint(ev.Resources) != "["+wantExec+"]" {
		t.Errorf("sample executionArn %s / resources %v, want %s", d.ExecutionArn, ev.Resources, wantExec)
	}
	if ev.Version != "0" || ev.ID == "" || d.StartDate <= 0 || d.StopDate <= d.StartDate {
		t.Errorf("sample envelope or dates: version %q id %q start %d stop %d", ev.Version, ev.ID, d.StartDate, d.StopDate)
	}
	if ts, err := time.Parse(time.RFC3339, ev.Time); err != nil || ts.Unix() != d.StopDate/1000 {
		t.Errorf("sample time %s is not the stopDate %d", ev.Time, d.StopDate)
	}
	if d.InputDetails == nil || !d.InputDetails.Included || d.Output != nil || d.Error == nil || d.Cause == nil {
		t.Errorf("sample detail: want inputDetails.included true, output null, error and cause set: %+v", d)
	}
	var input, example map[string]any
	if err := json.Unmarshal([]byte(d.Input), &input); err != nil {
		t.Errorf("sample detail.input is not a JSON string of an object: %v", err)
	}
	eb, _ := os.ReadFile(filepath.Join(repoRoot(t), "events/execution-input.json"))
	_ = json.Unmarshal(eb, &example)
	var ik, ek []string
	for k := range input {
		ik = append(ik, k)
	}
	for k := range example {
		ek = append(ek, k)
	}
	sort.Strings(ik)
	sort.Strings(ek)
	if fmt.Sprint(ik) != fmt.Sprint(ek) || input["keyId"] == nil || input["secretId"] == nil {
		t.Errorf("sample detail.input fields %v, want a rotation input like events/execution-input.json %v", ik, ek)
	}
}

// leaseMinimum is the least LeaseDuration the template accepts (the
// settings refuse less too): the rotation state machine's timeout plus
// leaseMargin.
const (
	leaseMinimum = 30 * time.Minute
	leaseMargin  = 5 * time.Minute
)

// TestLeaseDuration: every LeaseDuration the parameter's AllowedPattern
// accepts outlasts the rotation state machine's TimeoutSeconds (read from
// its definition) plus a margin, the least accepted value is leaseMinimum,
// the default is accepted, and the constraint is described.
func TestLeaseDuration(t *testing.T) {
	p := parseTemplate(t, nil)
	var timeout time.Duration
	for _, sm := range stateMachines(t, p) {
		if sm.id == "RotationStateMachine" {
			ts, ok := sm.def["TimeoutSeconds"].(float64)
			if !ok || ts <= 0 {
				t.Fatalf("%s has no TimeoutSeconds", sm.path)
			}
			timeout = time.Duration(ts) * time.Second
		}
	}
	if timeout == 0 {
		t.Fatal("no RotationStateMachine")
	}
	params, _ := p.Raw["Parameters"].(map[string]any)
	lp, _ := params["LeaseDuration"].(map[string]any)
	pattern, _ := lp["AllowedPattern"].(string)
	re, err := regexp.Compile(pattern)
	if err != nil || !strings.HasPrefix(pattern, "^") || !strings.HasSuffix(pattern, "$") {
		t.Fatalf("LeaseDuration AllowedPattern %q: want an anchored pattern (%v)", pattern, err)
	}
	parse := func(v string) (time.Duration, bool) {
		m := regexp.MustCompile(`^([0-9]+)([mhd])$`).FindStringSubmatch(v)
		if m == nil {
			return 0, false
		}
		var n int64
		fmt.Sscan(m[1], &n)
		unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
		return time.Duration(n) * unit, true
	}
	var candidates []string
	for n := 0; n <= 3000; n++ {
		candidates = append(candidates, fmt.Sprintf("%dm", n), fmt.Sprintf("%dh", n), fmt.Sprintf("%dd", n), fmt.Sprintf("%ds", n*60), fmt.Sprintf("0%dm", n))
	}
	candidates = append(candidates, "", "m", "30M", "1h30m", "30 m", " 30m", "30m ", "1.5h", "-30m", "1w")
	least := time.Duration(-1)
	for _, c := range candidates {
		if !re.MatchString(c) {
			continue
		}
		d, ok := parse(c)
		switch {
		case !ok:
			t.Errorf("AllowedPattern accepts %q, which the settings can't read as minutes, hours or days", c)
		case strings.HasPrefix(c, "0"):
			t.Errorf("AllowedPattern accepts %q (leading zero)", c)
		case d < timeout+leaseMargin:
			t.Errorf("AllowedPattern accepts %q (%v): not longer than the rotation timeout %v plus %v", c, d, timeout, leaseMargin)
		}
		if ok && (least < 0 || d < least) {
			least = d
		}
	}
	if least != leaseMinimum || least <= timeout {
		t.Errorf("least accepted LeaseDuration %v, want %v (rotation timeout %v + %v)", least, leaseMinimum, timeout, leaseMargin)
	}
	for _, ok := range []string{"30m", "31m", "45m", "90m", "120m", "1h", "2h", "24h", "1d", "7d"} {
		if !re.MatchString(ok) {
			t.Errorf("AllowedPattern refuses %q", ok)
		}
	}
	if def := fmt.Sprint(lp["Default"]); !re.MatchString(def) {
		t.Errorf("default %q is refused by its own pattern", def)
	}
	if cd := fmt.Sprint(lp["ConstraintDescription"]); !strings.Contains(cd, "30m") {
		t.Errorf("ConstraintDescription %q does not name the minimum 30m", cd)
	}
}

// TestSamconfigOverrides: every parameter samconfig.toml overrides is a
// parameter of the template and satisfies its constraints (AllowedPattern,
// AllowedValues, MinValue/MaxValue), so `sam deploy` with it is not refused.
func TestSamconfigOverrides(t *testing.T) {
	p := parseTemplate(t, nil)
	params, _ := p.Raw["Parameters"].(map[string]any)
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)parameter_overrides\s*=\s*\[(.*?)\]`).FindAllSubmatch(b, -1)
	if len(blocks) == 0 {
		t.Fatal("samconfig.toml has no parameter_overrides")
	}
	n := 0
	for _, blk := range blocks {
		for _, m := range regexp.MustCompile(`"([A-Za-z0-9]+)=([^"]*)"`).FindAllSubmatch(blk[1], -1) {
			n++
			name, value := string(m[1]), string(m[2])
			pm, ok := params[name].(map[string]any)
			if !ok {
				t.Errorf("samconfig.toml overrides %s, which is no parameter of the template", name)
				continue
			}
			if pat, ok := pm["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(value) {
				t.Errorf("samconfig.toml %s=%q does not match AllowedPattern %s", name, value, pat)
			}
			if av, ok := pm["AllowedValues"].([]any); ok {
				found := false
				for _, v := range av {
					found = found || fmt.Sprint(v) == value
				}
				if !found {
					t.Errorf("samconfig.toml %s=%q is not one of %v", name, value, av)
				}
			}
			if pm["MinValue"] != nil && num(value) < num(pm["MinValue"]) || pm["MaxValue"] != nil && num(value) > num(pm["MaxValue"]) {
				t.Errorf("samconfig.toml %s=%q is outside %v-%v", name, value, pm["MinValue"], pm["MaxValue"])
			}
		}
	}
	if n == 0 {
		t.Error("no overrides read from samconfig.toml")
	}
}

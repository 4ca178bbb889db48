package template_test

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// alarmMetric is the metric an alarm watches: its own (Namespace,
// MetricName, ...) or the one MetricStat of its metric math.
type alarmMetric struct {
	namespace, name, stat string
	dims                  map[string]string
	period                float64
}

func alarmMetricOf(ap map[string]any) alarmMetric {
	queries, _ := ap["Metrics"].([]any)
	for _, q := range queries {
		qm, _ := q.(map[string]any)
		ms, _ := qm["MetricStat"].(map[string]any)
		if ms == nil {
			continue
		}
		m, _ := ms["Metric"].(map[string]any)
		return alarmMetric{fmt.Sprint(m["Namespace"]), fmt.Sprint(m["MetricName"]), fmt.Sprint(ms["Stat"]), dimsOf(m["Dimensions"]), num(ms["Period"])}
	}
	return alarmMetric{fmt.Sprint(ap["Namespace"]), fmt.Sprint(ap["MetricName"]), fmt.Sprint(ap["Statistic"]), dimsOf(ap["Dimensions"]), num(ap["Period"])}
}

// evaluationPeriods each alarm must have: 1, except the missing-run alarm,
// which needs every hour of its window empty.
func evaluationPeriods(id string) float64 {
	if id == "FleetRunMissingAlarm" {
		return float64(missingRunHours)
	}
	return 1
}

// The missing-run alarm's window: the schedule's interval plus a margin
// for the run's own length (and a late start), in hours.
const (
	missingRunHours  = 30
	missingRunMargin = 6 * time.Hour
)

// scheduleInterval reads a rate(...) schedule expression.
func scheduleInterval(t *testing.T, expr string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$`).FindStringSubmatch(expr)
	if m == nil {
		t.Fatalf("ScheduleExpression %q is not a rate(...) this test reads", expr)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"minute": time.Minute, "minutes": time.Minute, "hour": time.Hour, "hours": time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour}[m[2]]
	return time.Duration(n) * unit
}

// TestFleetRunMissingAlarmShape: FleetRunMissingAlarm is metric math,
// FILL(<FleetRuns Sum>, 0) over hourly points, so every hour without a run
// is a real 0 and CloudWatch's evaluation range can't keep the alarm OK on
// an old point; it fires when all of the schedule's interval plus a margin
// (at most half an interval) are 0, 30 of 30; no data at all is breaching.
func TestFleetRunMissingAlarmShape(t *testing.T) {
	p := parseTemplate(t, nil)
	ap := alarms(p)["FleetRunMissingAlarm"]
	if ap == nil {
		t.Fatal("no FleetRunMissingAlarm")
	}
	for _, k := range []string{"MetricName", "Namespace", "Statistic", "Period", "EvaluationWindow"} {
		if ap[k] != nil {
			t.Errorf("%s is set (%v): the alarm is metric math on a sliding window", k, ap[k])
		}
	}
	queries, _ := ap["Metrics"].([]any)
	var statID, expr string
	var returned int
	var period float64
	for _, q := range queries {
		qm, _ := q.(map[string]any)
		if qm["ReturnData"] == true {
			returned++
			expr = fmt.Sprint(qm["Expression"])
		}
		if ms, _ := qm["MetricStat"].(map[string]any); ms != nil {
			statID, period = fmt.Sprint(qm["Id"]), num(ms["Period"])
			if qm["ReturnData"] != false {
				t.Errorf("the FleetRuns query returns data (ReturnData %v): only the expression may", qm["ReturnData"])
			}
		}
	}
	if len(queries) != 2 || returned != 1 || statID == "" {
		t.Fatalf("Metrics %v: want one MetricStat and one expression returning data", queries)
	}
	if want := "FILL(" + statID + ", 0)"; expr != want {
		t.Errorf("expression %q, want %q", expr, want)
	}
	am := alarmMetricOf(ap)
	if am.namespace != productNamespace || am.name != "FleetRuns" || am.stat != "Sum" || fmt.Sprint(am.dims) != fmt.Sprint(productDims) {
		t.Errorf("metric %+v, want %s FleetRuns Sum %v", am, productNamespace, productDims)
	}
	if period != 3600 {
		t.Errorf("Period %v, want 3600 (hourly points)", period)
	}
	n := num(ap["EvaluationPeriods"])
	if n != missingRunHours || num(ap["DatapointsToAlarm"]) != n {
		t.Errorf("EvaluationPeriods %v, DatapointsToAlarm %v: want %d of %d", ap["EvaluationPeriods"], ap["DatapointsToAlarm"], missingRunHours, missingRunHours)
	}
	if num(ap["Threshold"]) != 1 || ap["ComparisonOperator"] != "LessThanThreshold" || ap["TreatMissingData"] != "breaching" {
		t.Errorf("Threshold %v %v, missing data %v: want < 1, breaching", ap["Threshold"], ap["ComparisonOperator"], ap["TreatMissingData"])
	}
	window := time.Duration(n*period) * time.Second
	if window > 7*24*time.Hour {
		t.Errorf("Period x EvaluationPeriods %s: CloudWatch allows at most 7 days", window)
	}
	params, _ := p.Raw["Parameters"].(map[string]any)
	sched, _ := params["ScheduleExpression"].(map[string]any)
	interval := scheduleInterval(t, fmt.Sprint(sched["Default"]))
	if margin := window - interval; margin != missingRunMargin || margin > interval/2 {
		t.Errorf("window %s for a schedule of %s: margin %s, want %s (and at most half the interval)", window, interval, margin, missingRunMargin)
	}
}

// point is a datapoint of an alarm's evaluation range; ok false: missing.
type point struct {
	v  float64
	ok bool
}

// evaluate is CloudWatch's documented alarm evaluation ("Configuring how
// CloudWatch alarms treat missing data", "How alarm state is evaluated
// when data is missing"): r is the evaluation range, oldest first, wider
// than n (EvaluationPeriods). With at least n real points, the most recent
// n real points are evaluated and the missing-data setting is ignored;
// with fewer, missing points are filled with the setting ("breaching" or
// "notBreaching") as few times as possible, every real point kept. ALARM
// when at least m (DatapointsToAlarm) of the n breach. All missing:
// breaching is ALARM, notBreaching OK.
func evaluate(r []point, n, m int, missing string, breaches func(float64) bool) string {
	var real []point
	for _, p := range r {
		if p.ok {
			real = append(real, p)
		}
	}
	var eval []bool
	if len(real) >= n {
		for _, p := range real[len(real)-n:] {
			eval = append(eval, breaches(p.v))
		}
	} else {
		for _, p := range real {
			eval = append(eval, breaches(p.v))
		}
		for len(eval) < n {
			eval = append(eval, missing == "breaching")
		}
	}
	count := 0
	for _, b := range eval {
		if b {
			count++
		}
	}
	if count >= m {
		return "ALARM"
	}
	return "OK"
}

// rangeOf is the evaluation range at now of a metric summed over period,
// sliding (buckets end at now), k buckets, oldest first; fill gives the
// empty buckets a value (FILL(m, v)) when any bucket has data.
func rangeOf(runs []time.Time, now time.Time, period time.Duration, k int, fill *float64) []point {
	r := make([]point, k)
	seen := false
	for i := range r {
		end := now.Add(-time.Duration(k-1-i) * period)
		for _, t := range runs {
			if t.After(end.Add(-period)) && !t.After(end) {
				r[i].v++
				r[i].ok = true
				seen = true
			}
		}
	}
	if fill != nil && seen {
		for i := range r {
			if !r[i].ok {
				r[i] = point{*fill, true}
			}
		}
	}
	return r
}

// TestFleetRunMissingAlarmModel runs both definitions of
// FleetRunMissingAlarm through the documented evaluation, every 5 minutes,
// over a daily schedule whose runs end at 02:20 (one at 07:00, a slow run)
// and whose run of day 3 is missed. The old one (FleetRuns Sum over a day,
// 1 of 1, missing = breaching) stays OK while the run of day 2 is in its
// evaluation range, days after the missed run; the new one (FILL over
// hourly points, 30 of 30) goes to ALARM at most the schedule's interval
// plus the margin after the last run, and never while runs come daily.
func TestFleetRunMissingAlarmModel(t *testing.T) {
	day := 24 * time.Hour
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	at := func(d int, hh, mm int) time.Time {
		return start.Add(time.Duration(d)*day + time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
	}
	runs := []time.Time{at(0, 2, 20), at(1, 7, 0), at(2, 2, 20) /* day 3 missed */, at(4, 2, 20)}
	last := at(2, 2, 20)
	zero := 0.0
	below1 := func(v float64) bool { return v < 1 }
	newAlarm := func(now time.Time) string {
		// CloudWatch retrieves more points than EvaluationPeriods; with
		// FILL they are all real, so how many more does not matter.
		return evaluate(rangeOf(runs, now, time.Hour, missingRunHours+6, &zero), missingRunHours, missingRunHours, "breaching", below1)
	}
	// The old alarm's range: the guide's example retrieves 5 points for 3
	// evaluation periods; any range of 2 days or more keeps it OK here.
	oldAlarm := func(now time.Time, rangeDays int) string {
		return evaluate(rangeOf(runs, now, day, rangeDays, nil), 1, 1, "breaching", below1)
	}

	var firstNew, firstOld time.Time
	for now := at(0, 3, 0); now.Before(at(4, 2, 0)); now = now.Add(5 * time.Minute) {
		if firstNew.IsZero() && newAlarm(now) == "ALARM" {
			firstNew = now
		}
		if firstOld.IsZero() && oldAlarm(now, 2) == "ALARM" {
			firstOld = now
		}
	}
	deadline := last.Add(day + missingRunMargin)
	switch {
	case firstNew.IsZero():
		t.Errorf("new alarm: never ALARM after the missed run")
	case firstNew.Before(last.Add(day)):
		t.Errorf("new alarm: ALARM at %s, before the next run was due (%s)", firstNew, last.Add(day))
	case firstNew.After(deadline.Add(5 * time.Minute)):
		t.Errorf("new alarm: ALARM at %s, later than one period plus the margin after the last run (%s)", firstNew, deadline)
	}
	if !firstOld.IsZero() && !firstOld.After(deadline) {
		t.Errorf("old alarm: ALARM at %s; the model should show it late", firstOld)
	}
	for _, k := range []int{2, 3, 5} {
		if got := oldAlarm(deadline.Add(time.Hour), k); got != "OK" {
			t.Errorf("old alarm with a %d-day range: %s an hour after the new one's deadline, want OK (the gap it misses)", k, got)
		}
	}
	// And the new one recovers with the next run.
	if got := newAlarm(at(4, 2, 25)); got != "OK" {
		t.Errorf("new alarm after the run of day 4: %s, want OK", got)
	}
	t.Logf("last run %s; new alarm ALARM at %s (deadline %s); old alarm first ALARM %v", last, firstNew, deadline, firstOld)
}

// TestEvaluateFollowsTheGuide: the model against the guide's first table
// (3 of 3, 5 points retrieved; 0 not breaching, X breaching, - missing).
func TestEvaluateFollowsTheGuide(t *testing.T) {
	parse := func(s string) []point {
		var r []point
		for _, c := range s {
			switch c {
			case '0':
				r = append(r, point{0, true})
			case 'X':
				r = append(r, point{1, true})
			case '-':
				r = append(r, point{})
			}
		}
		return r
	}
	x := func(v float64) bool { return v > 0 }
	cases := []struct{ points, breaching, notBreaching string }{
		{"0-X-X", "OK", "OK"},
		{"0----", "OK", "OK"},
		{"0XX-X", "ALARM", "ALARM"},
		{"----X", "ALARM", "OK"},
		{"X----", "ALARM", "OK"},
	}
	for _, c := range cases {
		if got := evaluate(parse(c.points), 3, 3, "breaching", x); got != c.breaching {
			t.Errorf("%s breaching: %s, want %s", c.points, got, c.breaching)
		}
		if got := evaluate(parse(c.points), 3, 3, "notBreaching", x); got != c.notBreaching {
			t.Errorf("%s notBreaching: %s, want %s", c.points, got, c.notBreaching)
		}
	}
}

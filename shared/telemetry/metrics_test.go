package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/tests/support/lambdalog"
)

// checkEMF validates one line against the embedded metric format
// specification: a JSON object whose _aws holds an integer Timestamp (ms)
// and CloudWatchMetrics directives, each with a Namespace, Dimensions (sets
// of at most 30 names of string members of the root) and Metrics (at most
// 100, each naming a numeric member of the root, with a valid Unit).
func checkEMF(t *testing.T, line []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, line)
	}
	aws, ok := doc["_aws"].(map[string]any)
	if !ok {
		t.Fatalf("no _aws object: %s", line)
	}
	ts, ok := aws["Timestamp"].(json.Number)
	if _, err := ts.Int64(); !ok || err != nil {
		t.Fatalf("_aws.Timestamp %v is not an integer", aws["Timestamp"])
	}
	directives, ok := aws["CloudWatchMetrics"].([]any)
	if !ok || len(directives) == 0 {
		t.Fatalf("_aws.CloudWatchMetrics %v is not a non-empty array", aws["CloudWatchMetrics"])
	}
	units := []string{"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}
	for _, d := range directives {
		dir, _ := d.(map[string]any)
		if ns, _ := dir["Namespace"].(string); ns == "" || len(ns) > 1024 {
			t.Fatalf("Namespace %v", dir["Namespace"])
		}
		sets, ok := dir["Dimensions"].([]any)
		if !ok {
			t.Fatalf("Dimensions %v is not an array", dir["Dimensions"])
		}
		for _, s := range sets {
			set, ok := s.([]any)
			if !ok || len(set) > 30 {
				t.Fatalf("dimension set %v", s)
			}
			for _, n := range set {
				name, _ := n.(string)
				if v, ok := doc[name].(string); !ok || v == "" {
					t.Fatalf("dimension %q has no string value at the root", name)
				}
			}
		}
		ms, ok := dir["Metrics"].([]any)
		if !ok || len(ms) == 0 || len(ms) > 100 {
			t.Fatalf("Metrics %v", dir["Metrics"])
		}
		for _, m := range ms {
			def, _ := m.(map[string]any)
			name, _ := def["Name"].(string)
			if name == "" || len(name) > 1024 {
				t.Fatalf("metric definition %v", def)
			}
			if u, ok := def["Unit"]; ok && !slices.Contains(units, fmt.Sprint(u)) {
				t.Fatalf("metric %s: unit %v", name, u)
			}
			if _, ok := doc[name].(json.Number); !ok {
				t.Fatalf("metric %s has no numeric value at the root: %v", name, doc[name])
			}
		}
	}
	return doc
}

// TestEmitIsLevelledEMF: every line is one valid EMF document that carries
// MetricLevel and an RFC 3339 timestamp, so Lambda keeps it at every
// application log level up to MetricLevel.
func TestEmitIsLevelledEMF(t *testing.T) {
	var buf bytes.Buffer
	SetOutput(&buf)
	defer SetOutput(os.Stdout)
	before := time.Now()
	Emit(Service, Metric{Name: "RotationFailures", Value: 1, Unit: Count}, Metric{Name: "FewestDaysLeft", Value: 12.5, Unit: None})
	Emit(map[string]string{"Service": "kms-reimport", "Stage": "import"}, Metric{Name: "KmsThrottled", Value: 2, Unit: Count})

	lines := bytes.SplitAfter(buf.Bytes(), []byte("\n"))
	if len(lines) != 3 || len(lines[2]) != 0 {
		t.Fatalf("want two lines, each ending in a newline:\n%s", buf.Bytes())
	}
	for _, line := range lines[:2] {
		doc := checkEMF(t, line)
		if doc["level"] != MetricLevel || doc["msg"] != MetricMessage {
			t.Fatalf("level %v msg %v, want %s %s: %s", doc["level"], doc["msg"], MetricLevel, MetricMessage, line)
		}
		ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(doc["timestamp"]))
		if err != nil || ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
			t.Fatalf("timestamp %v: %v", doc["timestamp"], err)
		}
		ms, _ := doc["_aws"].(map[string]any)["Timestamp"].(json.Number).Int64()
		if ms != ts.UnixMilli() {
			t.Fatalf("_aws.Timestamp %d and timestamp %s differ", ms, ts)
		}
		if got := lambdalog.Level(line); got != MetricLevel {
			t.Fatalf("Lambda reads level %s, want %s", got, MetricLevel)
		}
	}
	doc := checkEMF(t, lines[0])
	dirs := doc["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)
	dir := dirs[0].(map[string]any)
	if dir["Namespace"] != Namespace || fmt.Sprint(dir["Dimensions"]) != "[[Service]]" || doc["Service"] != "kms-reimport" {
		t.Fatalf("directive %v", dir)
	}
	if doc["RotationFailures"].(json.Number).String() != "1" || doc["FewestDaysLeft"].(json.Number).String() != "12.5" {
		t.Fatalf("values %v %v", doc["RotationFailures"], doc["FewestDaysLeft"])
	}
}

// TestMetricLevelSurvivesFiltering: the application log levels a function
// may have, and whether Lambda keeps the metric lines at each. The old
// lines (no level) show what the filter drops.
func TestMetricLevelSurvivesFiltering(t *testing.T) {
	var buf bytes.Buffer
	SetOutput(&buf)
	defer SetOutput(os.Stdout)
	Emit(Service, Metric{Name: "KeysRenewed", Value: 1, Unit: Count})
	line := bytes.TrimSpace(buf.Bytes())
	unlevelled := []byte(`{"Service":"kms-reimport","KeysRenewed":1,"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"KmsReimport","Dimensions":[["Service"]],"Metrics":[{"Name":"KeysRenewed","Unit":"Count"}]}]}}`)
	cases := []struct {
		level               string
		keeps, keepsNoLevel bool
	}{
		{"TRACE", true, true},
		{"DEBUG", true, true},
		{"INFO", true, true},
		{"WARN", true, false},
		{"ERROR", true, false},
		{"FATAL", false, false}, // not allowed by template.yaml's LogLevel
	}
	for _, c := range cases {
		t.Run(c.level, func(t *testing.T) {
			if got := lambdalog.Keeps(line, c.level); got != c.keeps {
				t.Errorf("ApplicationLogLevel %s: metric line kept %v, want %v (%s)", c.level, got, c.keeps, line)
			}
			if got := lambdalog.Keeps(unlevelled, c.level); got != c.keepsNoLevel {
				t.Errorf("ApplicationLogLevel %s: a line without level kept %v, want %v", c.level, got, c.keepsNoLevel)
			}
		})
	}
	if !slices.Contains(LambdaLogLevels, MetricLevel) {
		t.Fatalf("MetricLevel %q is not one of Lambda's levels %v", MetricLevel, LambdaLogLevels)
	}
}

// TestEmitSetsCountsUnderEachDimensionSet: one line declares the metric
// under [Service] (the alarms') and [Service, Account], each key of each
// set a member of the line, as the EMF specification requires; without an
// account the [Service, Account] set is left out, not sent broken.
func TestEmitSetsCountsUnderEachDimensionSet(t *testing.T) {
	var buf bytes.Buffer
	SetOutput(&buf)
	defer SetOutput(os.Stdout)
	EmitSets(WithAccount("111122223333"), ServiceAndAccount, Metric{Name: "RotationFailures", Value: 1, Unit: Count})
	EmitSets(WithAccount(""), ServiceAndAccount, Metric{Name: "RotationFailures", Value: 1, Unit: Count})
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want two lines: %s", buf.Bytes())
	}
	for i, want := range []string{"[[Service] [Service Account]]", "[[Service]]"} {
		doc := checkEMF(t, append(lines[i], '\n'))
		dir := doc["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		if got := fmt.Sprint(dir["Dimensions"]); got != want {
			t.Errorf("line %d: dimension sets %s, want %s", i, got, want)
		}
		for _, set := range dir["Dimensions"].([]any) {
			for _, k := range set.([]any) {
				if _, ok := doc[k.(string)].(string); !ok {
					t.Errorf("line %d: dimension %v is not a member of the line", i, k)
				}
			}
		}
		if doc["Service"] != "kms-reimport" || doc["RotationFailures"].(json.Number).String() != "1" {
			t.Errorf("line %d: %s", i, lines[i])
		}
	}
	if doc := checkEMF(t, append(lines[0], '\n')); doc["Account"] != "111122223333" {
		t.Errorf("account %v", doc["Account"])
	}
}

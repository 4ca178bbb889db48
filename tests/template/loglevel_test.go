package template_test

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// TestMetricLevelSurvivesLogLevel: Lambda's log-level filtering drops JSON
// lines below a function's ApplicationLogLevel, so the embedded-metric-
// format lines (shared/telemetry, level telemetry.MetricLevel) must be at or
// above every LogLevel the template allows, and above what each function
// resolves its ApplicationLogLevel to for each of them; otherwise the
// product metrics, and the alarms on them, vanish.
func TestMetricLevelSurvivesLogLevel(t *testing.T) {
	rank := func(level string) int { return slices.Index(telemetry.LambdaLogLevels, level) }
	metric := rank(telemetry.MetricLevel)
	if metric < 0 {
		t.Fatalf("telemetry.MetricLevel %q is not a Lambda log level %v", telemetry.MetricLevel, telemetry.LambdaLogLevels)
	}

	p := parseTemplate(t, nil)
	params, _ := p.Raw["Parameters"].(map[string]any)
	param, _ := params["LogLevel"].(map[string]any)
	allowed, _ := param["AllowedValues"].([]any)
	if len(allowed) == 0 {
		t.Fatal("template.yaml: parameter LogLevel has no AllowedValues; the levels the metric lines must survive are unknown")
	}
	for _, v := range allowed {
		level := fmt.Sprint(v)
		t.Run(level, func(t *testing.T) {
			switch r := rank(level); {
			case r < 0:
				t.Fatalf("LogLevel allows %q, which is not a Lambda application log level %v", level, telemetry.LambdaLogLevels)
			case r > metric:
				t.Fatalf("LogLevel allows %s, above the metric lines' level %s: Lambda would drop every metric", level, telemetry.MetricLevel)
			}
			// What each function gets with this value.
			pv := parseTemplate(t, map[string]any{"LogLevel": level})
			rs, _ := pv.Raw["Resources"].(map[string]any)
			var fns []string
			for id, r := range rs {
				if m, _ := r.(map[string]any); m["Type"] == "AWS::Serverless::Function" {
					fns = append(fns, id)
				}
			}
			sort.Strings(fns)
			if len(fns) == 0 {
				t.Fatal("no AWS::Serverless::Function in template.yaml")
			}
			filtered := 0
			for _, id := range fns {
				props, _ := pv.resource(id)["Properties"].(map[string]any)
				cfg := map[string]any{}
				for _, src := range []any{pv.globalFunction("LoggingConfig"), props["LoggingConfig"]} {
					if m, ok := src.(map[string]any); ok {
						for k, v := range m {
							cfg[k] = v
						}
					}
				}
				app, set := cfg["ApplicationLogLevel"]
				if !set {
					continue // no filtering of application logs
				}
				if cfg["LogFormat"] != "JSON" {
					t.Errorf("%s: ApplicationLogLevel %v without LogFormat JSON", id, app)
				}
				got := fmt.Sprint(app)
				if got == level {
					filtered++
				}
				switch r := rank(got); {
				case r < 0:
					t.Errorf("%s: ApplicationLogLevel %q is not a Lambda level", id, got)
				case r > metric:
					t.Errorf("%s: ApplicationLogLevel %s (LogLevel %s) drops the metric lines at %s", id, got, level, telemetry.MetricLevel)
				}
			}
			if filtered == 0 {
				t.Errorf("no function's ApplicationLogLevel follows LogLevel %s: the parameter is not what the functions get", level)
			}
		})
	}
}

// Emit writes CloudWatch metrics in the embedded metric format
// (EMF): one JSON line on stdout, which Lambda ships to CloudWatch Logs and
// CloudWatch turns into metrics, with no API call and no extra permission.
// Each line carries a log level (MetricLevel) so that Lambda's log-level
// filtering keeps it.

package telemetry

import (
	"encoding/json"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Namespace of every metric of this product.
const Namespace = "KmsReimport"

// MetricLevel is the "level" of every EMF line, and why it must be there:
// with the JSON log format, Lambda sends CloudWatch Logs only the lines at
// the function's ApplicationLogLevel or above, and a line whose "level" is
// missing or invalid counts as INFO (Lambda developer guide, "Log-level
// filtering"). Without a level the metric lines vanish at LogLevel WARN or
// ERROR, and with them RotationFailures, FewestDaysLeft and the alarms on
// them (which treat missing data as not breaching).
//
// Lambda's levels are TRACE < DEBUG < INFO < WARN < ERROR < FATAL
// (LambdaLogLevels). ERROR is the lowest that survives every LogLevel
// template.yaml allows (DEBUG, INFO, WARN, ERROR; tests/template checks the
// parameter and each function's ApplicationLogLevel against it). FATAL
// would also survive a FATAL setting, which the template does not offer, and
// would read as a crash. The lines are not errors: they also carry
// "msg":"metrics" and "_aws", so a search for errors leaves them out with
// filter level = "ERROR" and not ispresent(_aws).
const MetricLevel = "ERROR"

// LambdaLogLevels are Lambda's application log levels, most detailed first:
// a function set to one of them keeps the lines at it and after it.
var LambdaLogLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// MetricMessage is the "msg" of every EMF line, as slog lines have one.
const MetricMessage = "metrics"

// Units used here.
const (
	Count = "Count"
	None  = "None"
)

// Metric is one value.
type Metric struct {
	Name  string
	Value float64
	Unit  string
}

var (
	mu  sync.Mutex
	out io.Writer = os.Stdout
)

// SetOutput redirects the lines (tests).
func SetOutput(w io.Writer) {
	mu.Lock()
	out = w
	mu.Unlock()
}

// Emit writes one EMF document with the given dimensions (for example
// {"Service": "kms-reimport"}) and metrics, all the dimensions as one
// dimension set. The keys level, timestamp, msg and _aws are the line's
// own: no dimension or metric may be named so.
func Emit(dims map[string]string, ms ...Metric) {
	dimNames := make([]string, 0, len(dims))
	for k := range dims {
		dimNames = append(dimNames, k)
	}
	sort.Strings(dimNames)
	EmitSets(dims, [][]string{dimNames}, ms...)
}

// EmitSets writes one EMF document whose metrics CloudWatch records once
// per dimension set in sets: in the EMF specification, "Dimensions" is an
// array of dimension sets, each an array of keys of dims (the line's
// top-level members), so one line counts a metric under [Service] and
// under [Service, Account] alike. A set naming a key that dims lacks is
// left out (CloudWatch would reject the line).
func EmitSets(dims map[string]string, sets [][]string, ms ...Metric) {
	now := time.Now()
	doc := map[string]any{}
	for k, v := range dims {
		doc[k] = v
	}
	dimSets := make([][]string, 0, len(sets))
	for _, set := range sets {
		if complete(set, dims) {
			dimSets = append(dimSets, set)
		}
	}
	defs := make([]map[string]string, 0, len(ms))
	for _, m := range ms {
		defs = append(defs, map[string]string{"Name": m.Name, "Unit": m.Unit})
		doc[m.Name] = m.Value
	}
	// Lambda uses a line's level only with a valid RFC 3339 timestamp
	// ("If you don't supply a valid timestamp, Lambda will assign the log
	// the level INFO"): "timestamp" as in the guide's example.
	doc[LevelKey] = MetricLevel
	doc[TimestampKey] = now.UTC().Format(time.RFC3339Nano)
	doc["msg"] = MetricMessage
	doc["_aws"] = map[string]any{
		"Timestamp": now.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  Namespace,
			"Dimensions": dimSets,
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	_, _ = out.Write(append(b, '\n'))
}

// Service is the dimension every metric carries.
var Service = map[string]string{"Service": "kms-reimport"}

// complete: every key of set is in dims.
func complete(set []string, dims map[string]string) bool {
	for _, k := range set {
		if _, ok := dims[k]; !ok {
			return false
		}
	}
	return true
}

// ServiceAndAccount is the dimension sets of a metric counted fleet-wide
// and per account in one line: [Service] (the alarms') and [Service,
// Account].
var ServiceAndAccount = [][]string{{"Service"}, {"Service", "Account"}}

// WithAccount is the dimensions Service and Account (account may be
// empty: EmitSets then leaves the [Service, Account] set out).
func WithAccount(account string) map[string]string {
	d := map[string]string{"Service": Service["Service"]}
	if account != "" {
		d["Account"] = account
	}
	return d
}

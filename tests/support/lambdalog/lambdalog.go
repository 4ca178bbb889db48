// Package lambdalog models Lambda's log-level filtering of JSON log lines,
// as the Lambda developer guide documents it ("Log-level filtering",
// https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html),
// for tests of what the functions log:
//
//   - a JSON line is levelled by its "level" key, case-insensitively
//     (the guide's example uses "debug");
//   - "If the "level" value field is invalid or missing, Lambda will assign
//     the log output the level INFO";
//   - "For Lambda to use the timestamp field, you must specify the time in
//     valid RFC 3339 timestamp format. If you don't supply a valid
//     timestamp, Lambda will assign the log the level INFO" (the guide's
//     example names the field "timestamp");
//   - "When you select a log level, Lambda sends all logs at that level
//     and lower" in detail: TRACE (most detail), DEBUG, INFO, WARN, ERROR,
//     FATAL (least); "When Lambda filters your function's application
//     logs, any log message without a level will be assigned the log level
//     INFO" (a line that is not JSON too).
//
// It is a model written from the guide, not Lambda itself: nothing here
// runs Lambda's filter.
package lambdalog

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Levels are Lambda's application log levels, most detailed first.
var Levels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}

// Level is the level Lambda gives line.
func Level(line []byte) string {
	var doc map[string]any
	if json.Unmarshal(line, &doc) != nil {
		return "INFO"
	}
	ts, _ := doc["timestamp"].(string)
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		return "INFO"
	}
	lvl, _ := doc["level"].(string)
	if !slices.Contains(Levels, strings.ToUpper(lvl)) {
		return "INFO"
	}
	return strings.ToUpper(lvl)
}

// Keeps: a function whose ApplicationLogLevel is applicationLevel sends
// line to CloudWatch Logs.
func Keeps(line []byte, applicationLevel string) bool {
	return slices.Index(Levels, Level(line)) >= slices.Index(Levels, applicationLevel)
}

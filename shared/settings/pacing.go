package settings

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/rotation"
)

// Pacing a fleet run under the KMS request quota (docs/scale.md).
//
// KMS_REQUEST_RATE (template parameter KmsRequestRate) is the rate, in
// requests per second, the fleet may use for the import-related calls
// (GetParametersForImport and ImportKeyMaterial together). A rotation
// makes ImportCallsPerRotation of them and, in AWS, takes about
// ROTATION_DURATION from the start of its child execution to the end (the
// time a Map slot is busy). By Little's law a Map running n rotations at a
// time makes n × ImportCallsPerRotation / duration import calls per
// second, so the largest n that stays under the rate is
//
//	FleetConcurrency = max(1, floor(rate × duration / ImportCallsPerRotation))
//
// and the planner hands the Map min(MAX_CONCURRENCY, FleetConcurrency).
// The estimate errs low on purpose: rotations that run longer than
// ROTATION_DURATION (cold starts, multi-material or multi-Region keys,
// whose extra calls come with extra duration) only lower the rate. Below
// one rotation at a time the Map cannot go: when duration <
// ImportCallsPerRotation / rate, a single rotation may still exceed the
// rate briefly, and adaptive retries absorb it (aws.go). The default rate
// is rotation.DefaultRequestRate.
//
// ImportCallsPerRotation counts the common case, a key with one material
// in one Region: one import, rotation.CallsPerImport requests. The plan's
// arithmetic is the rotation package's (rotation.Imports).
var ImportCallsPerRotation = rotation.Requests(rotation.Imports(rotation.Shape{}))

// DefaultRotationDuration is a low estimate of one rotation in AWS:
// four warm Lambda invocations of 100-300 ms, about ten state
// transitions and the child execution's start and completion. Measure
// yours (the rotation state machine's ExecutionTime metric) and set
// ROTATION_DURATION on the planner to use the rate more fully.
const DefaultRotationDuration = 3 * time.Second

// FleetConcurrency is the number of rotations a fleet run may run at once
// for a request rate (import calls per second) and a rotation duration:
// max(1, floor(rate × duration / ImportCallsPerRotation)).
func FleetConcurrency(rate float64, duration time.Duration) int {
	n := math.Floor(rate*duration.Seconds()/float64(ImportCallsPerRotation) + 1e-9)
	if n < 1 || math.IsNaN(n) {
		return 1
	}
	if n > 10000 {
		return 10000 // Distributed Map's limit of parallel child executions
	}
	return int(n)
}

// pacing reads KMS_REQUEST_RATE and ROTATION_DURATION into s and bounds
// s.MaxConcurrency by FleetConcurrency.
func pacing(s *Settings) error {
	s.KMSRequestRate = rotation.DefaultRequestRate
	if v := os.Getenv("KMS_REQUEST_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || !(r > 0) || r > 10000 {
			return fmt.Errorf("environment variable KMS_REQUEST_RATE is %q; want requests per second, more than 0 and at most 10000 (such as 1 or 0.5)", v)
		}
		s.KMSRequestRate = r
	}
	d, err := duration("ROTATION_DURATION", DefaultRotationDuration)
	if err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("environment variable ROTATION_DURATION is %q; want a positive duration such as 3s", os.Getenv("ROTATION_DURATION"))
	}
	s.RotationDuration = d
	s.MaxConcurrency = min(s.MaxConcurrency, FleetConcurrency(s.KMSRequestRate, d))
	if s.KMSReadRate, err = rate("KMS_READ_RATE", rotation.DefaultReadRate); err != nil {
		return err
	}
	if s.ExpiryAlarmDays, err = rate("EXPIRY_ALARM_DAYS", 7); err != nil {
		return err
	}
	return nil
}

// rate reads a positive number (at most 10000) from the environment.
func rate(name string, def float64) (float64, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || !(r > 0) || r > 10000 {
		return 0, fmt.Errorf("environment variable %s is %q; want a number more than 0 and at most 10000 (such as %g)", name, v, def)
	}
	return r, nil
}

package rotation

import "time"

// The size of a plan of imports, in imports and KMS requests: the one
// place the planner (planner.Stats.ImportItems), the pacing of a fleet run
// (settings.FleetConcurrency) and the operator's estimate
// (kms-reimport plan) count them.

// CallsPerImport: each import of a plan is one GetParametersForImport
// (fetch stage) and one ImportKeyMaterial (import stage); more only when
// an import token has to be fetched again.
const CallsPerImport = 2

// DefaultRequestRate is the default pace, in requests per second, of the
// import-related KMS calls of a fleet run (KMS_REQUEST_RATE, the
// KmsRequestRate template parameter, kms-reimport plan --kms-rate): 1, the
// GetParametersForImport quota in some Regions' documentation
// (docs/aws-behaviour.md row 16), so the default fits every documented
// quota.
const DefaultRequestRate = 1.0

// DefaultReadRate is the default pace, in requests per second, of the
// planner's DescribeKey reads (KMS_READ_RATE), which reconcile every
// registered key and replica with KMS on every fleet run: 50, a fortieth
// of the DescribeKey quota (2000) and half of ListKeyRotations' (100), so
// the rotations' own reads keep the rest (docs/aws-behaviour.md rows 16,
// 39). A page of 400 keys with one replica each takes 16 s.
const DefaultReadRate = 50.0

// ReadDuration is how long reading n keys (each with its replicas: keys
// counts every KMS key read) takes at rate.
func ReadDuration(keys int, rate float64) time.Duration { return Duration(keys, rate) }

// Shape is what a plan's size depends on.
type Shape struct {
	// Materials the key holds (as many as the last success left; 0 counts
	// as 1: a key never imported, or one whose materials KMS does not list).
	Materials int
	// Replicas of a multi-Region primary.
	Replicas int
	// Regions renewed: 0 means the primary and every replica.
	Regions int
	// Rotate: the new material is imported into the primary and every
	// replica as well.
	Rotate bool
}

// Imports is how many imports a renewal of that shape takes, counted as
// the fetch stage's plan of imports counts them: every material into every
// Region renewed, and for a rotation the new material into every Region.
func Imports(s Shape) int {
	regions := 1 + s.Replicas
	if s.Regions > 0 {
		regions = s.Regions
	}
	n := max(s.Materials, 1) * regions
	if s.Rotate {
		n += 1 + s.Replicas
	}
	return n
}

// Requests is how many import-related KMS requests n imports make.
func Requests(imports int) int { return imports * CallsPerImport }

// Duration is how long n requests take at rate requests per second,
// rounded up to whole seconds.
func Duration(requests int, rate float64) time.Duration {
	secs := float64(requests) / rate
	whole := time.Duration(secs)
	if float64(whole) < secs {
		whole++
	}
	return whole * time.Second
}

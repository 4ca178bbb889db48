// Package settings reads a function's configuration from its environment
// (set by template.yaml) and builds the AWS SDK clients once per process.
package settings

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
)

// Settings are the knobs template.yaml exposes.
type Settings struct {
	// Table is the DynamoDB table for token, import and registry records.
	Table string
	// MinTokenValidity is the least remaining validity an import token
	// must have when the import stage uses it.
	MinTokenValidity time.Duration
	// MaxTokenFetches bounds GetParametersForImport calls per execution.
	MaxTokenFetches int
	// TokenRetention is how long token records outlive their
	// ParametersValidTo before DynamoDB's TTL removes them.
	TokenRetention time.Duration
	// AuditRetention is how long import records are kept; 0 keeps them.
	AuditRetention time.Duration
	// DefaultValidFor applies to inputs that give no validity, and is the
	// registry's validity for inputs that give only a validTo.
	DefaultValidFor time.Duration
	// DefaultRenewBefore is the registry's renewal window for inputs that
	// give none.
	DefaultRenewBefore time.Duration
	// Account and Region are the account (ACCOUNT_ID) and Region
	// (AWS_REGION, set by Lambda) whose keys the deployment renews.
	Account, Region string
	// SchedulePeriod is the interval of the fleet schedule
	// (ScheduleExpression): a registered key's renewBefore is at least two
	// of them, its validity at least renewBefore plus one.
	SchedulePeriod time.Duration
	// LeaseDuration is how long a rotation holds its key's lease; a lease
	// left by a crashed execution is taken over after it.
	LeaseDuration time.Duration
	// AlertTopic is the SNS topic failures are published to ("" = none).
	AlertTopic string
	// PlannerPageSize is how many registry entries one planner call reads.
	PlannerPageSize int
	// MaxConcurrency bounds the rotations a fleet run starts at once:
	// MAX_CONCURRENCY, lowered to what KMSRequestRate allows (pacing.go).
	MaxConcurrency int
	// KMSRequestRate is the rate (requests per second) of import calls
	// (GetParametersForImport + ImportKeyMaterial) a fleet run may use.
	KMSRequestRate float64
	// RotationDuration is the estimated duration of one rotation, with
	// which KMSRequestRate becomes a number of rotations at once.
	RotationDuration time.Duration
	// KMSReadRate is the rate (requests per second) of the planner's
	// DescribeKey reads, which reconcile every key with KMS on every run
	// (pacing.go); ExpiryAlarmDays is the template parameter of that
	// name: a key with fewer days left is counted in KeysExpiringSoon and
	// notified once a day.
	KMSReadRate     float64
	ExpiryAlarmDays float64
	// VerifyMaxChecks bounds the verify passes of one execution (a
	// rotation completing in the background, eventually consistent reads).
	VerifyMaxChecks int
	// NoRotation, NoGeneratedMaterial and NoMaterialProofs say what this
	// deployment's roles do not allow (the template parameters
	// RotateOnDemand, GeneratedMaterial and MaterialProofs set to false):
	// the fetch stage refuses such a rotation before anything is changed,
	// instead of letting it meet an AccessDenied halfway. Unset variables
	// allow (a deployment from before the parameters granted all three).
	NoRotation, NoGeneratedMaterial, NoMaterialProofs bool
	// Accounts are the accounts this deployment serves: its own
	// (ACCOUNT_ID) and MEMBER_ACCOUNTS (kmsaccess.Members.Served);
	// empty when the own account is not known (no check).
	Accounts []string
}

// RotationTimeout is the rotation state machine's TimeoutSeconds
// (infra/statemachine/rotation.asl.json; a test keeps the two equal).
const RotationTimeout = 1500 * time.Second

// LeaseMargin is how much longer than an execution can run a lease lasts,
// so a lease never lapses under a live execution.
const LeaseMargin = 5 * time.Minute

// MaxTokenLife is the validity of an import token (GetParametersForImport):
// a MIN_TOKEN_VALIDITY at or above it could never be met.
const MaxTokenLife = 24 * time.Hour

// RequestOptions are the request defaults of this deployment.
func (s Settings) RequestOptions() flow.RequestOptions {
	return flow.RequestOptions{DefaultValidFor: s.DefaultValidFor, DefaultRenewBefore: s.DefaultRenewBefore, SchedulePeriod: s.SchedulePeriod,
		Accounts: s.Accounts, ServedRegion: s.Region}
}

// FromEnv reads Settings; a malformed value is an error naming the variable.
func FromEnv() (Settings, error) {
	s := Settings{Table: os.Getenv("TABLE_NAME")}
	if s.Table == "" {
		return s, fmt.Errorf("environment variable TABLE_NAME is empty; it must name the DynamoDB table")
	}
	var err error
	if s.MinTokenValidity, err = duration("MIN_TOKEN_VALIDITY", 10*time.Minute); err != nil {
		return s, err
	}
	if s.TokenRetention, err = duration("TOKEN_RECORD_RETENTION", 30*24*time.Hour); err != nil {
		return s, err
	}
	if s.AuditRetention, err = duration("AUDIT_RECORD_RETENTION", 0); err != nil {
		return s, err
	}
	if s.DefaultValidFor, err = duration("DEFAULT_VALID_FOR", 720*time.Hour); err != nil {
		return s, err
	}
	if s.DefaultValidFor < flow.MinValidity {
		return s, fmt.Errorf("environment variable DEFAULT_VALID_FOR is %q; want at least %s, the shortest validity an import can be given", os.Getenv("DEFAULT_VALID_FOR"), flow.MinValidity)
	}
	if s.DefaultRenewBefore, err = duration("DEFAULT_RENEW_BEFORE", 336*time.Hour); err != nil {
		return s, err
	}
	if s.SchedulePeriod, err = duration("SCHEDULE_PERIOD", 24*time.Hour); err != nil {
		return s, err
	}
	if s.LeaseDuration, err = duration("LEASE_DURATION", RotationTimeout+LeaseMargin); err != nil {
		return s, err
	}
	if min := RotationTimeout + LeaseMargin; s.LeaseDuration < min {
		return s, fmt.Errorf("environment variable LEASE_DURATION is %q; want at least %s (the rotation state machine's timeout %s plus %s), so a lease never lapses under a running execution", os.Getenv("LEASE_DURATION"), min, RotationTimeout, LeaseMargin)
	}
	if s.MinTokenValidity <= 0 || s.MinTokenValidity >= MaxTokenLife {
		return s, fmt.Errorf("environment variable MIN_TOKEN_VALIDITY is %q; want more than 0 and less than %s, the life of an import token", os.Getenv("MIN_TOKEN_VALIDITY"), MaxTokenLife)
	}
	s.AlertTopic = os.Getenv("ALERT_TOPIC_ARN")
	s.Account, s.Region = os.Getenv("ACCOUNT_ID"), os.Getenv("AWS_REGION")
	if s.MaxTokenFetches, err = integer("MAX_TOKEN_FETCHES", 3, 1, 10); err != nil {
		return s, err
	}
	if s.PlannerPageSize, err = integer("PLANNER_PAGE_SIZE", 400, 1, 1000); err != nil {
		return s, err
	}
	if s.MaxConcurrency, err = integer("MAX_CONCURRENCY", 5, 1, 1000); err != nil {
		return s, err
	}
	if err = pacing(&s); err != nil {
		return s, err
	}
	if s.VerifyMaxChecks, err = integer("VERIFY_MAX_CHECKS", 60, 1, 1000); err != nil {
		return s, err
	}
	m, err := kmsaccess.MembersFromEnv()
	if err != nil {
		return s, err
	}
	s.Accounts = m.Served()
	return s, allowed(&s)
}

// allowed reads the three switches of what the roles allow.
func allowed(s *Settings) (err error) {
	if s.NoRotation, err = off("ROTATE_ON_DEMAND"); err != nil {
		return err
	}
	if s.NoGeneratedMaterial, err = off("GENERATED_MATERIAL"); err != nil {
		return err
	}
	s.NoMaterialProofs, err = off("MATERIAL_PROOFS")
	return err
}

// off reads a true/false switch: "false" turns it off, "true" or unset
// leaves it on.
func off(name string) (bool, error) {
	switch v := os.Getenv(name); v {
	case "", "true":
		return false, nil
	case "false":
		return true, nil
	default:
		return false, fmt.Errorf("environment variable %s is %q; want true or false", name, v)
	}
}

// integer reads an integer variable in [min, max]; empty gives def.
func integer(name string, def, min, max int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("environment variable %s is %q; want an integer from %d to %d", name, v, min, max)
	}
	return n, nil
}

func duration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := flow.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("environment variable %s is %q; want a duration such as 10m, 720h or 30d", name, v)
	}
	return d, nil
}

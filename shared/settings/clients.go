package settings

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/kmsaccess"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
	"github.com/kms-reimport/kms-reimport/shared/telemetry"
)

// Clients are the SDK clients and stores a function uses, built once at
// init and shared by every invocation.
type Clients struct {
	Settings Settings
	// KMS hands out the client of each account and Region
	// (KMS_ENDPOINTS_BY_REGION; member accounts through the member role).
	KMS *kmsaccess.Clients
	// Secrets routes each call to the secret's account (a member's secret
	// ARN) or the function's own (kmsaccess.Secrets).
	Secrets   kmsaccess.Secrets
	SNS       *sns.Client
	Tokens    *records.Tokens
	Imports   *records.Imports
	Failures  *records.Failures
	Materials *records.Materials
	Leases    *records.Leases
	Registry  *registry.Store
}

// MustInit builds Clients or exits: a function that cannot read its
// configuration fails its init phase, which Lambda reports clearly.
func MustInit(fn string) *Clients {
	c, err := Init(context.Background())
	if err != nil {
		// A JSON line with level and timestamp, as Lambda's log-level
		// filtering reads it (the default slog handler writes plain text,
		// which Lambda reads as INFO).
		telemetry.NewLogger(fn).Error("configuration", "error", err.Error())
		os.Exit(1)
	}
	return c
}

// Init reads the settings and builds the clients.
func Init(ctx context.Context) (*Clients, error) {
	s, err := FromEnv()
	if err != nil {
		return nil, err
	}
	cfg, err := AWS(ctx)
	if err != nil {
		return nil, err
	}
	k, err := kmsaccess.FromEnv(cfg)
	if err != nil {
		return nil, err
	}
	db := dynamodb.NewFromConfig(cfg)
	return &Clients{
		Settings:  s,
		KMS:       k,
		Secrets:   k.Secrets(),
		SNS:       sns.NewFromConfig(cfg),
		Tokens:    &records.Tokens{DB: db, Table: s.Table, Retention: s.TokenRetention},
		Imports:   &records.Imports{DB: db, Table: s.Table, Retention: s.AuditRetention},
		Failures:  &records.Failures{DB: db, Table: s.Table, Retention: s.AuditRetention},
		Materials: &records.Materials{DB: db, Table: s.Table},
		Leases:    &records.Leases{DB: db, Table: s.Table, Duration: s.LeaseDuration},
		Registry:  &registry.Store{DB: db, Table: s.Table},
	}, nil
}

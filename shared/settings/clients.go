package settings

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// Clients are the SDK clients and stores a function uses, built once at
// init and shared by every invocation.
type Clients struct {
	Settings Settings
	KMS      *kms.Client
	Secrets  *secretsmanager.Client
	DynamoDB *dynamodb.Client
	SNS      *sns.Client
	Tokens   *records.Tokens
	Audit    *records.Imports
	Registry *registry.Store
	Leases   *records.Leases
}

// MustInit builds Clients or exits: a function that cannot read its
// configuration fails its init phase, which Lambda reports clearly.
func MustInit(fn string) *Clients {
	ctx := context.Background()
	s, err := FromEnv()
	if err != nil {
		slog.Error("configuration", "function", fn, "error", err.Error())
		os.Exit(1)
	}
	cfg, err := AWS(ctx)
	if err != nil {
		slog.Error("configuration", "function", fn, "error", err.Error())
		os.Exit(1)
	}
	db := dynamodb.NewFromConfig(cfg)
	return &Clients{
		Settings: s,
		KMS:      kms.NewFromConfig(cfg),
		Secrets:  secretsmanager.NewFromConfig(cfg),
		DynamoDB: db,
		Tokens:   &records.Tokens{DB: db, Table: s.Table, Retention: s.TokenRetention},
		Audit:    &records.Imports{DB: db, Table: s.Table, Retention: s.AuditRetention},
		Registry: &registry.Store{DB: db, Table: s.Table},
		Leases:   &records.Leases{DB: db, Table: s.Table, Duration: s.LeaseDuration},
		SNS:      sns.NewFromConfig(cfg),
	}
}

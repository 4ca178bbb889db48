// Package fleetkit is test support: it makes a fleet of managed keys on
// the local stack the way an operator would, with an EXTERNAL key, its
// material in Secrets Manager, and a registry entry (`kms-reimport
// register`).
package fleetkit

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/kms-reimport/kms-reimport/shared/flow"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/shared/records"
	"github.com/kms-reimport/kms-reimport/shared/registry"
)

// Clients reach the stack.
type Clients struct {
	KMS      *kms.Client
	Secrets  *secretsmanager.Client
	Registry *registry.Store
	// SecretARN registers each key's secret by its ARN, not its name: a
	// secret of a member account (its ARN names the account).
	SecretARN bool
}

// ManagedKeys registers n new keys (valid for 2160h, renewed 336h before,
// RSA_2048 wrapping: what local-kms supports) and returns their ARNs.
func ManagedKeys(ctx context.Context, c Clients, n int, prefix string) ([]string, error) {
	arns := make([]string, n)
	errs := make([]error, n)
	stamp := time.Now().UnixNano() % 1e9
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			arns[i], errs[i] = managedKey(ctx, c, fmt.Sprintf("kms-reimport/%s-%d-%03d", prefix, stamp, i))
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return arns, nil
}

func managedKey(ctx context.Context, c Clients, secret string) (string, error) {
	k, err := c.KMS.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal, Description: aws.String(secret)})
	if err != nil {
		return "", err
	}
	m := make([]byte, 32)
	_, _ = rand.Read(m)
	sec, err := c.Secrets.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &secret, SecretBinary: m})
	clear(m)
	if err != nil {
		return "", err
	}
	if c.SecretARN {
		secret = aws.ToString(sec.ARN)
	}
	arn := *k.KeyMetadata.Arn
	return arn, c.Registry.Put(ctx, registry.Entry{KeyARN: arn, SecretID: secret, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h", WrappingKeySpec: "RSA_2048"}})
}

// Kit is a local stack with the clients and stores the fleet tests check
// it through.
type Kit struct {
	Stack *stack.Stack
	Root  string
	Clients
	DB     *dynamodb.Client
	Audit  *records.Imports
	Tokens *records.Tokens
}

// New builds the clients of a running stack.
func New(ctx context.Context, root string, st *stack.Stack) (*Kit, error) {
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return nil, err
	}
	db := dynamodb.NewFromConfig(cfg)
	return &Kit{
		Stack: st, Root: root, DB: db,
		Clients: Clients{KMS: kms.NewFromConfig(cfg), Secrets: secretsmanager.NewFromConfig(cfg), Registry: &registry.Store{DB: db, Table: st.Table}},
		Audit:   &records.Imports{DB: db, Table: st.Table},
		Tokens:  &records.Tokens{DB: db, Table: st.Table},
	}, nil
}

// FleetRun runs the fleet state machine once with Retry intervals scaled
// by scale ("1": the definition's real backoff) and fails unless it
// succeeded.
func (k *Kit) FleetRun(ctx context.Context, scale string) (*stack.Execution, error) {
	ex, err := k.Stack.Execute(ctx, k.Root, []byte(`{}`), stack.ExecuteOptions{StateMachine: "FleetStateMachine", WaitScale: scale})
	if err != nil {
		return nil, err
	}
	if ex.Status != "SUCCEEDED" {
		return ex, fmt.Errorf("fleet run %s: %s %s", ex.Status, ex.Error, ex.Cause)
	}
	return ex, nil
}

// NotDueKeys registers n entries that are not due (imported, valid for
// another 60 days, renewed 14 days before expiry) under key ARNs that name
// no KMS key: a fleet run pages through them and renews none, which is how
// the scale benchmark measures the planner and the Map's pages without
// n rotations. first numbers the ARNs, so calls can add to a registry.
func NotDueKeys(ctx context.Context, reg *registry.Store, region, account string, first, n int) error {
	validTo := time.Now().Add(60 * 24 * time.Hour).UTC().Truncate(time.Second)
	done := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := first; i < first+n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/%08x-5ca1-4e00-8000-%012x", region, account, i, i)
			errs <- reg.Put(ctx, registry.Entry{KeyARN: arn, SecretID: fmt.Sprintf("kms-reimport/scale-%05d", i),
				CurrentValidTo: &validTo, LastSuccess: &done, Policy: flow.Policy{ValidFor: "2160h", RenewBefore: "336h", WrappingKeySpec: "RSA_2048"}})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
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

// demo is `make run`: one full rotation on a fresh local stack, shown the
// way an operator wants to see it.
func demo(ctx context.Context, root string) (err error) {
	dir := filepath.Join(root, ".local", "demo")
	if old, lerr := stack.Load(dir); lerr == nil {
		_ = old.Down() // a demo interrupted earlier
	}
	fmt.Println("== Starting the local stack (local-kms, DynamoDB Local, moto, every function of template.yaml under the Lambda runtime emulator)")
	st, err := stack.Up(ctx, stack.Options{Root: root, Dir: dir, Log: logf})
	if err != nil {
		return err
	}
	defer func() {
		_ = st.Down()
		fmt.Println("\n== Local stack stopped")
	}()
	cfg, err := st.AWSConfig(ctx)
	if err != nil {
		return err
	}
	kc, sm, db := kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg), dynamodb.NewFromConfig(cfg)

	stamp := time.Now().UTC().Format("20060102-150405")
	fmt.Println("\n== Creating a demo KMS key with origin EXTERNAL and its key material in Secrets Manager")
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(),
		Origin:      kmstypes.OriginTypeExternal,
		KeySpec:     kmstypes.KeySpecSymmetricDefault,
		Description: aws.String("kms-reimport demo " + stamp),
	})
	if err != nil {
		return fmt.Errorf("CreateKey: %w", err)
	}
	arn := *key.KeyMetadata.Arn
	alias := "alias/kms-reimport-demo-" + stamp
	if _, err := kc.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: &alias, TargetKeyId: &arn}); err != nil {
		return fmt.Errorf("CreateAlias: %w", err)
	}
	mat := make([]byte, 32)
	if _, err := rand.Read(mat); err != nil {
		return err
	}
	secret := "kms-reimport/demo-" + stamp
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &secret, SecretBinary: mat})
	clear(mat)
	if err != nil {
		return fmt.Errorf("CreateSecret: %w", err)
	}
	fmt.Printf("   key     %s (%s), state %s\n   secret  %s (32 random bytes, SecretBinary)\n", arn, alias, key.KeyMetadata.KeyState, secret)

	input := map[string]any{"keyId": alias, "secretId": secret, "validFor": "720h", "wrappingKeySpec": "RSA_2048"}
	in, _ := json.MarshalIndent(input, "", "  ")
	fmt.Printf("\n== Running the rotation state machine (template.yaml's definition) with input:\n%s\n", in)
	fmt.Println("   (wrappingKeySpec RSA_2048: the only spec local-kms supports; the product's default is RSA_4096)")
	fmt.Println()
	ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{Human: true, Out: os.Stdout})
	if err != nil {
		return err
	}

	fmt.Println("\n== The key after the rotation")
	md, err := kc.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &arn})
	if err != nil {
		return err
	}
	validTo := "none"
	if md.KeyMetadata.ValidTo != nil {
		validTo = md.KeyMetadata.ValidTo.UTC().Format(time.RFC3339)
	}
	fmt.Printf("   state %s, expiration model %s, ValidTo %s\n", md.KeyMetadata.KeyState, md.KeyMetadata.ExpirationModel, validTo)

	fmt.Println("\n== Token records (DynamoDB; the import token itself is removed once used)")
	ts := &records.Tokens{DB: db, Table: st.Table}
	toks, err := ts.List(ctx, arn)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   TOKEN\tSTATUS\tALGORITHM\tSPEC\tISSUED\tPARAMETERS VALID TO\tTOKEN BYTES STORED")
	for _, t := range toks {
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\t%s\t%d\n", t.TokenID, t.Status, t.WrappingAlgorithm, t.WrappingKeySpec,
			t.IssuedAt.Format(time.RFC3339), t.ParametersValidTo.Format(time.RFC3339), len(t.ImportToken))
	}
	tw.Flush()

	fmt.Println("\n== Import record (the audit trail)")
	as := &records.Imports{DB: db, Table: st.Table}
	recs, err := as.List(ctx, arn)
	if err != nil {
		return err
	}
	for _, r := range recs {
		b, _ := json.MarshalIndent(r, "   ", "  ")
		fmt.Printf("   %s\n", b)
		if r.Verification != "" {
			fmt.Printf("\n== Round-trip proof: %s\n", r.Verification)
		}
	}
	fmt.Println("\n== Registry (the schedule's fleet run renews the key from here on)")
	if e, err := (&registry.Store{DB: db, Table: st.Table}).Get(ctx, arn); err == nil {
		fmt.Printf("   %s: %s, valid for %s, renew %s before, next due %s\n", e.KeyARN, e.Status, e.ValidFor, e.RenewBefore, fmtTime(e.NextDue))
	} else {
		fmt.Printf("   not registered: %v\n", err)
	}
	if ex.Status != "SUCCEEDED" {
		return fmt.Errorf("the rotation failed; see the states above and the logs in %s", filepath.Join(dir, "logs"))
	}
	fmt.Println("\nRotation SUCCEEDED.")
	return nil
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/kmswait"
)

// keyType is one kind of key BenchmarkCallsPerKeyType renews.
type keyType struct {
	name     string
	spec     kmstypes.KeySpec
	usage    kmstypes.KeyUsageType
	material func() []byte
	rotate   bool // also measure a rotation to generated material
}

func pkcs8(k any) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return b
}

var keyTypes = []keyType{
	{"SYMMETRIC_DEFAULT", kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, func() []byte { return randomBytes(32) }, true},
	{"HMAC_256", kmstypes.KeySpecHmac256, kmstypes.KeyUsageTypeGenerateVerifyMac, func() []byte { return randomBytes(32) }, false},
	{"RSA_2048 SIGN_VERIFY", kmstypes.KeySpecRsa2048, kmstypes.KeyUsageTypeSignVerify, func() []byte {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		return pkcs8(k)
	}, false},
	{"ECC_NIST_P256 SIGN_VERIFY", kmstypes.KeySpecEccNistP256, kmstypes.KeyUsageTypeSignVerify, func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return pkcs8(k)
	}, false},
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// BenchmarkCallsPerKeyType counts, at the proxy in front of the KMS
// stand-in (which covers every key type, lists materials and rotates as
// AWS does; docs/kms-standin.md), the KMS calls one rotation execution
// makes per key type and path: the first import, a renewal, and for a
// symmetric key a rotation to generated material. The verify stage's
// passes while KMS catches up (stale reads, a rotation in progress) add
// reads; they are shown as they came.
func BenchmarkCallsPerKeyType(b *testing.B) {
	ctx := context.Background()
	pp, err := startProxies()
	if err != nil {
		b.Fatal(err)
	}
	defer pp.close()
	dir, err := os.MkdirTemp("", "kms-reimport-keytypes-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ss, err := stack.Up(sctx, stack.Options{Root: root, Dir: dir, KMS: stack.KMSStandIn,
		// The stand-in's AWS asynchrony, shortened as tests/keytypes does.
		StandInEnv: []string{"KMS_STANDIN_STALE_READ_WINDOW=150ms", "KMS_STANDIN_ROTATION_DELAY=300ms", "KMS_STANDIN_REPLICA_SYNC_DELAY=200ms"},
		// A deployment that rotates to generated material (the roles and
		// the functions' switches alike).
		Parameters:  map[string]string{"GeneratedMaterial": "true", "RotateOnDemand": "true"},
		FunctionEnv: map[string]map[string]string{"Parameters": pp.env()}})
	if err != nil {
		b.Fatalf("stand-in stack: %v", err)
	}
	defer ss.Down()
	pp.target(ss)
	cfg, err := ss.AWSConfig(ctx)
	if err != nil {
		b.Fatal(err)
	}
	kc, sm := kms.NewFromConfig(cfg), secretsmanager.NewFromConfig(cfg)
	var sb strings.Builder
	sb.WriteString("KMS calls per rotation execution, by key type and path (KMS stand-in, counted at the proxy):\n")
	for i := 0; i < b.N; i++ {
		for _, kt := range keyTypes {
			k, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Tags: stack.ManagedKeyTags(), Origin: kmstypes.OriginTypeExternal, KeySpec: kt.spec, KeyUsage: kt.usage})
			if err != nil {
				b.Fatalf("CreateKey %s: %v", kt.name, err)
			}
			arn := *k.KeyMetadata.Arn
			if err := kmswait.Visible(ctx, kc, arn); err != nil {
				b.Fatal(err)
			}
			secret := fmt.Sprintf("kms-reimport/bench-%s-%d", strings.Fields(kt.name)[0], time.Now().UnixNano())
			if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &secret, SecretBinary: kt.material()}); err != nil {
				b.Fatal(err)
			}
			in := map[string]any{"keyId": arn, "secretId": secret, "validFor": "2160h", "register": false}
			paths := []struct {
				name  string
				input map[string]any
			}{{"first import", in}, {"renewal", in}}
			if kt.rotate {
				paths = append(paths, struct {
					name  string
					input map[string]any
				}{"rotation (generated material)", map[string]any{"keyId": arn, "secretId": secret, "validFor": "2160h", "register": false,
					"rotate": true, "generateMaterial": true, "newMaterialStage": "KMSREIMPORT_NEW"}})
			}
			for _, p := range paths {
				pp.reset()
				raw, _ := json.Marshal(p.input)
				ex, err := ss.Execute(ctx, root, raw, stack.ExecuteOptions{WaitScale: "0.01"})
				if err != nil || ex.Status != "SUCCEEDED" {
					b.Fatalf("%s, %s: %v %+v", kt.name, p.name, err, ex)
				}
				kc := pp.KMS.Counts()
				var parts []string
				total := int64(0)
				for _, op := range faultproxyOps(kc) {
					parts = append(parts, fmt.Sprintf("%s %d", op, kc[op].Forwarded))
					total += kc[op].Forwarded
				}
				fmt.Fprintf(&sb, "  %-26s %-30s %2d: %s\n", kt.name, p.name, total, strings.Join(parts, ", "))
			}
		}
	}
	say("%s", sb.String())
}

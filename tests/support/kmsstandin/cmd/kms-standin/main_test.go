package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestCommandReadsTheEnvironmentAndServesReplicaRegions builds the
// command and runs it as the local stack does, with the knobs in its
// environment and a replica Region: the settings show in
// GET /_standin/health, and ReplicateKey into the replica Region makes a
// replica key that the replica Region's address answers for.
func TestCommandReadsTheEnvironmentAndServesReplicaRegions(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "kms-standin")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	primary, replica := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--addr", primary, "--region", "eu-west-2")
	cmd.Env = append(os.Environ(),
		"KMS_STANDIN_ROTATION_DELAY=20ms", "KMS_STANDIN_STALE_READ_WINDOW=0", "KMS_STANDIN_REPLICA_SYNC_DELAY=0",
		"KMS_STANDIN_MAX_ON_DEMAND_ROTATIONS=3", "KMS_STANDIN_REPLICA_REGIONS=eu-west-1="+replica)
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	logText := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var health map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + replica + "/_standin/health")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&health)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command did not answer: %v\n%s", err, logText())
		}
	}
	if health["region"] != "eu-west-1" || health["rotationDelay"] != "20ms" || health["staleReadWindow"] != "0s" || health["replicaSyncDelay"] != "0s" || health["maxOnDemandRotations"] != 3.0 {
		t.Fatalf("health of the replica Region: %v", health)
	}
	client := func(region, addr string) *kms.Client {
		return kms.New(kms.Options{Region: region, BaseEndpoint: aws.String("http://" + addr), Credentials: aws.AnonymousCredentials{}, RetryMaxAttempts: 1})
	}
	ctx := context.Background()
	k, err := client("eu-west-2", primary).CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := client("eu-west-2", primary).ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: k.KeyMetadata.Arn, ReplicaRegion: aws.String("eu-west-1")})
	if err != nil {
		t.Fatal(err)
	}
	md, err := client("eu-west-1", replica).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: r.ReplicaKeyMetadata.Arn})
	if err != nil || md.KeyMetadata.KeyState != types.KeyStateEnabled || md.KeyMetadata.MultiRegionConfiguration.MultiRegionKeyType != types.MultiRegionKeyTypeReplica {
		t.Fatalf("the replica in eu-west-1: %v %+v", err, md)
	}
	if !strings.Contains(logText(), "rotation delay 20ms") {
		t.Errorf("the command's log does not show its settings:\n%s", logText())
	}
}

// Package ddblocal gives tests a real DynamoDB: DynamoDB Local, AWS's own
// emulator, so conditional writes are checked as DynamoDB checks them (a
// fake that ignores ConditionExpression proves nothing). It reuses the
// DynamoDB Local that AWS_ENDPOINT_URL_DYNAMODB names when one answers
// there, and otherwise starts one (from make tools' .local/tools/dynamodb)
// for the life of the test binary. Every Table call gets a fresh table with
// the product's schema.
package ddblocal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

var (
	once     sync.Once
	endpoint string
	startErr error
)

// Endpoint returns the URL of a running DynamoDB Local, starting one if
// needed. A missing DynamoDB Local fails the test: it is never skipped.
func Endpoint(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { endpoint, startErr = start() })
	if startErr != nil {
		tb.Fatalf("DynamoDB Local: %v", startErr)
	}
	return endpoint
}

func start() (string, error) {
	if ep := os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"); ep != "" {
		if u, err := url.Parse(ep); err == nil && answers(u.Host) {
			return ep, nil
		}
	}
	root, err := stack.RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".local", "tools", "dynamodb")
	jar := filepath.Join(dir, "DynamoDBLocal.jar")
	if _, err := os.Stat(jar); err != nil {
		return "", fmt.Errorf("%s is missing: run `make tools` first", jar)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("java", "-Djava.library.path="+filepath.Join(dir, "DynamoDBLocal_lib"), "-jar", jar, "-inMemory", "-port", fmt.Sprint(port))
	// Its metadata file goes to a directory of its own, not the package's.
	if cmd.Dir, err = os.MkdirTemp("", "ddblocal-"); err != nil {
		return "", err
	}
	// Dies with the test binary, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting java (DynamoDB Local needs Java 17): %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if answers(addr) {
			return "http://" + addr, nil
		}
	}
	_ = cmd.Process.Kill()
	return "", fmt.Errorf("DynamoDB Local did not listen on %s within 60s", addr)
}

func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Client returns an unmodified SDK client for DynamoDB Local.
func Client(tb testing.TB) *dynamodb.Client {
	ep := Endpoint(tb)
	return dynamodb.New(dynamodb.Options{
		Region:       "eu-west-2",
		Credentials:  credentials.NewStaticCredentialsProvider("local", "local", ""),
		BaseEndpoint: aws.String(ep),
	})
}

// Table creates a fresh table with the product's schema (pk, sk; TTL on
// expiresAt, as template.yaml declares) and returns its client and name.
func Table(tb testing.TB) (*dynamodb.Client, string) {
	tb.Helper()
	db := Client(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   &name,
		BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: ddbtypes.ScalarAttributeTypeS},
		},
		KeySchema: []ddbtypes.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: ddbtypes.KeyTypeRange},
		},
	})
	if err != nil {
		tb.Fatalf("creating table %s: %v", name, err)
	}
	tb.Cleanup(func() { _, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: &name}) })
	return db, name
}

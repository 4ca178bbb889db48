package faultproxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
)

// TestRateLimitAnswersAsKMS: past the rate, the proxy answers what the SDK
// reads as KMS's ThrottlingException; the limit applies to the operations
// named, together, and the counts per operation add up.
func TestRateLimitAnswersAsKMS(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = w.Write([]byte(`{"KeyId":"k"}`))
	}))
	defer backend.Close()
	p, err := Start(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const rate = 20.0
	p.RateLimit(rate, 1, "ImportKeyMaterial", "GetParametersForImport")
	c := kms.New(kms.Options{Region: "eu-west-2", BaseEndpoint: aws.String(p.URL), RetryMaxAttempts: 1,
		Credentials: aws.AnonymousCredentials{}})
	ctx := context.Background()
	start := time.Now()
	var ok, throttled int
	for time.Since(start) < 500*time.Millisecond {
		_, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: aws.String("k"), ImportToken: []byte{1}, EncryptedKeyMaterial: []byte{1}})
		var ae smithy.APIError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ae) && ae.ErrorCode() == "ThrottlingException":
			throttled++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
		// DescribeKey is not limited.
		if _, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("k")}); err != nil {
			t.Fatalf("DescribeKey throttled: %v", err)
		}
	}
	el := time.Since(start).Seconds()
	if max := 1 + rate*el + 1; float64(ok) > max || float64(ok) < rate*el*0.6 {
		t.Errorf("%d calls passed in %.2fs at %v/s (burst 1), want about %.0f", ok, el, rate, rate*el)
	}
	if throttled == 0 {
		t.Error("no call throttled")
	}
	cs := p.Counts()
	if got := cs["ImportKeyMaterial"]; got.Forwarded != int64(ok) || got.Throttled != int64(throttled) {
		t.Errorf("counts %+v, want %d forwarded, %d throttled", got, ok, throttled)
	}
	if got := cs["DescribeKey"]; got.Throttled != 0 || got.Forwarded != int64(ok+throttled) {
		t.Errorf("DescribeKey counts %+v", got)
	}
}

func TestWithConsumedCapacity(t *testing.T) {
	b := withConsumedCapacity([]byte(`{"TableName":"t","Key":{"pk":{"S":"a"}}}`))
	if string(b) != `{"Key":{"pk":{"S":"a"}},"ReturnConsumedCapacity":"TOTAL","TableName":"t"}` {
		t.Fatal(string(b))
	}
	if !isDynamoDBData("DynamoDB_20120810.UpdateItem") || isDynamoDBData("DynamoDB_20120810.DescribeTable") || isDynamoDBData("TrentService.Encrypt") {
		t.Fatal("isDynamoDBData")
	}
}

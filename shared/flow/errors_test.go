package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

func TestNameOf(t *testing.T) {
	inner := Errorf(IncorrectKeyMaterial, "boom")
	cases := []struct {
		err  error
		want string
	}{
		{inner, IncorrectKeyMaterial},
		{fmt.Errorf("outer: %w", inner), IncorrectKeyMaterial},
		{errors.New("plain"), Internal},
		{FromAWS(&smithy.GenericAPIError{Code: "ThrottlingException"}, KeyNotEligible, "x"), AWSTransient},
		{FromAWS(&smithy.GenericAPIError{Code: "KMSInternalException"}, KeyNotEligible, "x"), AWSTransient},
		{FromAWS(&smithy.GenericAPIError{Code: "AccessDeniedException"}, Internal, "x"), AccessDenied},
		{FromAWS(&smithy.GenericAPIError{Code: "AuthorizationError"}, Internal, "x"), AccessDenied},
		{FromAWS(&smithy.GenericAPIError{Code: "ProvisionedThroughputExceededException"}, Internal, "x"), AWSTransient},
		{FromAWS(&smithy.GenericAPIError{Code: "AccessDeniedException"}, KeyNotEligible, "x"), AccessDenied},
		{FromAWS(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, Internal, "x"), AWSTransient},
		{FromAWS(fmt.Errorf("operation error KMS: %w", &smithyhttp.RequestSendError{Err: io.ErrUnexpectedEOF}), Internal, "x"), AWSTransient},
		{FromAWS(&retry.MaxAttemptsError{Attempt: 3, Err: errors.New("x")}, Internal, "x"), AWSTransient},
		{FromAWS(ratelimit.QuotaExceededError{Available: 0, Requested: 5}, Internal, "x"), AWSTransient},
		{FromAWS(fmt.Errorf("waiting: %w", context.DeadlineExceeded), Internal, "x"), AWSTransient},
		// A message that merely mentions a network word is not a network error.
		{FromAWS(errors.New("secret says: connection refused"), Internal, "x"), Internal},
	}
	for _, c := range cases {
		if got := NameOf(c.err); got != c.want {
			t.Errorf("NameOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if FromAWS(nil, Internal, "x") != nil || Wrap(Internal, nil, "x") != nil {
		t.Fatal("nil error named")
	}
}

func TestSanitize(t *testing.T) {
	token := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3) + "=="
	arn := "arn:aws:kms:eu-west-2:111122223333:key/671449d7-74cf-4045-b47a-8b89ab70dcb9"
	got := Sanitize("token " + token + " for " + arn + " hex " + strings.Repeat("ab", 40))
	if strings.Contains(got, token) || strings.Contains(got, strings.Repeat("ab", 40)) {
		t.Errorf("opaque data kept: %s", got)
	}
	if !strings.Contains(got, arn) {
		t.Errorf("ARN lost: %s", got)
	}
	if n := len(Sanitize(strings.Repeat("word ", 1000))); n > 1010 {
		t.Errorf("not bounded: %d", n)
	}
}

package kmsstandin

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Serve starts a stand-in on a local HTTP server for the life of the test
// and returns it with an unmodified SDK client pointed at it. Options{}
// models AWS's delays with their defaults (see Options); set the knobs
// (or Off) to make a suite fast.
func Serve(tb testing.TB, o Options) (*Server, *kms.Client) {
	tb.Helper()
	s := New(o)
	h := httptest.NewServer(s)
	tb.Cleanup(h.Close)
	c := kms.New(kms.Options{
		Region:           s.Region(),
		BaseEndpoint:     aws.String(h.URL),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
	})
	return s, c
}

// ServeRegion serves the stand-in of another Region of s's partition
// (s.InRegion) for the life of the test, for multi-Region keys: ReplicateKey
// on s into region then creates a replica key there.
func ServeRegion(tb testing.TB, s *Server, region string) (*Server, *kms.Client) {
	tb.Helper()
	r := s.InRegion(region)
	h := httptest.NewServer(r)
	tb.Cleanup(h.Close)
	c := kms.New(kms.Options{
		Region:           region,
		BaseEndpoint:     aws.String(h.URL),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
	})
	return r, c
}

// OperationsFor returns the operations logged for one key, in order.
func (s *Server) OperationsFor(keyARN string) []string {
	var ops []string
	for _, r := range s.Requests() {
		if r.KeyARN == keyARN {
			ops = append(ops, r.Operation)
		}
	}
	return ops
}

package kmsaccess

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestEndpointsNeedHTTPS(t *testing.T) {
	cases := []struct {
		endpoint string
		ok       bool
	}{
		{"https://kms.eu-west-1.amazonaws.com", true},
		{"https://vpce-1.kms.eu-west-1.vpce.amazonaws.com", true},
		{"http://127.0.0.1:4599", true},
		{"http://localhost:4599", true},
		{"http://[::1]:4599", true},
		{"http://kms.eu-west-1.amazonaws.com", false},
		{"http://10.0.0.5:4599", false},
		{"ftp://127.0.0.1", false},
		{"kms.eu-west-1.amazonaws.com", false},
	}
	for _, c := range cases {
		t.Run(c.endpoint, func(t *testing.T) {
			_, err := New(aws.Config{Region: "eu-west-2"}, map[string]string{"eu-west-1": c.endpoint})
			if (err == nil) != c.ok {
				t.Fatalf("New with %q: %v, want ok=%v", c.endpoint, err, c.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), EnvVar) || !strings.Contains(err.Error(), c.endpoint)) {
				t.Fatalf("error %q does not name the variable and the value", err)
			}
		})
	}
}

func TestRegionOf(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:kms:eu-west-1:111122223333:key/mrk-1": "eu-west-1",
		"arn:aws-cn:kms:cn-north-1:111122223333:key/k": "cn-north-1",
		"alias/x": "",
		"arn:aws:secretsmanager:eu-west-1:1:secret:s": "",
	} {
		if got := RegionOf(arn); got != want {
			t.Errorf("RegionOf(%q) = %q, want %q", arn, got, want)
		}
	}
}

package kmswait

import (
	"strings"
	"testing"
)

func TestCompact(t *testing.T) {
	for in, want := range map[string]string{
		"DescribeKey,GetParametersForImport,ImportKeyMaterial,DescribeKey,DescribeKey,DescribeKey,Encrypt,Decrypt":             "DescribeKey,GetParametersForImport,ImportKeyMaterial,DescribeKey,Encrypt,Decrypt",
		"ImportKeyMaterial,DescribeKey,ListKeyRotations,DescribeKey,ListKeyRotations,Encrypt":                                  "ImportKeyMaterial,DescribeKey,ListKeyRotations,Encrypt",
		"GetKeyRotationStatus,GetKeyRotationStatus,GetKeyRotationStatus,ListKeyRotations,DescribeKey,ListKeyRotations,Encrypt": "GetKeyRotationStatus,ListKeyRotations,DescribeKey,ListKeyRotations,Encrypt",
		"ImportKeyMaterial,ImportKeyMaterial": "ImportKeyMaterial,ImportKeyMaterial",
	} {
		if got := strings.Join(Compact(strings.Split(in, ",")), ","); got != want {
			t.Errorf("Compact(%s)\n = %s\nwant %s", in, got, want)
		}
	}
}

// Package kmswait holds what tests need because KMS is eventually
// consistent (as the stand-in models it): waiting until a key just created
// is visible, as a user of AWS must too, and reading a request log in
// which the verify stage's polling repeats the same reads.
package kmswait

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// Describer is the part of KMS Visible calls.
type Describer interface {
	DescribeKey(context.Context, *kms.DescribeKeyInput, ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
}

// Visible waits (up to 30 s) until DescribeKey finds keyID.
func Visible(ctx context.Context, api Describer, keyID string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := api.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: &keyID})
		var nf *types.NotFoundException
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &nf):
			return err
		case time.Now().After(deadline):
			return fmt.Errorf("key %s still not visible after 30s: %w", keyID, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reads are the operations a verify pass repeats while it waits.
var reads = map[string]bool{"DescribeKey": true, "ListKeyRotations": true, "GetKeyRotationStatus": true}

// Compact drops the repeats of a run of reads that follows the same run
// (the verify stage checking again): DescribeKey,DescribeKey,DescribeKey
// and DescribeKey,ListKeyRotations,DescribeKey,ListKeyRotations each read
// as one pass. Repeated writes are kept: they are what a test asserts.
func Compact(ops []string) []string {
	out := append([]string(nil), ops...)
	for changed := true; changed; {
		changed = false
		for n := 1; n <= 3 && !changed; n++ {
			for i := 0; i+2*n <= len(out); i++ {
				if allReads(out[i:i+n]) && equal(out[i:i+n], out[i+n:i+2*n]) {
					out = append(out[:i+n], out[i+2*n:]...)
					changed = true
					break
				}
			}
		}
	}
	return out
}

func allReads(s []string) bool {
	for _, o := range s {
		if !reads[o] {
			return false
		}
	}
	return true
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

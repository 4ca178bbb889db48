// Package material reads plaintext key material as Secrets Manager holds it
// and checks that it fits the KMS key it is meant for.
package material

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// ErrInvalid is wrapped by every error about material that does not fit.
// Its messages describe shape (lengths, encodings), never content.
var ErrInvalid = errors.New("invalid key material")

// FromSecret returns the canonical bytes to import for a key of keySpec from
// a secret's SecretBinary or SecretString (base64). The caller zeroes the
// result with Zero when done.
func FromSecret(keySpec types.KeySpec, secretBinary []byte, secretString *string) ([]byte, error) {
	var raw []byte
	switch {
	case len(secretBinary) > 0:
		raw = append([]byte(nil), secretBinary...)
	case secretString != nil:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*secretString))
		if err != nil {
			return nil, fmt.Errorf("%w: SecretString is not base64 (%d characters)", ErrInvalid, len(*secretString))
		}
		raw = b
	default:
		return nil, fmt.Errorf("%w: the secret has neither SecretBinary nor SecretString", ErrInvalid)
	}
	switch keySpec {
	case types.KeySpecSymmetricDefault:
		if len(raw) != 32 {
			Zero(raw)
			return nil, fmt.Errorf("%w: %s material must be 32 bytes, got %d", ErrInvalid, keySpec, len(raw))
		}
		return raw, nil
	default:
		Zero(raw)
		return nil, fmt.Errorf("%w: key spec %q is not supported", ErrInvalid, keySpec)
	}
}

// Zero overwrites b so plaintext does not linger in memory.
func Zero(b []byte) {
	clear(b)
}

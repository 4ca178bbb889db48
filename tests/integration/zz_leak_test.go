package integration

import (
	"strings"
	"testing"
)

// TestZZNoSecretsInLogs runs last (files run in name order): nothing the tests stored as
// key material appears in any function's log.
func TestZZNoSecretsInLogs(t *testing.T) {
	if len(secretsSeen) == 0 {
		t.Fatal("no secrets recorded; the other tests did not run")
	}
	assertNoSecretsIn(t, "function logs", readLogs(t))
	for _, tok := range tokensSeen {
		for _, e := range encodings(tok) {
			if len(e) >= 16 && strings.Contains(readLogs(t), e) {
				t.Fatal("an import token appears in a function log")
			}
		}
	}
}

package faults

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// The soak's invariants, checked after every run (faulty or clean) by
// checkRun: a pure function over what the soak observed (runFacts), so
// that each invariant is shown to fail on a deliberately broken
// observation (TestCheckRunCatches) without a stack.

// keyRun is what the soak saw of one key during one fleet run.
type keyRun struct {
	// EnabledAtStart: the key was Enabled when the run started (not one
	// the soak disabled for the run).
	EnabledAtStart bool
	// States are the KMS key states sampled (DescribeKey) during the run
	// and at its end.
	States []string
	// ValidTo is KMS's at the run's end (nil: no expiry or unread).
	ValidTo *time.Time
	// Renewed: the run added a success import record for the key; its
	// registry entry must then agree with KMS.
	Renewed         bool
	RegistryValidTo *time.Time
}

// blob is text or bytes the product wrote somewhere a reader can see.
type blob struct {
	Where string
	Data  []byte
}

// secret is bytes that must appear nowhere but in the token record
// (import tokens) or Secrets Manager (material).
type secret struct {
	What  string
	Bytes []byte
}

// runFacts is what the soak collected about one fleet run, once it had
// settled.
type runFacts struct {
	Run  int
	Keys map[string]keyRun
	// NotSucceeded is how many child executions of the run did not
	// succeed (the runner's count), plus the executions the soak stopped.
	NotSucceeded int
	// FailureRecords counts, per execution ARN, the failure records
	// (EXEC#<arn>) written during the run; ImportFailures the failed
	// import records naming it.
	FailureRecords map[string]int
	ImportFailures map[string]int
	// Notifications counts, per execution ARN, the failure notifications
	// SNS delivered during the run.
	Notifications map[string]int
	Blobs         []blob
	Secrets       []secret
}

// checkRun lists every invariant the run broke. prevValidTo is each key's
// KMS ValidTo after the runs before (updated by the caller).
func checkRun(prevValidTo map[string]time.Time, f runFacts) []string {
	var out []string
	add := func(format string, a ...any) {
		out = append(out, fmt.Sprintf("run %d: ", f.Run)+fmt.Sprintf(format, a...))
	}
	for _, arn := range sortedKeys(f.Keys) {
		k := f.Keys[arn]
		if k.EnabledAtStart {
			for _, s := range k.States {
				if s == "PendingImport" {
					add("%s was Enabled and reached PendingImport (states seen %v)", arn, k.States)
					break
				}
			}
		}
		if p, ok := prevValidTo[arn]; ok && (k.ValidTo == nil || k.ValidTo.Before(p)) {
			add("%s: KMS ValidTo went backwards: %s, then %v", arn, p.Format(time.RFC3339), k.ValidTo)
		}
		if k.Renewed && (k.ValidTo == nil || k.RegistryValidTo == nil || !k.RegistryValidTo.Equal(*k.ValidTo)) {
			add("%s: registry currentValidTo %v, KMS ValidTo %v after a renewal", arn, k.RegistryValidTo, k.ValidTo)
		}
	}
	if len(f.FailureRecords) != f.NotSucceeded {
		add("%d child executions did not succeed, %d have a failure record", f.NotSucceeded, len(f.FailureRecords))
	}
	for _, ex := range sortedKeys(f.FailureRecords) {
		if n := f.FailureRecords[ex]; n != 1 {
			add("execution %s: %d failure records", ex, n)
		}
		if n := f.ImportFailures[ex]; n > 1 {
			add("execution %s: %d failed import records", ex, n)
		}
		if n := f.Notifications[ex]; n != 1 {
			add("execution %s: %d failure notifications, want 1", ex, n)
		}
	}
	for _, ex := range sortedKeys(f.Notifications) {
		if f.FailureRecords[ex] == 0 {
			add("execution %s: notified %d times without a failure record", ex, f.Notifications[ex])
		}
	}
	for _, b := range f.Blobs {
		lower := bytes.ToLower(b.Data)
		for _, s := range f.Secrets {
			if how := leaks(b.Data, lower, s.Bytes); how != "" {
				add("%s found in %s (%s)", s.What, b.Where, how)
			}
		}
	}
	return out
}

// leaks says how secret appears in data (lower: data in lower case):
// raw, base64 or hex; "" if not.
func leaks(data, lower, secret []byte) string {
	if len(secret) < 8 {
		return "" // too short to tell from chance
	}
	switch {
	case bytes.Contains(data, secret):
		return "raw bytes"
	case bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(secret)[:len(secret)*4/3-4])):
		return "base64"
	case bytes.Contains(lower, []byte(hex.EncodeToString(secret))):
		return "hex"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestCheckRunCatches feeds checkRun one observation that keeps every
// invariant, then the same observation with one guarantee broken on
// purpose: each must be reported, and only it.
func TestCheckRunCatches(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	later := t0.Add(2160 * time.Hour)
	token := []byte("import-token-bytes-0123456789abcdef")
	material := []byte{0x10, 0x22, 0x35, 0x47, 0x5a, 0x6c, 0x7f, 0x81, 0x93, 0xa5, 0xb7, 0xc9, 0xdb, 0xed, 0xff, 0x01}
	good := func() runFacts {
		return runFacts{Run: 2,
			Keys: map[string]keyRun{
				"k1": {EnabledAtStart: true, States: []string{"Enabled", "Enabled"}, ValidTo: &later, Renewed: true, RegistryValidTo: &later},
				"k2": {EnabledAtStart: false, States: []string{"Disabled", "PendingImport"}, ValidTo: &t0},
			},
			NotSucceeded:   1,
			FailureRecords: map[string]int{"exec-2": 1},
			ImportFailures: map[string]int{"exec-2": 1},
			Notifications:  map[string]int{"exec-2": 1},
			Blobs:          []blob{{Where: "ImportMaterialFunction.log", Data: []byte(`{"msg":"key material imported","tokenId":"TOKEN#1"}`)}},
			Secrets:        []secret{{What: "import token", Bytes: token}, {What: "material of k1", Bytes: material}},
		}
	}
	prev := map[string]time.Time{"k1": t0, "k2": t0}
	if v := checkRun(prev, good()); len(v) != 0 {
		t.Fatalf("a run keeping every invariant: %v", v)
	}
	cases := []struct {
		name, want string
		breakIt    func(f *runFacts)
	}{
		{"enabled key reaches PendingImport", "reached PendingImport", func(f *runFacts) {
			k := f.Keys["k1"]
			k.States = []string{"Enabled", "PendingImport", "Enabled"}
			f.Keys["k1"] = k
		}},
		{"ValidTo goes backwards", "went backwards", func(f *runFacts) {
			k := f.Keys["k1"]
			earlier := t0.Add(time.Hour)
			k.ValidTo, k.RegistryValidTo = &earlier, &earlier
			prev["k1"] = later
			f.Keys["k1"] = k
		}},
		{"registry disagrees with KMS", "registry currentValidTo", func(f *runFacts) {
			k := f.Keys["k1"]
			k.RegistryValidTo = &t0
			f.Keys["k1"] = k
		}},
		{"failed execution without a record", "have a failure record", func(f *runFacts) { f.NotSucceeded = 2 }},
		{"two failure records", "2 failure records", func(f *runFacts) { f.FailureRecords["exec-2"] = 2 }},
		{"two failed import records", "2 failed import records", func(f *runFacts) { f.ImportFailures["exec-2"] = 2 }},
		{"notified twice", "2 failure notifications", func(f *runFacts) { f.Notifications["exec-2"] = 2 }},
		{"never notified", "0 failure notifications", func(f *runFacts) { delete(f.Notifications, "exec-2") }},
		{"notified without a record", "without a failure record", func(f *runFacts) { f.Notifications["exec-9"] = 1 }},
		{"token bytes in a log", "import token found in", func(f *runFacts) {
			f.Blobs = append(f.Blobs, blob{Where: "log", Data: append([]byte(`{"token":"`), token...)})
		}},
		{"material base64 in an SNS message", "material of k1 found in SNS (base64)", func(f *runFacts) {
			f.Blobs = append(f.Blobs, blob{Where: "SNS", Data: []byte("Cause: " + base64.StdEncoding.EncodeToString(material))})
		}},
		{"material hex in a table item", "(hex)", func(f *runFacts) {
			f.Blobs = append(f.Blobs, blob{Where: "item", Data: []byte(strings.ToUpper(hex.EncodeToString(material)))})
		}},
		{"token in the execution output", "found in execution output (raw bytes)", func(f *runFacts) {
			f.Blobs = append(f.Blobs, blob{Where: "execution output", Data: token})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prev = map[string]time.Time{"k1": t0, "k2": t0}
			f := good()
			c.breakIt(&f)
			v := checkRun(prev, f)
			if len(v) != 1 || !strings.Contains(v[0], c.want) {
				t.Fatalf("violations %q, want exactly one naming %q", v, c.want)
			}
		})
	}
}

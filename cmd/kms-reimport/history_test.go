package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/shared/flow"
	"github.com/kms-reimport/kms-reimport/shared/records"
)

func tp(t time.Time) *time.Time { return &t }

// TestCoverage: the gaps of a period no import's [ImportedAt, ValidTo)
// covers.
func TestCoverage(t *testing.T) {
	d := func(day int) time.Time { return time.Date(2026, 1, day, 0, 0, 0, 0, time.UTC) }
	cases := []struct {
		name  string
		spans []span
		from  time.Time
		to    time.Time
		gaps  []gap
	}{
		{"no import at all", nil, d(1), d(10), []gap{{d(1), d(10)}}},
		{"one import over the period", []span{{d(1), tp(d(20))}}, d(2), d(10), nil},
		{"renewed before expiry, overlapping", []span{{d(1), tp(d(5))}, {d(4), tp(d(12))}}, d(1), d(10), nil},
		{"renewed after expiry: a gap", []span{{d(1), tp(d(5))}, {d(7), tp(d(12))}}, d(1), d(10), []gap{{d(5), d(7)}}},
		{"expired before the end", []span{{d(1), tp(d(5))}}, d(1), d(10), []gap{{d(5), d(10)}}},
		{"first import after the start", []span{{d(3), tp(d(30))}}, d(1), d(10), []gap{{d(1), d(3)}}},
		{"no expiry covers to the end", []span{{d(1), tp(d(3))}, {d(2), nil}}, d(1), d(10), nil},
		{"unsorted spans", []span{{d(7), tp(d(12))}, {d(1), tp(d(5))}}, d(1), d(10), []gap{{d(5), d(7)}}},
		{"import after the period", []span{{d(1), tp(d(3))}, {d(15), tp(d(20))}}, d(1), d(10), []gap{{d(3), d(10)}}},
		{"import that ended before the period", []span{{d(1), tp(d(2))}, {d(3), tp(d(20))}}, d(5), d(10), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := coverage(c.spans, c.from, c.to)
			if ev.Gaps == nil {
				t.Fatal("gaps is nil; want [] for a stable JSON array")
			}
			if len(ev.Gaps) != len(c.gaps) || ev.Covered != (len(c.gaps) == 0) {
				t.Fatalf("gaps %v (covered %v), want %v", ev.Gaps, ev.Covered, c.gaps)
			}
			for i := range c.gaps {
				if !ev.Gaps[i].From.Equal(c.gaps[i].From) || !ev.Gaps[i].To.Equal(c.gaps[i].To) {
					t.Errorf("gap %d = %v, want %v", i, ev.Gaps[i], c.gaps[i])
				}
			}
		})
	}
}

// TestHistory: history --key alias/... lists a key's imports, failures
// and tokens in time order, the executions, and the evidence with its
// gap, as a table, JSON and CSV; never the import token, never the
// records of another key.
func TestHistory(t *testing.T) {
	f := withFakes(t)
	f.kms.addKey(testKey, nil, "alias/payments")
	now := time.Now().UTC().Truncate(time.Second)
	t1, t2, t3 := now.Add(-100*24*time.Hour), now.Add(-40*24*time.Hour), now.Add(-30*24*time.Hour)
	pk := records.PK(testKey)
	f.db.put(t, pk, records.ImportSK(t1.Format(time.RFC3339), "exec-1"), records.Import{KeyARN: testKey, RecordedAt: t1, ImportedAt: &t1, Outcome: records.ImportSucceeded,
		ValidTo: tp(t1.Add(50 * 24 * time.Hour)), ExecutionID: "arn:aws:states:eu-west-2:111122223333:execution:R:exec-1", SecretID: "kms-reimport/p", ExpirationModel: flow.Expires})
	f.db.put(t, pk, records.ImportSK(t2.Format(time.RFC3339), "exec-2"), records.Import{KeyARN: testKey, RecordedAt: t2, Outcome: records.ImportFailed,
		ErrorName: "KeyNotEligible", Stage: "fetch", Cause: "key disabled", ExecutionID: "arn:aws:states:eu-west-2:111122223333:execution:R:exec-2"})
	f.db.put(t, pk, records.ImportSK(t3.Format(time.RFC3339), "exec-3"), records.Import{KeyARN: testKey, RecordedAt: t3, ImportedAt: &t3, Outcome: records.ImportSucceeded,
		ValidTo: tp(t3.Add(90 * 24 * time.Hour)), ExecutionID: "arn:aws:states:eu-west-2:111122223333:execution:R:exec-3", ExpirationModel: flow.Expires})
	f.db.put(t, pk, records.TokenSK(t3, "tok-3"), records.Token{KeyARN: testKey, TokenID: "tok-3", IssuedAt: t3, ParametersValidTo: t3.Add(24 * time.Hour),
		ExecutionID: "arn:aws:states:eu-west-2:111122223333:execution:R:exec-3", Status: records.TokenUsed, WrappingAlgorithm: "RSAES_OAEP_SHA_256", WrappingKeySpec: "RSA_2048",
		ImportToken: []byte("SECRET-IMPORT-TOKEN-BYTES")})
	f.db.put(t, records.PK("arn:aws:kms:eu-west-2:111122223333:key/other"), records.ImportSK("x", "other"), records.Import{KeyARN: "other", RecordedAt: t3, Outcome: records.ImportFailed, ErrorName: "OtherKeysError"})

	out, errOut, code := cliRun("history", "--table", "t", "--key", "alias/payments", "--since", "120d")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{testKey, "import", "failure", "KeyNotEligible", "token", "tok-3", "exec-1", "exec-3", "GAP " + t1.Add(50*24*time.Hour).Format(time.RFC3339) + " -> " + t3.Format(time.RFC3339)} {
		if !strings.Contains(out, w) {
			t.Errorf("history lacks %q:\n%s", w, out)
		}
	}
	if i, j := strings.Index(out, "KeyNotEligible"), strings.Index(out, "tok-3"); i < 0 || j < i {
		t.Errorf("events not in time order:\n%s", out)
	}
	out, _, code = cliRun("history", "--table", "t", "--key", testKey, "--since", "120d", "--json")
	var rep historyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitOK {
		t.Fatalf("--json: exit %d, %v: %s", code, err, out)
	}
	if len(rep.Events) != 4 || len(rep.Executions) != 3 || rep.Evidence.Covered || len(rep.Evidence.Gaps) != 2 {
		t.Errorf("report: %d events, %d executions, evidence %+v", len(rep.Events), len(rep.Executions), rep.Evidence)
	}
	csvOut, _, code := cliRun("history", "--table", "t", "--key", testKey, "--since", "120d", "--csv")
	if code != exitOK || !strings.HasPrefix(csvOut, "time,kind,outcome,validTo,error,execution,detail,account\n") || strings.Count(csvOut, "\n") != 5 {
		t.Errorf("--csv: exit %d:\n%s", code, csvOut)
	}
	for _, o := range []string{out, csvOut} {
		if strings.Contains(o, "SECRET-IMPORT-TOKEN") || strings.Contains(o, "OtherKeysError") {
			t.Fatalf("history shows a token's bytes or another key's records:\n%s", o)
		}
	}
}

// TestHistoryUsage: bad usage exits 2 before any call.
func TestHistoryUsage(t *testing.T) {
	withFakes(t)
	for _, args := range [][]string{
		{"--table", "t"},
		{"--table", "t", "--key", testKey, "--since", "yesterday"},
		{"--table", "t", "--key", testKey, "--json", "--csv"},
		{"--table", "", "--key", testKey},
	} {
		if _, errOut, code := cliRun(append([]string{"history"}, args...)...); code != exitUsage || errOut == "" {
			t.Errorf("history %v: exit %d, stderr %q", args, code, errOut)
		}
	}
	if _, errOut, code := cliRun("history", "--table", "t", "--key", "alias/nope"); code != exitFailure || !strings.Contains(errOut, "alias/nope") {
		t.Errorf("unknown alias: exit %d, stderr %q", code, errOut)
	}
}

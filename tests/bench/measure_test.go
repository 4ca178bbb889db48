package bench

// What a fleet run costs, measured on the local stack: KMS, DynamoDB and
// Secrets Manager requests counted at proxies in front of the emulators,
// Lambda billed durations from the runtime emulators' REPORT lines, and
// Step Functions state transitions from the runner's trace of every state
// of every execution (the fleet's, its Map's child executions, and the
// rotation executions they start).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/faultproxy"
)

// proxies sit between the functions and the emulators.
type proxies struct {
	KMS, DynamoDB, Secrets *faultproxy.Proxy
}

func startProxies() (*proxies, error) {
	var p proxies
	var err error
	for _, pp := range []**faultproxy.Proxy{&p.KMS, &p.DynamoDB, &p.Secrets} {
		// Targets are set once the stack's ports are known.
		if *pp, err = faultproxy.Start("http://127.0.0.1:1"); err != nil {
			return nil, err
		}
	}
	p.DynamoDB.ConsumedCapacity.Store(true)
	return &p, nil
}

// env points every function at the proxies.
func (p *proxies) env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_KMS":             p.KMS.URL,
		"AWS_ENDPOINT_URL_DYNAMODB":        p.DynamoDB.URL,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": p.Secrets.URL,
	}
}

func (p *proxies) target(st *stack.Stack) {
	_ = p.KMS.SetTarget(st.KMS)
	_ = p.DynamoDB.SetTarget(st.DynamoDB)
	_ = p.Secrets.SetTarget(st.Secrets)
}

func (p *proxies) reset() {
	p.KMS.ResetCounts()
	p.DynamoDB.ResetCounts()
	p.Secrets.ResetCounts()
}

func (p *proxies) close() {
	p.KMS.Close()
	p.DynamoDB.Close()
	p.Secrets.Close()
}

// usage is what one measured run used.
type usage struct {
	// Renewals is the number of keys renewed (rotation executions that
	// succeeded).
	Renewals int
	// Failed rotation executions.
	Failed int
	// Transitions are Step Functions state transitions (every state
	// entered, retries included) of every execution.
	Transitions int
	// TransitionsByMachine splits them: fleet (the parent), map (the
	// Distributed Map's child executions), rotation.
	TransitionsByMachine map[string]int
	// Invocations and GBSeconds are Lambda requests and billed duration x
	// memory, per function.
	Invocations map[string]int
	GBSeconds   map[string]float64
	// InitMs adds up the init durations (cold starts).
	InitMs float64
	KMS    map[string]faultproxy.OpCount
	DDB    map[string]faultproxy.OpCount
	SM     map[string]faultproxy.OpCount
	Wall   time.Duration
	Output json.RawMessage
	// ChildMs are the durations of the Map's child executions (RotateKey:
	// a rotation from its start to the Map seeing it end).
	ChildMs []float64
	// FleetMs adds up the durations of the fleet state machine's own
	// states (PlanPage, RenewDueKeys, MorePages, ...), by state.
	FleetMs map[string]float64
}

func (u *usage) kmsCalls() (n int64) {
	for _, c := range u.KMS {
		n += c.Forwarded
	}
	return n
}

func (u *usage) smCalls() (n int64) {
	for _, c := range u.SM {
		n += c.Forwarded
	}
	return n
}

func (u *usage) ddbUnits() (read, write float64) {
	for _, c := range u.DDB {
		read += c.ReadUnits
		write += c.WriteUnits
	}
	return read, write
}

func (u *usage) invocations() (n int) {
	for _, v := range u.Invocations {
		n += v
	}
	return n
}

func (u *usage) gbSeconds() (s float64) {
	for _, v := range u.GBSeconds {
		s += v
	}
	return s
}

// logMarks remembers how far each emulator's log was read.
type logMarks map[string]int64

func marks(st *stack.Stack) logMarks {
	m := logMarks{}
	for id, urls := range st.Pools {
		for c := range urls {
			name := poolName(id, c)
			if fi, err := os.Stat(st.LogPath(name)); err == nil {
				m[name] = fi.Size()
			}
		}
	}
	return m
}

func poolName(id string, c int) string {
	if c == 0 {
		return id
	}
	return fmt.Sprintf("%s-%d", id, c)
}

var billedRe = regexp.MustCompile(`^REPORT RequestId: \S+\s+(?:Init Duration: ([0-9.]+) ms\s+)?Duration: [0-9.]+ ms\s+Billed Duration: ([0-9.]+) ms`)

// lambdaSince adds up the REPORT lines written since m: invocations and
// GB-seconds (billed duration x the template's memory size).
func lambdaSince(st *stack.Stack, root string, m logMarks, u *usage) error {
	tmpl, err := stack.LoadTemplate(root+"/template.yaml", map[string]string{"RotationTable": st.Table})
	if err != nil {
		return err
	}
	mem := map[string]int{}
	for _, f := range tmpl.Functions {
		mem[f.LogicalID] = f.MemoryMB
	}
	u.Invocations, u.GBSeconds = map[string]int{}, map[string]float64{}
	for id, urls := range st.Pools {
		for c := range urls {
			name := poolName(id, c)
			b, err := os.ReadFile(st.LogPath(name))
			if err != nil {
				return err
			}
			if off := m[name]; off <= int64(len(b)) {
				b = b[off:]
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				r := billedRe.FindStringSubmatch(sc.Text())
				if r == nil {
					continue
				}
				billed, _ := strconv.ParseFloat(r[2], 64)
				u.Invocations[id]++
				u.GBSeconds[id] += billed / 1000 * float64(mem[id]) / 1024
			}
			for _, m := range initRe.FindAllSubmatch(b, -1) {
				v, _ := strconv.ParseFloat(string(m[1]), 64)
				u.InitMs += v
			}
		}
	}
	return nil
}

// traceLine is one state attempt in the runner's human-readable trace:
// "<label> <type> <ms> ms  <outcome>"; nested executions' states are
// labelled "  <StateMachine>/<state>", and may run into their type (the
// column is as wide as the fleet's names).
var traceLine = regexp.MustCompile(`^(\s*)(\S+?)\s*(Task|Pass|Choice|Wait|Map|Parallel|Succeed|Fail)\s+\d+ ms\s+(.*)$`)

// fleetRun runs the fleet state machine once and measures it.
func fleetRun(ctx context.Context, st *stack.Stack, root string, px *proxies, scale string) (*usage, error) {
	px.reset()
	m := marks(st)
	var out bytes.Buffer
	start := time.Now()
	ex, err := st.Execute(ctx, root, []byte(`{}`), stack.ExecuteOptions{StateMachine: "FleetStateMachine", Human: true, Children: true, Out: &out, WaitScale: scale})
	u := &usage{Wall: time.Since(start), TransitionsByMachine: map[string]int{}}
	if err != nil {
		return nil, err
	}
	time.Sleep(300 * time.Millisecond) // the emulators' last REPORT lines
	u.KMS, u.DDB, u.SM = px.KMS.Counts(), px.DynamoDB.Counts(), px.Secrets.Counts()
	if err := lambdaSince(st, root, m, u); err != nil {
		return nil, err
	}
	text := out.String()
	if f := os.Getenv("BENCH_TRACE"); f != "" {
		_ = os.WriteFile(f, out.Bytes(), 0o644)
	}
	for _, line := range strings.Split(text, "\n") {
		t := traceLine.FindStringSubmatch(line)
		if t == nil {
			continue
		}
		label := t[2]
		u.Transitions++
		switch {
		case strings.HasPrefix(label, "RotationStateMachine/"):
			u.TransitionsByMachine["rotation"]++
			switch strings.TrimPrefix(label, "RotationStateMachine/") {
			case "Renewed":
				u.Renewals++
			case "RotationFailed":
				u.Failed++
			}
		case strings.Contains(label, "["): // RotateKey[3]: a Map child's state
			u.TransitionsByMachine["map"]++
			if strings.HasPrefix(label, "RotateKey[") {
				if ms, err := strconv.ParseFloat(strings.Fields(line[len(t[1])+len(label):])[1], 64); err == nil {
					u.ChildMs = append(u.ChildMs, ms)
				}
			}
		default:
			u.TransitionsByMachine["fleet"]++
			if f := strings.Fields(line[len(t[1])+len(label):]); len(f) > 1 {
				if ms, err := strconv.ParseFloat(f[1], 64); err == nil {
					if u.FleetMs == nil {
						u.FleetMs = map[string]float64{}
					}
					u.FleetMs[label] += ms
				}
			}
		}
	}
	if ex.Status != "SUCCEEDED" {
		return u, fmt.Errorf("fleet run %s:\n%s", ex.Status, tail(text, 3000))
	}
	if i := strings.Index(text, "\nSUCCEEDED "); i >= 0 {
		rest := text[i+1:]
		if j := strings.IndexByte(rest, '\n'); j >= 0 {
			u.Output = json.RawMessage(strings.TrimSpace(rest[j+1:]))
		}
	}
	return u, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// perRenewal formats a count per renewal.
func perRenewal(n float64, renewals int) string {
	if renewals == 0 {
		return "-"
	}
	return strconv.FormatFloat(n/float64(renewals), 'f', 2, 64)
}

// callTable lists calls per renewal by operation, counted at a proxy.
func callTable(title string, m map[string]faultproxy.OpCount, renewals int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:", title)
	ops := faultproxy.Ops(m)
	sort.Strings(ops)
	total := 0.0
	for _, op := range ops {
		total += float64(m[op].Forwarded)
		fmt.Fprintf(&b, " %s %s", op, perRenewal(float64(m[op].Forwarded), renewals))
		if m[op].Throttled > 0 {
			fmt.Fprintf(&b, " (+%d throttled)", m[op].Throttled)
		}
		fmt.Fprint(&b, ";")
	}
	fmt.Fprintf(&b, " total %s per renewal\n", perRenewal(total, renewals))
	return b.String()
}

// say prints a report line to stdout: benchmark logs (b.Log) are cut to a
// few lines.
func say(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	fmt.Print(msg)
}

func faultproxyOps(m map[string]faultproxy.OpCount) []string { return faultproxy.Ops(m) }

package main

// invoke is `sam local invoke` without Docker: one function of template.yaml,
// freshly built for this host, runs under its own Lambda Runtime Interface
// Emulator with the environment template.yaml gives it (overridden by an
// env.json in SAM's format), against the emulators of a running local stack.
// See docs/deploy.md, "make invoke".

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// InvokeReport is what one invocation measured (--report-json).
type InvokeReport struct {
	Function string `json:"function"`
	// ReportLine is the emulator's REPORT line as printed.
	ReportLine string `json:"reportLine"`
	// InitDurationMs is the emulator's "INIT REPORT(durationMs: ...)": the
	// time from the bootstrap's start to its first request for work. The
	// REPORT line's own "Init Duration" is not that (it reads ~0.1 ms).
	InitDurationMs float64 `json:"initDurationMs"`
	DurationMs     float64 `json:"durationMs"`
	BilledMs       float64 `json:"billedDurationMs"`
	MemorySizeMB   int     `json:"memorySizeMB"`
	// PeakRSSMB is VmHWM of the bootstrap process (/proc/<pid>/status):
	// the real peak memory. The REPORT line's "Max Memory Used" is a
	// placeholder equal to the memory size.
	PeakRSSMB      float64         `json:"peakRssMB"`
	FunctionError  bool            `json:"functionError"`
	ErrorType      string          `json:"errorType,omitempty"`
	Response       json.RawMessage `json:"response"`
	StackDir       string          `json:"stackDir"`
	TemporaryStack bool            `json:"temporaryStack"`
}

// Exit codes of `stackctl invoke`.
const (
	invokeOK       = 0
	invokeFnError  = 1 // the function returned an error (or crashed)
	invokeSetupErr = 2 // usage, build, stack or emulator failure
)

var endpointVars = []string{"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_SNS"}

// session is what one or more invocations share: the template, env.json,
// and the running (or a temporary) local stack.
type session struct {
	root           string
	tmpl           *stack.Template
	overrides      map[string]map[string]string
	st             *stack.Stack
	temporary      bool
	stackEndpoints bool
	verbose        bool
	cleanup        []func()
}

// sessionFlags are the flags `invoke` and `pipeline` share.
type sessionFlags struct {
	envVars, stackDir         *string
	stackEndpoints, noTempStk *bool
	verbose                   *bool
}

func addSessionFlags(fs *flag.FlagSet, root string) sessionFlags {
	return sessionFlags{
		envVars:        fs.String("env-vars", filepath.Join(root, "events", "env.json"), "env.json in SAM's format ({\"Parameters\":{...}, \"<LogicalId>\":{...}}); empty for none"),
		stackDir:       fs.String("stack-dir", filepath.Join(root, ".local", "stack"), "directory of a running local stack (make stack-up)"),
		stackEndpoints: fs.Bool("stack-endpoints", true, "the running stack's endpoints replace env.json's AWS_ENDPOINT_URL_* (its ports are dynamic)"),
		noTempStk:      fs.Bool("no-temp-stack", false, "fail instead of starting a temporary stack when none is running"),
		verbose:        fs.Bool("verbose", false, "show the emulator's own (rapid) log lines too"),
	}
}

// openSession loads the template and env.json and finds the running stack,
// or (unless needRunning or --no-temp-stack) starts a temporary one with
// the sample key and secret of events/.
func openSession(ctx context.Context, root string, f sessionFlags, needRunning bool) (*session, error) {
	s := &session{root: root, stackEndpoints: *f.stackEndpoints, verbose: *f.verbose}
	var err error
	if s.overrides, err = readEnvVars(*f.envVars); err != nil {
		return nil, err
	}
	st, err := stack.Load(*f.stackDir)
	if err != nil || !alive(st) {
		if needRunning || *f.noTempStk {
			return nil, fmt.Errorf("no local stack is running in %s: start one with `make stack-up` (or pass --stack-dir)", *f.stackDir)
		}
		dir, derr := os.MkdirTemp("", "kms-reimport-invoke-stack-")
		if derr != nil {
			return nil, derr
		}
		s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
		fmt.Fprintf(os.Stderr, "stackctl: no local stack running in %s; starting a temporary one (with the sample key and secret of events/) and stopping it afterwards\n", *f.stackDir)
		st, err = stack.Up(ctx, stack.Options{Root: root, Dir: dir, Samples: true, Log: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "• "+f+"\n", a...) }})
		if err != nil {
			s.close()
			return nil, fmt.Errorf("starting a temporary local stack: %v", err)
		}
		s.cleanup = append(s.cleanup, func() { _ = st.Down() })
		s.temporary = true
	}
	s.st = st
	// Now that the stack is known, its resources have local names.
	if s.tmpl, err = stack.LoadTemplate(filepath.Join(root, "template.yaml"), map[string]string{"RotationTable": stack.Table, "NotificationTopic": st.Topic}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *session) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

func (s *session) function(id string) (*stack.Function, error) {
	var ids []string
	for i := range s.tmpl.Functions {
		ids = append(ids, s.tmpl.Functions[i].LogicalID)
		if s.tmpl.Functions[i].LogicalID == id {
			return &s.tmpl.Functions[i], nil
		}
	}
	return nil, fmt.Errorf("template.yaml has no function %q; functions: %s", id, strings.Join(ids, ", "))
}

// invoke builds one function for this host and sends it one event under
// its own runtime emulator, as `sam local invoke` does. Function logs go to
// stderr; the response is in the report.
func (s *session) invoke(ctx context.Context, id string, event []byte) (*InvokeReport, error) {
	f, err := s.function(id)
	if err != nil {
		return nil, err
	}
	if !json.Valid(event) {
		return nil, fmt.Errorf("the event for %s is not valid JSON", id)
	}
	work, err := os.MkdirTemp("", "kms-reimport-invoke-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bootstrap := filepath.Join(work, "bootstrap")
	if err := buildForHost(ctx, s.root, f.Dir, bootstrap); err != nil {
		return nil, err
	}
	logCfg, err := loggingConfig(filepath.Join(s.root, "template.yaml"), f.LogicalID)
	if err != nil {
		return nil, err
	}
	env := invokeEnv(f, logCfg, s.overrides, s.st, s.stackEndpoints, work)
	rep, err := runInvoke(ctx, s.root, s.st, f, bootstrap, env, event, s.verbose)
	if err != nil {
		return nil, err
	}
	rep.StackDir, rep.TemporaryStack = s.st.Dir, s.temporary
	return rep, nil
}

// printReport writes the REPORT and MEASURED lines (stderr).
func printReport(rep *InvokeReport) {
	fmt.Fprintln(os.Stderr, rep.ReportLine)
	fmt.Fprintf(os.Stderr, "MEASURED %s\tInit: %.2f ms\tDuration: %.2f ms\tPeak memory (VmHWM of bootstrap): %.1f MB of %d MB\n",
		rep.Function, rep.InitDurationMs, rep.DurationMs, rep.PeakRSSMB, rep.MemorySizeMB)
}

func invokeMain(ctx context.Context, root string, args []string) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fn := fs.String("fn", "", "logical id of the function in template.yaml (required)")
	event := fs.String("event", "", "event file (JSON), or - for stdin (required unless --print-env-vars)")
	sf := addSessionFlags(fs, root)
	reportJSON := fs.String("report-json", "", "also write the measurements and response to this file (JSON)")
	printEnv := fs.Bool("print-env-vars", false, "print an env.json with the running stack's endpoints (for sam local invoke --env-vars) and exit")
	if err := fs.Parse(args); err != nil {
		return invokeSetupErr
	}
	errf := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "stackctl invoke: "+format+"\n", a...)
		return invokeSetupErr
	}
	if !*printEnv && (*fn == "" || *event == "") {
		return errf("usage: stackctl invoke --fn <LogicalId> --event <file> [--env-vars events/env.json] [--stack-dir DIR] [--report-json FILE]")
	}
	var body []byte
	var err error
	if !*printEnv {
		if *event == "-" {
			body, err = io.ReadAll(os.Stdin)
		} else {
			body, err = os.ReadFile(*event)
		}
		if err != nil {
			return errf("reading the event: %v", err)
		}
		if !json.Valid(body) {
			return errf("the event %s is not valid JSON", *event)
		}
	}
	s, err := openSession(ctx, root, sf, *printEnv)
	if err != nil {
		return errf("%v", err)
	}
	defer s.close()
	if *printEnv {
		return printEnvVars(s.tmpl, s.overrides, s.st)
	}
	if _, err := s.function(*fn); err != nil {
		return errf("%v", err)
	}
	rep, err := s.invoke(ctx, *fn, body)
	if err != nil {
		return errf("%v", err)
	}
	os.Stdout.Write(rep.Response)
	if len(rep.Response) == 0 || rep.Response[len(rep.Response)-1] != '\n' {
		fmt.Println()
	}
	printReport(rep)
	if *reportJSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*reportJSON, append(b, '\n'), 0o644); err != nil {
			return errf("%v", err)
		}
	}
	if rep.FunctionError {
		fmt.Fprintf(os.Stderr, "stackctl invoke: %s returned a function error (%s)\n", rep.Function, rep.ErrorType)
		return invokeFnError
	}
	return invokeOK
}

func alive(st *stack.Stack) bool {
	if st == nil || len(st.PIDs) == 0 {
		return false
	}
	for _, pid := range st.PIDs {
		if syscall.Kill(pid, 0) != nil {
			return false
		}
	}
	return true
}

// readEnvVars reads an env.json: {"Parameters": {...}} for every function
// and {"<LogicalId>": {...}} for one. Values may be strings, numbers or
// booleans (SAM writes booleans as "true"/"false").
func readEnvVars(path string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--env-vars: %w", err)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("--env-vars %s: want {\"Parameters\": {\"NAME\": \"value\"}, \"<LogicalId>\": {...}}: %v", path, err)
	}
	for scope, vars := range raw {
		out[scope] = map[string]string{}
		for k, v := range vars {
			switch v := v.(type) {
			case string:
				out[scope][k] = v
			case bool:
				out[scope][k] = strconv.FormatBool(v)
			case float64:
				out[scope][k] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				return nil, fmt.Errorf("--env-vars %s: %s.%s must be a string, number or boolean", path, scope, k)
			}
		}
	}
	return out, nil
}

// buildForHost builds the function as `make build-<LogicalId>` does, but for
// this machine's architecture: the emulator runs host binaries.
func buildForHost(ctx context.Context, root, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, "./"+dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", dir, err, b)
	}
	return nil
}

type logConfig struct {
	LogFormat           string `json:"LogFormat"`
	ApplicationLogLevel string `json:"ApplicationLogLevel"`
}

// loggingConfig reads the function's LoggingConfig (Globals, then the
// function), which Lambda turns into AWS_LAMBDA_LOG_FORMAT/LEVEL.
func loggingConfig(path, id string) (logConfig, error) {
	var lc logConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return lc, err
	}
	js, err := intrinsics.ProcessYAML(data, nil)
	if err != nil {
		return lc, fmt.Errorf("processing %s: %w", path, err)
	}
	var doc struct {
		Globals struct {
			Function struct {
				LoggingConfig *logConfig `json:"LoggingConfig"`
			} `json:"Function"`
		} `json:"Globals"`
		Resources map[string]struct {
			Properties struct {
				LoggingConfig *logConfig `json:"LoggingConfig"`
			} `json:"Properties"`
		} `json:"Resources"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return lc, fmt.Errorf("reading %s: %w", path, err)
	}
	for _, c := range []*logConfig{doc.Globals.Function.LoggingConfig, doc.Resources[id].Properties.LoggingConfig} {
		if c == nil {
			continue
		}
		if c.LogFormat != "" {
			lc.LogFormat = c.LogFormat
		}
		if c.ApplicationLogLevel != "" {
			lc.ApplicationLogLevel = c.ApplicationLogLevel
		}
	}
	return lc, nil
}

// invokeEnv is the function's environment, lowest precedence first:
//  1. what Lambda (and sam local invoke) sets: AWS_LAMBDA_*, region,
//     credentials (the stack's placeholders), log format and level;
//  2. template.yaml's Environment (Globals, then the function);
//  3. env.json "Parameters", then env.json "<LogicalId>" (unlike SAM, also
//     for variables the template doesn't declare: the endpoint variables);
//  4. the running stack's endpoints (AWS_ENDPOINT_URL_*), unless
//     --stack-endpoints=false: its ports change with every `make stack-up`.
//
// Nothing else comes from the caller's environment (no HOME, no AWS
// profile): like Lambda, the function sees only what is configured.
func invokeEnv(f *stack.Function, lc logConfig, over map[string]map[string]string, st *stack.Stack, stackEndpoints bool, home string) []string {
	m := map[string]string{
		"PATH":                            os.Getenv("PATH"),
		"HOME":                            home,
		"TZ":                              "UTC",
		"LANG":                            "en_US.UTF-8",
		"AWS_SAM_LOCAL":                   "true",
		"AWS_LAMBDA_FUNCTION_NAME":        f.LogicalID,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.MemoryMB),
		"AWS_LAMBDA_FUNCTION_TIMEOUT":     strconv.Itoa(f.TimeoutSecs),
		"AWS_LAMBDA_FUNCTION_HANDLER":     "bootstrap",
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.LogicalID,
		"AWS_LAMBDA_LOG_STREAM_NAME":      "$LATEST",
		"AWS_EXECUTION_ENV":               "AWS_Lambda_provided.al2023",
	}
	for _, kv := range st.ClientEnv() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	if lc.LogFormat == "JSON" {
		m["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
		if lc.ApplicationLogLevel != "" {
			m["AWS_LAMBDA_LOG_LEVEL"] = lc.ApplicationLogLevel
		}
	}
	for k, v := range f.Env {
		m[k] = v
	}
	for _, scope := range []string{"Parameters", f.LogicalID} {
		for k, v := range over[scope] {
			m[k] = v
		}
	}
	if stackEndpoints {
		for _, kv := range st.ClientEnv() {
			k, v, _ := strings.Cut(kv, "=")
			for _, e := range endpointVars {
				if k == e {
					m[k] = v
				}
			}
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+m[k])
	}
	return env
}

// printEnvVars writes an env.json for `sam local invoke --env-vars`: the
// given one with the running stack's endpoints and table filled in.
func printEnvVars(tmpl *stack.Template, over map[string]map[string]string, st *stack.Stack) int {
	out := map[string]map[string]string{"Parameters": {}}
	for scope, vars := range over {
		out[scope] = map[string]string{}
		for k, v := range vars {
			out[scope][k] = v
		}
	}
	for _, kv := range st.ClientEnv() {
		k, v, _ := strings.Cut(kv, "=")
		for _, e := range append(endpointVars, "TABLE_NAME") {
			if k == e {
				out["Parameters"][k] = v
			}
		}
	}
	_ = tmpl
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Println(string(b))
	return invokeOK
}

var (
	reportRe   = regexp.MustCompile(`^REPORT RequestId: \S+`)
	durationRe = regexp.MustCompile(`\tDuration: ([0-9.]+) ms`)
	billedRe   = regexp.MustCompile(`Billed Duration: ([0-9.]+) ms`)
	initRe     = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
	rapidRe    = regexp.MustCompile(`^\d{2} \w{3} \d{4} [0-9:,]+ \[\w+\] \(rapid\)`)
)

// runInvoke starts the emulator with its own two ports, sends the event,
// measures the bootstrap's peak memory and collects the REPORT line.
func runInvoke(ctx context.Context, root string, st *stack.Stack, f *stack.Function, bootstrap string, env []string, event []byte, verbose bool) (*InvokeReport, error) {
	rie := filepath.Join(stack.Tools(root), "bin", "aws-lambda-rie")
	if _, err := os.Stat(rie); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make tools` first", rie)
	}
	ports, err := stack.FreePorts(2)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	rapi := fmt.Sprintf("127.0.0.1:%d", ports[1])
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", rapi, bootstrap)
	cmd.Env = env
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the runtime emulator: %w", err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		pw.Close()
	}()

	var (
		mu       sync.Mutex
		report   string
		initMs   float64
		reported = make(chan struct{})
		once     sync.Once
	)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1024*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			if m := initRe.FindStringSubmatch(line); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				mu.Lock()
				initMs = v
				mu.Unlock()
			}
			if reportRe.MatchString(line) {
				mu.Lock()
				report = strings.TrimRight(line, "\t ")
				mu.Unlock()
				once.Do(func() { close(reported) })
			}
			if verbose || !rapidRe.MatchString(line) {
				if !reportRe.MatchString(line) {
					fmt.Fprintln(os.Stderr, line)
				}
			}
		}
	}()

	if err := stack.WaitTCP(ctx, addr, 15*time.Second); err != nil {
		return nil, fmt.Errorf("runtime emulator on %s did not start: %w", addr, err)
	}
	timeout := time.Duration(f.TimeoutSecs+15) * time.Second
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodPost, "http://"+addr+"/2015-03-31/functions/function/invocations", strings.NewReader(string(event)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoking %s: %w", f.LogicalID, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the response of %s: %w", f.LogicalID, err)
	}
	// Measure before anything stops the runtime: it stays up, waiting for
	// the next event, so VmHWM is the peak of init plus this invocation.
	peak, perr := peakRSS(cmd.Process.Pid)

	select {
	case <-reported:
	case <-time.After(5 * time.Second):
	}
	rep := &InvokeReport{Function: f.LogicalID, MemorySizeMB: f.MemoryMB, Response: json.RawMessage(body)}
	mu.Lock()
	rep.ReportLine, rep.InitDurationMs = report, initMs
	mu.Unlock()
	if rep.ReportLine == "" {
		rep.ReportLine = "REPORT (the emulator printed none)"
	}
	if m := durationRe.FindStringSubmatch(rep.ReportLine); m != nil {
		rep.DurationMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := billedRe.FindStringSubmatch(rep.ReportLine); m != nil {
		rep.BilledMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if perr != nil {
		fmt.Fprintf(os.Stderr, "stackctl invoke: could not measure peak memory: %v\n", perr)
	}
	rep.PeakRSSMB = float64(peak) / 1024

	var e struct {
		ErrorType string `json:"errorType"`
	}
	if json.Unmarshal(body, &e) == nil && e.ErrorType != "" {
		rep.FunctionError, rep.ErrorType = true, e.ErrorType
	}
	if h := resp.Header.Get("X-Amz-Function-Error"); h != "" {
		rep.FunctionError = true
		if rep.ErrorType == "" {
			rep.ErrorType = h
		}
	}
	if resp.StatusCode != http.StatusOK && !rep.FunctionError {
		rep.FunctionError, rep.ErrorType = true, fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return rep, nil
}

// peakRSS returns VmHWM (kB) of the bootstrap under the emulator.
func peakRSS(riePID int) (int64, error) {
	pids := stack.Bootstraps(riePID)
	if len(pids) == 0 {
		return 0, errors.New("no bootstrap process under the runtime emulator")
	}
	return stack.VmHWM(pids[0])
}

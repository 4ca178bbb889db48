// Command stackctl drives the local stack: `up`, `down`, `execute`,
// `invoke` and `demo` (what `make run` shows). It is the engine behind the
// Makefile's local targets; see the README.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

const usage = `usage: stackctl <command> [flags]

commands:
  up [--kms kms-standin] [--members A,B] [--roleless C]
                         start the local stack (state, logs and env file in .local/stack) with the
                         sample key, alias and secret that the files of events/ name, and the
                         Step Functions stand-in kms-reimport rotate uses
  down                   stop it
  execute --input FILE [--state-machine FleetStateMachine] [--stack-dir DIR]
                         run a state machine on the running stack; exit 1 if the execution failed
  invoke --fn ID --event FILE [--env-vars events/env.json] [--stack-dir DIR] [--report-json FILE]
                         sam local invoke without Docker: one function, freshly built, under its own
                         runtime emulator; response on stdout, logs and REPORT on stderr; exit 1 on a
                         function error, 2 on a setup error (docs/deploy.md, "make invoke")
  pipeline --event FILE [--env-vars events/env.json] [--stack-dir DIR] [--save-dir DIR]
                         invoke the four rotation stages in order (fetch-parameters, wrap-material,
                         import-material, verify-import), each response the next one's event; prints
                         each response; exit 1 at the first function error, 2 on a setup error
  demo                   start a stack, create a demo key and secret, rotate, show the result, stop
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	root, err := stack.RepoRoot()
	if err != nil {
		fail(2, err)
	}
	dir := filepath.Join(root, ".local", "stack")
	switch os.Args[1] {
	case "up":
		fs := flag.NewFlagSet("up", flag.ExitOnError)
		kmsImpl := fs.String("kms", stack.KMSLocal, "the KMS emulator: local-kms (symmetric keys only), or kms-standin (HMAC, RSA and ECC keys too; tests/support/kmsstandin)")
		members := fs.String("members", "", "member accounts (comma separated, e.g. "+stack.MemberAccount+") with the member stack (infra/member/template.yaml) and a KMS each; the env file then reaches them (docs/deploy.md, \"Many accounts\")")
		roleless := fs.String("roleless", "", "accounts listed in the hub's MemberAccounts with no member stack (no role)")
		_ = fs.Parse(os.Args[2:])
		st, err := stack.Up(ctx, stack.Options{Root: root, Dir: dir, Log: logf, Samples: true, KMS: *kmsImpl, StepFunctions: true,
			MemberAccounts: splitList(*members), RolelessAccounts: splitList(*roleless)})
		if err != nil {
			fail(1, err)
		}
		fmt.Printf("local stack up. Point a shell at it with:\n  source %s\n", filepath.Join(dir, "env"))
		ids := make([]string, 0, len(st.Functions))
		for id := range st.Functions {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Printf("  %-24s %s\n", id, st.Functions[id])
		}
		fmt.Printf("The files of events/ name the sample key %s (%s) and secret %s:\n"+
			"  make invoke FN=FetchParametersFunction EVENT=events/fetch-parameters.json\n"+
			"  make pipeline EVENT=events/fetch-parameters.json\n"+
			"  make execute INPUT=events/execution-input.json\n"+
			"and, with the env file sourced, the Step Functions stand-in %s runs kms-reimport rotate's executions:\n"+
			"  go run ./cmd/kms-reimport rotate --key %s --secret %s --wrapping-key-spec RSA_2048 --wait\n",
			st.Sample.Alias, st.Sample.KeyARN, st.Sample.SecretID, st.SFN, st.Sample.Alias, st.Sample.SecretID)
	case "down":
		st, err := stack.Load(dir)
		if err != nil {
			fmt.Println("no local stack running")
			return
		}
		_ = st.Down()
		fmt.Println("local stack stopped")
	case "execute":
		fs := flag.NewFlagSet("execute", flag.ExitOnError)
		input := fs.String("input", "", "execution input file (JSON)")
		asJSON := fs.Bool("json", false, "print one JSON document")
		sm := fs.String("state-machine", "RotationStateMachine", "state machine of template.yaml: RotationStateMachine (one key) or FleetStateMachine (every due key)")
		stackDir := fs.String("stack-dir", dir, "directory of the running local stack")
		_ = fs.Parse(os.Args[2:])
		if *input == "" {
			fail(2, fmt.Errorf("execute needs --input FILE"))
		}
		st, err := stack.Load(*stackDir)
		if err != nil {
			fail(2, fmt.Errorf("no local stack running (make stack-up): %w", err))
		}
		in, err := readInput(*input)
		if err != nil {
			fail(2, err)
		}
		if *asJSON {
			ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{StateMachine: *sm})
			if err != nil {
				fail(1, err)
			}
			printJSON(ex)
			if ex.Status != "SUCCEEDED" || failedRotations(ex.Output) > 0 {
				os.Exit(1)
			}
			return
		}
		var out bytes.Buffer
		ex, err := st.Execute(ctx, root, in, stack.ExecuteOptions{Human: true, Out: io.MultiWriter(os.Stdout, &out), StateMachine: *sm})
		if err != nil {
			fail(1, err)
		}
		if ex.Status != "SUCCEEDED" {
			os.Exit(1)
		}
		if n := failedRotations(humanOutput(out.Bytes())); n > 0 {
			fmt.Fprintf(os.Stderr, "stackctl: the fleet run succeeded but %d rotation(s) failed (stats.failedKeys above)\n", n)
			os.Exit(1)
		}
	case "invoke":
		os.Exit(invokeMain(ctx, root, os.Args[2:]))
	case "pipeline":
		os.Exit(pipelineMain(ctx, root, os.Args[2:]))
	case "demo":
		if err := demo(ctx, root); err != nil {
			fail(1, err)
		}
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
}

func logf(format string, args ...any) { fmt.Printf("• "+format+"\n", args...) }

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "stackctl:", err)
	os.Exit(code)
}

func printJSON(v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Println(string(b))
}

// readInput reads an execution input file and refuses one that is not
// JSON, naming the user's file and where it breaks (exit 2, before any
// execution).
func readInput(path string) ([]byte, error) {
	in, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(in[:se.Offset], []byte("\n"))
			return nil, fmt.Errorf("%s: not valid JSON (line %d, byte %d): %v", path, line, se.Offset, err)
		}
		return nil, fmt.Errorf("%s: not valid JSON: %v", path, err)
	}
	return in, nil
}

// humanOutput is the output document the runner prints after its
// "SUCCEEDED <arn>" line (infra/local/sfn/README.md, "Output").
func humanOutput(b []byte) []byte {
	i := bytes.LastIndex(b, []byte("\nSUCCEEDED "))
	if i < 0 {
		if !bytes.HasPrefix(b, []byte("SUCCEEDED ")) {
			return nil
		}
		i = -1
	}
	rest := b[i+1:]
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 {
		return nil
	}
	return rest[nl+1:]
}

// failedRotations is a fleet run's stats.failed (its output); 0 for any
// other output.
func failedRotations(output []byte) int {
	var o struct {
		Failed int `json:"failed"`
	}
	dec := json.NewDecoder(bytes.NewReader(output))
	if err := dec.Decode(&o); err != nil {
		return 0
	}
	return o.Failed
}

// splitList splits a comma-separated flag value, dropping empty parts.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

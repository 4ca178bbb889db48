// Command sfn-standin serves the Step Functions stand-in for the running
// local stack, so `kms-reimport rotate` can start and follow executions
// locally. `make stack-up` starts it (stack.Options.StepFunctions) and
// writes AWS_ENDPOINT_URL_SFN and STATE_MACHINE_ARN to the env file; by
// hand, for a stack started otherwise:
//
//	go run ./tests/support/sfnstandin/cmd/sfn-standin [--addr 127.0.0.1:8083] [--stack-dir .local/stack] [--root .]
//
// It prints the variables to export (AWS_ENDPOINT_URL_SFN, STATE_MACHINE_ARN)
// and serves until interrupted.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
	"github.com/kms-reimport/kms-reimport/tests/support/sfnstandin"
)

func main() {
	root, _ := stack.RepoRoot()
	addr := flag.String("addr", "127.0.0.1:8083", "address to listen on")
	dir := flag.String("stack-dir", filepath.Join(root, ".local", "stack"), "directory of the running local stack")
	flag.StringVar(&root, "root", root, "the repository (template.yaml); default: found above the working directory")
	flag.Parse()
	if root == "" {
		fail(fmt.Errorf("template.yaml not found above the working directory: pass --root"))
	}
	st, err := stack.Load(*dir)
	if err != nil {
		fail(fmt.Errorf("no local stack running (make stack-up): %w", err))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	srv := &sfnstandin.Server{Region: st.Region, Account: stack.Account, Ctx: ctx,
		Run: func(ctx context.Context, sm, name string, input []byte) (*stack.Execution, error) {
			return st.Execute(ctx, root, input, stack.ExecuteOptions{StateMachine: sm, Name: name})
		}}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fail(err)
	}
	fmt.Printf("export AWS_ENDPOINT_URL_SFN=http://%s\nexport STATE_MACHINE_ARN=%s\n", ln.Addr(), srv.StateMachineARN("RotationStateMachine"))
	go func() { <-ctx.Done(); ln.Close() }()
	if err := http.Serve(ln, srv); err != nil && ctx.Err() == nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sfn-standin:", err)
	os.Exit(2)
}

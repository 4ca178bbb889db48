package main

// pipeline sends an event through the four stages of a rotation, each
// function's response becoming the next one's event: what piping
// `sam local invoke` (or `make invoke`) outputs by hand does. Each stage is
// an `invoke` (its own build and runtime emulator, env.json applied).

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pipelineStages are the rotation's Task functions in order.
var pipelineStages = []string{"FetchParametersFunction", "WrapMaterialFunction", "ImportMaterialFunction", "VerifyImportFunction"}

func pipelineMain(ctx context.Context, root string, args []string) int {
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	event := fs.String("event", "", "the first stage's event (JSON), e.g. events/fetch-parameters.json (required)")
	sf := addSessionFlags(fs, root)
	saveDir := fs.String("save-dir", filepath.Join(root, ".local", "pipeline"), "where each stage's response is written (<n>-<LogicalId>.json), to send again with make invoke")
	if err := fs.Parse(args); err != nil {
		return invokeSetupErr
	}
	errf := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "stackctl pipeline: "+format+"\n", a...)
		return invokeSetupErr
	}
	if *event == "" || fs.NArg() > 0 {
		return errf("usage: stackctl pipeline --event <file> [--env-vars events/env.json] [--stack-dir DIR] [--save-dir DIR]")
	}
	body, err := os.ReadFile(*event)
	if err != nil {
		return errf("reading the event: %v", err)
	}
	if !json.Valid(body) {
		return errf("the event %s is not valid JSON", *event)
	}
	if err := os.MkdirAll(*saveDir, 0o755); err != nil {
		return errf("%v", err)
	}
	s, err := openSession(ctx, root, sf, false)
	if err != nil {
		return errf("%v", err)
	}
	defer s.close()

	from := *event
	for i, id := range pipelineStages {
		fmt.Printf("== %d/%d %s, event: %s\n", i+1, len(pipelineStages), id, from)
		rep, err := s.invoke(ctx, id, body)
		if err != nil {
			return errf("%s: %v", id, err)
		}
		printReport(rep)
		var pretty bytes.Buffer
		if json.Indent(&pretty, rep.Response, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(rep.Response)
		}
		fmt.Println(pretty.String())
		out := filepath.Join(*saveDir, fmt.Sprintf("%d-%s.json", i+1, id))
		if err := os.WriteFile(out, append(pretty.Bytes(), '\n'), 0o644); err != nil {
			return errf("%v", err)
		}
		if rep.FunctionError {
			fmt.Fprintf(os.Stderr, "stackctl pipeline: %s returned a function error (%s); the stages after it were not run (its response: %s)\n", id, rep.ErrorType, shortPath(out))
			return invokeFnError
		}
		body, from = rep.Response, shortPath(out)
	}
	fmt.Printf("== the %d stages succeeded; responses in %s\n", len(pipelineStages), shortPath(*saveDir))
	return invokeOK
}

// shortPath is p relative to the working directory when under it.
func shortPath(p string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return p
}

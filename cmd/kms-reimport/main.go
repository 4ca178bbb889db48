// Command kms-reimport is the operator's tool for importing key material
// into AWS KMS keys by hand, with the same code as the Lambdas.
//
//	kms-reimport <subcommand> [flags]
//
// Each subcommand lives in its own file and registers itself in an init
// function with register; main only dispatches.
//
// Exit codes: 0 success, 1 failure while doing the work (writing the output,
// the system's random source), 2 bad usage or bad input (unknown flag,
// unreadable or invalid file, material or combination KMS would refuse).
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the exit code; it writes results to stdout and
// diagnostics to stderr.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

// register adds a subcommand; call it from an init function in the
// subcommand's file.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("kms-reimport: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

func main() {
	// The shared packages log their progress at INFO for the Lambdas; an
	// operator at a terminal wants the result, and warnings.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run([]string{"-h"}, stdout, stderr)
			}
		}
		usage(stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kms-reimport: unknown subcommand %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	width := 0
	for n := range commands {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("Usage: kms-reimport <subcommand> [flags]\n\nImports key material into AWS KMS keys (BYOK).\n\nSubcommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, n, commands[n].summary)
	}
	b.WriteString("\nRun 'kms-reimport <subcommand> --help' for its flags.\nExit codes: 0 success, 1 failure, 2 bad usage or invalid input.\n")
	io.WriteString(w, b.String())
}

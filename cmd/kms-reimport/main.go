// Command kms-reimport is the operator's tool for importing key material
// into AWS KMS keys by hand, with the same code as the Lambdas.
//
//	kms-reimport <subcommand> [flags]
//
// Each subcommand lives in its own file; commands, below, is the one table
// of them (no self-registration), and main only dispatches.
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
	"slices"
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

// commands is every subcommand, in the order usage lists them.
var commands = []command{
	{name: "wrap", summary: "encrypt key material with a KMS wrapping public key (offline; writes EncryptedKeyMaterial)", run: runWrap},
	{name: "register", summary: "add a key to the registry the scheduled planner renews", run: runRegister},
	{name: "adopt", summary: "find the EXTERNAL keys tagged for adoption, check each as register does, register those that pass", run: runAdopt},
	{name: "deregister", summary: "remove a key from the registry (its records stay); the only way a key leaves it", run: runDeregister},
	{name: "status", summary: "managed keys: state, ValidTo, days left, last import, why a key is blocked; expiry outlook", run: runStatus},
	{name: "plan", summary: "what the next scheduled run would renew and how long it would take, changing nothing", run: runPlan},
	{name: "rotate", summary: "start a rotation of one key on the deployed state machine; --wait follows it state by state", run: runRotate},
	{name: "selftest", summary: "prove a deployment: a throwaway key and secret, one rotation, verified, then cleaned up", run: runSelftest},
	{name: "history", summary: "every import, token, failure and execution of a key, and whether it always had valid material", run: runHistory},
}

// lookup finds a subcommand by name.
func lookup(name string) (command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands[i], true
}

func main() {
	// The shared packages log their progress at INFO for the Lambdas; an
	// operator at a terminal wants the result, and warnings.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	helpOut = stdout
	for _, c := range commands {
		summaries[c.name] = c.summary
	}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, "kms-reimport", version())
		return exitOK
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if c, ok := lookup(args[1]); ok {
				return c.run([]string{"-h"}, stdout, stderr)
			}
		}
		usage(stdout)
		return exitOK
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "kms-reimport: unknown subcommand %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	var b strings.Builder
	b.WriteString("Usage: kms-reimport <subcommand> [flags]\n\nImports key material into AWS KMS keys (BYOK).\n\nSubcommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	b.WriteString("\nRun 'kms-reimport <subcommand> --help' for its flags.\nRun 'kms-reimport --version' for the version.\nExit codes: 0 success, 1 failure (or, for checks, something found), 2 bad usage or invalid input.\n")
	io.WriteString(w, b.String())
}

package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// helpOut is where --help goes (run sets it to its stdout).
var helpOut io.Writer = os.Stdout

// exitCodes is each subcommand's exit-code line where it differs from
// the common one.
var exitCodes = map[string]string{
	"rotate":   "0 renewed (without --wait: started), 1 failed or not renewed, 2 bad usage or invalid input",
	"status":   "0 success (with --check: nothing found), 1 failure or, with --check, something found, 2 bad usage",
	"plan":     "0 success, 1 failure, 2 bad usage; with --detailed-exitcode: 0 nothing due, 1 error, 2 something due",
	"selftest": "0 the rotation renewed the throwaway key and it was cleaned up, 1 otherwise, 2 bad usage",
	"history":  "0 success, 1 failure reading the records, 2 bad usage",
	"adopt":    "0 every key found adopted (with --dry-run: would be) or already registered, 1 a key failed the checks or an AWS error, 2 bad usage (--account not the caller's included)",
}

// summaries are the subcommands' one-line summaries, filled by run from
// the command table (a package variable that refers to the table would
// be an initialization cycle).
var summaries = map[string]string{}

// printHelp writes a subcommand's help, the style of every subcommand
// (wrap's included): usage, summary, flags with two dashes, exit codes.
func printHelp(w io.Writer, fs *flag.FlagSet, usage string) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: kms-reimport %s\n\n", usage)
	if s := summaries[fs.Name()]; s != "" {
		fmt.Fprintf(&b, "%s%s.\n\n", strings.ToUpper(s[:1]), s[1:])
	}
	b.WriteString("Flags:\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		kind, text := flag.UnquoteUsage(f)
		name := "--" + f.Name
		switch kind {
		case "":
		case "string":
			name += " " + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		default:
			name += " " + strings.ToUpper(kind)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !strings.Contains(text, "(default") {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, text)
	})
	fmt.Fprintf(tw, "  %s\t%s\n", "-h, --help", "show this help")
	tw.Flush()
	code := exitCodes[fs.Name()]
	if code == "" {
		code = "0 success, 1 failure, 2 bad usage or invalid input"
	}
	fmt.Fprintf(&b, "\nExit codes: %s.\n", code)
	io.WriteString(w, b.String())
}

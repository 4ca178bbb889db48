// Package tools_test proves what `make tools` does on a machine without the
// Python tools (moto_server, cfn-lint, aws) and without a package index it
// can reach: it fails fast, with exit status 2 from make (1 from install.sh),
// and says so in ONE line on stderr that names the missing tools and the
// command to run. It runs `make tools` in a fresh tools directory
// (KMS_REIMPORT_TOOLS) seeded with the tools already installed (so nothing
// else is fetched), with a PATH that has everything but the Python tools,
// and PIP_INDEX_URL on a closed local port (no retries, short timeout).
package tools_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kms-reimport/kms-reimport/infra/local/stack"
)

// The Python tools install.sh looks for; hidden from the PATH here.
var hidden = map[string]bool{"moto_server": true, "moto_proxy": true, "cfn-lint": true, "aws": true, "aws_completer": true}

// seedTools makes a fresh tools directory holding (as links) what `make
// tools` already installed in the usual one, but no Python virtual
// environment, so only the Python tools are missing.
func seedTools(t *testing.T, root string) string {
	t.Helper()
	real := stack.Tools(root)
	dir := filepath.Join(t.TempDir(), "tools")
	for _, d := range []string{"bin", "stamps"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"bin/local-kms", "bin/aws-lambda-rie", "bin/staticcheck", "dynamodb", "node22"} {
		if _, err := os.Stat(filepath.Join(real, p)); err != nil {
			t.Fatalf("%s is not installed: run `make tools` first (%v)", filepath.Join(real, p), err)
		}
		if err := os.Symlink(filepath.Join(real, p), filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	stamps, err := os.ReadDir(filepath.Join(real, "stamps"))
	if err != nil {
		t.Fatalf("no stamps in %s: run `make tools` first (%v)", real, err)
	}
	for _, s := range stamps {
		b, err := os.ReadFile(filepath.Join(real, "stamps", s.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stamps", s.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pathWithout is a directory of links to every command on PATH (the first
// of each name, as PATH lookup finds it) except the hidden ones.
func pathWithout(t *testing.T, hidden map[string]bool) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if seen[name] || hidden[name] {
				continue
			}
			p := filepath.Join(d, name)
			fi, err := os.Stat(p)
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				continue
			}
			seen[name] = true
			if err := os.Symlink(p, filepath.Join(bin, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, need := range []string{"bash", "make", "go", "npm", "java", "openssl"} {
		if !seen[need] {
			t.Fatalf("%s is not on PATH: run `make tools` first, which says how to get it", need)
		}
	}
	return bin
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type result struct {
	exit           int
	stdout, stderr string
	took           time.Duration
}

// makeTools runs `make tools` with PATH=bin, the tools in toolsDir and the
// given extra environment; pip reads only the environment (no config files,
// no find-links), never retries and gives up on a connection after 3 s.
func makeTools(t *testing.T, root, bin, toolsDir string, extra ...string) result {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "KMS_REIMPORT_TOOLS", k == "PYTHON", strings.HasPrefix(k, "PIP_"),
			k == "MAKEFLAGS", k == "MFLAGS", k == "MAKELEVEL", k == "VIRTUAL_ENV":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+bin, "KMS_REIMPORT_TOOLS="+toolsDir,
		"PIP_CONFIG_FILE="+os.DevNull, "PIP_FIND_LINKS=", "PIP_RETRIES=0", "PIP_TIMEOUT=3", "PIP_DEFAULT_TIMEOUT=3",
		"PIP_DISABLE_PIP_VERSION_CHECK=1")
	env = append(env, extra...)
	cmd := exec.Command("make", "-s", "--no-print-directory", "tools")
	cmd.Dir, cmd.Env = root, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("make tools: %v", err)
	}
	t.Logf("make tools: exit %d in %s\nstdout:\n%s\nstderr:\n%s", r.exit, r.took.Round(time.Millisecond), r.stdout, r.stderr)
	return r
}

// oneFailure checks the run failed as make does when its recipe exits 1,
// within a minute, with exactly one line of its own on stderr (besides
// make's "*** [...] Error 1"), and returns that line.
func oneFailure(t *testing.T, r result) string {
	t.Helper()
	if r.exit != 2 {
		t.Errorf("exit status %d, want 2 (make's, for a recipe that failed)", r.exit)
	}
	var own []string
	makeLine := false
	for _, l := range strings.Split(strings.TrimRight(r.stderr, "\n"), "\n") {
		if strings.HasPrefix(l, "make: *** ") {
			makeLine = makeLine || strings.HasSuffix(l, "Error 1")
			continue
		}
		own = append(own, l)
	}
	if !makeLine {
		t.Errorf("no \"make: *** [...] Error 1\" on stderr: install.sh should exit 1")
	}
	if len(own) != 1 {
		t.Fatalf("want ONE line on stderr saying what is missing and what to run, got %d:\n%s", len(own), strings.Join(own, "\n"))
	}
	if r.took > time.Minute {
		t.Errorf("make tools took %s to fail: pip should give up at once (PIP_RETRIES=0)", r.took)
	}
	// Nothing else failed: the seeded tools were found.
	for _, ok := range []string{"local-kms: cached", "aws-lambda-rie: cached", "staticcheck: cached", "dynamodb-local: cached", "node22: cached"} {
		if !strings.Contains(r.stdout, ok) {
			t.Errorf("stdout lacks %q: the seeded tools directory was not used", ok)
		}
	}
	return own[0]
}

// namesEveryTool checks the line names each missing tool with its pinned
// version and the command to run.
func namesEveryTool(t *testing.T, line string) {
	t.Helper()
	for _, want := range []string{"python-tools: FAILED:", "moto_server (moto 5.2.1)", "cfn-lint 1.51.0", "aws (awscli 1.45.11)", "not installed", "make tools"} {
		if !strings.Contains(line, want) {
			t.Errorf("the line lacks %q:\n%s", want, line)
		}
	}
}

func TestMakeToolsWithoutPythonTools(t *testing.T) {
	root := repoRoot(t)
	bin := pathWithout(t, hidden)

	t.Run("index unreachable", func(t *testing.T) {
		py := filepath.Join(bin, "python3")
		if out, err := exec.Command(py, "-c", "import venv, ensurepip").CombinedOutput(); err != nil {
			t.Skipf("no python3 with venv on PATH here (%v: %s): the next case covers a machine without it", err, out)
		}
		tools := seedTools(t, root)
		index := "http://" + closedPort(t) + "/simple"
		r := makeTools(t, root, bin, tools, "PIP_INDEX_URL="+index)
		line := oneFailure(t, r)
		namesEveryTool(t, line)
		for _, want := range []string{"pip cannot reach the package index " + index, "run 'make tools' again once it is reachable", "PIP_INDEX_URL=<your mirror> make tools"} {
			if !strings.Contains(line, want) {
				t.Errorf("the line lacks %q:\n%s", want, line)
			}
		}
		if !regexp.MustCompile(`pip's log: \S+pip-install\.log\)$`).MatchString(line) {
			t.Errorf("the line does not end by naming pip's log:\n%s", line)
		}
		// A failed install leaves no half-made virtual environment.
		if _, err := os.Stat(filepath.Join(tools, "venv")); err == nil {
			t.Errorf("%s/venv left behind after the failed install", tools)
		}
		if strings.Contains(r.stdout+r.stderr, "Traceback") || strings.Contains(r.stdout+r.stderr, "ERROR: ") {
			t.Errorf("pip's own output reached the terminal; it belongs in the log")
		}
	})

	t.Run("no python3", func(t *testing.T) {
		tools := seedTools(t, root)
		r := makeTools(t, root, bin, tools, "PYTHON=python3-not-installed", "PIP_INDEX_URL=http://"+closedPort(t)+"/simple")
		line := oneFailure(t, r)
		namesEveryTool(t, line)
		for _, want := range []string{"no python3-not-installed to install them with", "install Python 3 with its venv module", "then run: make tools"} {
			if !strings.Contains(line, want) {
				t.Errorf("the line lacks %q:\n%s", want, line)
			}
		}
	})
}

// repoRoot is stack.RepoRoot, fatal when not found.
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

package repo_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// unitDirs are the unit packages' folders: `go test` on them passes on a
// fresh clone with no Java, no emulator and no `make tools` (the Makefile's
// UNIT_PKGS, make test-unit).
var unitDirs = []string{"shared", "functions", "cmd"}

// inProcessSupport are the packages of tests/ and infra/ a unit test may
// import: they run in the test's own process and start nothing (the KMS
// stand-in serves on an httptest server). Every other package of tests/ or
// infra/ is emulator support or the local stack (DynamoDB Local and so
// Java, moto, local-kms, the stack's processes): its tests belong in
// tests/stores, tests/cli or a stack suite, not in a unit package.
var inProcessSupport = map[string]bool{
	"tests/support/kmsstandin": true,
	"tests/support/keybuild":   true,
	"tests/support/lambdalog":  true,
}

// listedPackage is what `go list -deps -test -json` says of a package
// (test variants included, named "path [path.test]").
type listedPackage struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

// goList lists the packages of patterns with their dependencies, test
// dependencies included. A missing go fails the test.
func goList(t *testing.T, patterns ...string) (map[string][]string, []string, string) {
	t.Helper()
	root := repoRoot(t)
	mod := exec.Command("go", "list", "-m")
	mod.Dir = root
	out, err := mod.Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(out))
	cmd := exec.Command("go", append([]string{"list", "-deps", "-test", "-json=ImportPath,Imports,Standard"}, patterns...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("go list %v: %v\n%s", patterns, err, stderr.String())
	}
	imports := map[string][]string{}
	var order []string
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if !p.Standard {
			imports[p.ImportPath] = p.Imports
			order = append(order, p.ImportPath)
		}
	}
	return imports, order, module
}

// emulatorImports returns, for each package under dirs (its test variants
// included) that reaches a package of tests/ or infra/ not in
// inProcessSupport (through its own imports, its test files' or a
// dependency's), the import chain to it.
func emulatorImports(t *testing.T, dirs ...string) map[string][]string {
	t.Helper()
	var patterns []string
	for _, d := range dirs {
		patterns = append(patterns, "./"+d+"/...")
	}
	imports, order, module := goList(t, patterns...)
	// rel is a package's path in the module, without its test variant.
	rel := func(p string) string {
		p, _, _ = strings.Cut(p, " ")
		return strings.TrimPrefix(p, module+"/")
	}
	forbidden := func(p string) bool {
		if !strings.HasPrefix(p, module+"/") || inProcessSupport[rel(p)] {
			return false
		}
		return strings.HasPrefix(rel(p), "tests/") || strings.HasPrefix(rel(p), "infra/")
	}
	found := map[string][]string{}
	for _, root := range order {
		// A test binary (path.test) imports nothing its package and
		// test packages do not; an external test package is path_test.
		if strings.HasSuffix(root, ".test") {
			continue
		}
		dir := strings.TrimSuffix(rel(root), "_test")
		if !slices.ContainsFunc(dirs, func(d string) bool { return dir == d || strings.HasPrefix(dir, d+"/") }) {
			continue
		}
		// Breadth first, so the chain reported is a shortest one.
		from := map[string]string{root: ""}
		for queue := []string{root}; len(queue) > 0; queue = queue[1:] {
			p := queue[0]
			if p != root && forbidden(p) {
				var chain []string
				for ; p != ""; p = from[p] {
					chain = append([]string{rel(p)}, chain...)
				}
				found[rel(root)] = chain
				break
			}
			for _, q := range imports[p] {
				if _, seen := from[q]; !seen {
					from[q] = p
					queue = append(queue, q)
				}
			}
		}
	}
	return found
}

// TestUnitPackagesNeedNoEmulator: no unit package, nor any of its test
// files, imports DynamoDB Local's support (tests/support/ddblocal), the
// local stack or any other emulator support, directly or through another
// package. So `go test ./shared/... ./functions/... ./cmd/...` needs no
// Java and no `make tools`.
func TestUnitPackagesNeedNoEmulator(t *testing.T) {
	for pkg, chain := range emulatorImports(t, unitDirs...) {
		t.Errorf("%s reaches %s (%s): a unit package must run without emulators; move the test to tests/stores, tests/cli or a stack suite, or use an in-memory fake",
			pkg, chain[len(chain)-1], strings.Join(chain, " -> "))
	}
}

// TestUnitDepsCheckSeesEmulators: the check above finds what it looks
// for: the stores' own tests reach DynamoDB Local's support, the
// command's tests that or the local stack.
func TestUnitDepsCheckSeesEmulators(t *testing.T) {
	found := emulatorImports(t, "tests/stores", "tests/cli")
	for _, pkg := range []string{"tests/stores_test", "tests/cli_test"} {
		chain, ok := found[pkg]
		if !ok {
			t.Errorf("%s not reported as reaching DynamoDB Local's support: the check finds nothing (found %v)", pkg, found)
		} else if end := chain[len(chain)-1]; end != "tests/support/ddblocal" && end != "infra/local/stack" {
			t.Errorf("%s: chain %v, want it to end at tests/support/ddblocal or infra/local/stack", pkg, chain)
		}
	}
}

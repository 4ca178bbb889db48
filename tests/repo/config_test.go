package repo_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var (
	envName   = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$`)
	paramName = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
)

// TestConfigurationTable: the README's configuration table lists exactly the
// environment variables the functions' code reads (shared/), and every
// variable template.yaml sets is named in that section.
func TestConfigurationTable(t *testing.T) {
	lines := section(t, readRepoFile(t, "README.md"), "README.md", "Configuration")
	documented := map[string]bool{}
	for _, cells := range tableRows(lines) {
		for _, s := range codeSpans(cells[0]) {
			if envName.MatchString(s) {
				documented[s] = true
			}
		}
	}
	if len(documented) == 0 {
		t.Fatal("README.md: the Configuration section's table names no variable")
	}
	mentioned := map[string]bool{} // anywhere in the section
	for _, l := range lines {
		for _, s := range codeSpans(l) {
			mentioned[s] = true
		}
	}

	read := envReadByCode(t, "shared")
	var missing, extra, unexplained []string
	for v, where := range read {
		if !documented[v] {
			missing = append(missing, fmt.Sprintf("%s (read in %s)", v, where))
		}
	}
	for v := range documented {
		if _, ok := read[v]; !ok {
			extra = append(extra, v+": in the table, but no code under shared/ reads it")
		}
	}
	for v, where := range templateEnv(t) {
		if !mentioned[v] {
			unexplained = append(unexplained, fmt.Sprintf("%s (set by template.yaml: %s)", v, where))
		}
	}
	report(t, "environment variables the code reads that README.md's Configuration table does not list", missing)
	report(t, "README.md's Configuration table lists variables no code reads", extra)
	report(t, "environment variables template.yaml sets that README.md's Configuration section does not name", unexplained)
}

// TestDeployParameterTable: docs/deploy.md's parameter table lists exactly
// template.yaml's Parameters.
func TestDeployParameterTable(t *testing.T) {
	lines := section(t, readRepoFile(t, "docs/deploy.md"), "docs/deploy.md", "Parameters")
	documented := map[string]bool{}
	for _, cells := range tableRows(lines) {
		for _, s := range codeSpans(cells[0]) {
			if paramName.MatchString(s) {
				documented[s] = true
			}
		}
	}
	params := templateParameters(t)
	var missing, extra []string
	for p := range params {
		if !documented[p] {
			missing = append(missing, p)
		}
	}
	for p := range documented {
		if !params[p] {
			extra = append(extra, p)
		}
	}
	report(t, "template.yaml Parameters missing from docs/deploy.md's Parameters table", missing)
	report(t, "docs/deploy.md's Parameters table lists what template.yaml's Parameters do not have", extra)
}

func loadTemplate(t *testing.T) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "template.yaml")), &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatal("template.yaml is not a mapping")
	}
	return doc.Content[0]
}

// child is the value of key in mapping node m, or nil.
func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func keys(m *yaml.Node) []string {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, m.Content[i].Value)
	}
	return out
}

func templateParameters(t *testing.T) map[string]bool {
	params := map[string]bool{}
	for _, k := range keys(child(loadTemplate(t), "Parameters")) {
		params[k] = true
	}
	if len(params) == 0 {
		t.Fatal("template.yaml has no Parameters")
	}
	return params
}

// templateEnv maps each variable the template sets (Globals or a function)
// to where.
func templateEnv(t *testing.T) map[string]string {
	root := loadTemplate(t)
	env := map[string]string{}
	add := func(props *yaml.Node, where string) {
		for _, k := range keys(child(child(props, "Environment"), "Variables")) {
			if env[k] == "" {
				env[k] = where
			} else {
				env[k] += ", " + where
			}
		}
	}
	add(child(child(root, "Globals"), "Function"), "Globals")
	resources := child(root, "Resources")
	for _, id := range keys(resources) {
		add(child(child(resources, id), "Properties"), id)
	}
	if len(env) == 0 {
		t.Fatal("template.yaml sets no environment variable")
	}
	return env
}

// envReadByCode maps each environment variable the non-test Go code under
// dir reads to the file that reads it. A variable is read when its name
// (a string literal, or a string constant of the package) is the argument
// of os.Getenv or os.LookupEnv, or of a function of the package that
// passes that parameter to one of them (settings' duration, integer).
func envReadByCode(t *testing.T, dir string) map[string]string {
	t.Helper()
	root := repoRoot(t)
	pkgs := map[string][]*ast.File{} // directory -> files
	fset := token.NewFileSet()
	err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		pkgs[filepath.Dir(p)] = append(pkgs[filepath.Dir(p)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]string{}
	for _, files := range pkgs {
		for v, pos := range envInPackage(files) {
			rel, _ := filepath.Rel(root, fset.Position(pos).Filename)
			read[v] = filepath.ToSlash(rel)
		}
	}
	if len(read) == 0 {
		t.Fatalf("no code under %s/ reads an environment variable (os.Getenv): has the reading moved?", dir)
	}
	return read
}

func envInPackage(files []*ast.File) map[string]token.Pos {
	consts := map[string]string{}
	type param struct {
		fn  string
		idx int
	}
	readers := map[param]bool{}
	for _, f := range files {
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				collectConsts(d, consts)
			case *ast.FuncDecl:
				for _, i := range paramsToGetenv(d) {
					readers[param{d.Name.Name, i}] = true
				}
			}
		}
	}
	found := map[string]token.Pos{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			idx := -1
			if isGetenv(call) {
				idx = 0
			} else if id, ok := call.Fun.(*ast.Ident); ok {
				for p := range readers {
					if p.fn == id.Name && p.idx < len(call.Args) {
						idx = p.idx
					}
				}
			}
			if idx < 0 {
				return true
			}
			if v, ok := stringValue(call.Args[idx], consts); ok && envName.MatchString(v) {
				if _, seen := found[v]; !seen {
					found[v] = call.Pos()
				}
			}
			return true
		})
	}
	return found
}

func collectConsts(d *ast.GenDecl, consts map[string]string) {
	if d.Tok != token.CONST {
		return
	}
	for _, s := range d.Specs {
		vs := s.(*ast.ValueSpec)
		for i, n := range vs.Names {
			if i < len(vs.Values) {
				if v, ok := stringValue(vs.Values[i], nil); ok {
					consts[n.Name] = v
				}
			}
		}
	}
}

// paramsToGetenv lists the indexes of fn's parameters that fn passes to
// os.Getenv or os.LookupEnv.
func paramsToGetenv(fn *ast.FuncDecl) []int {
	names := map[string]int{}
	i := 0
	for _, field := range fn.Type.Params.List {
		for _, n := range field.Names {
			names[n.Name] = i
			i++
		}
		if len(field.Names) == 0 {
			i++
		}
	}
	var out []int
	if fn.Body == nil {
		return nil
	}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && isGetenv(call) && len(call.Args) == 1 {
			if id, ok := call.Args[0].(*ast.Ident); ok {
				if idx, ok := names[id.Name]; ok {
					out = append(out, idx)
				}
			}
		}
		return true
	})
	sort.Ints(out)
	return out
}

func isGetenv(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv")
}

func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch x := e.(type) {
	case *ast.BasicLit:
		if x.Kind == token.STRING {
			v, err := strconv.Unquote(x.Value)
			return v, err == nil
		}
	case *ast.Ident:
		v, ok := consts[x.Name]
		return v, ok
	}
	return "", false
}

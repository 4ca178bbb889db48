package repo_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
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

	read := envReadByCode(t, "shared", "functions")
	var missing, extra, unexplained []string
	for v, where := range read {
		if !documented[v] {
			missing = append(missing, fmt.Sprintf("%s (read in %s)", v, where))
		}
	}
	for v := range documented {
		if _, ok := read[v]; !ok {
			extra = append(extra, v+": in the table, but no code under shared/ or functions/ reads it")
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
// dirs reads to the file that reads it. A variable is read when its name
// (a string literal, a string constant of the package, or pkg.Const of
// another package of the module) is the argument of os.Getenv or
// os.LookupEnv, or of a function of the package that passes that
// parameter on to one of them, directly or through another such function
// (settings' duration, integer, rate). A read whose name the test cannot
// work out fails it: a variable the tables would not see.
func envReadByCode(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	root := repoRoot(t)
	pkgs := map[string][]*ast.File{} // directory -> files
	fset := token.NewFileSet()
	for _, dir := range dirs {
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
	}
	// Every package's string constants, as pkg.Name for the others.
	qualified := map[string]string{}
	for _, files := range pkgs {
		own := map[string]string{}
		for _, f := range files {
			for _, decl := range f.Decls {
				if d, ok := decl.(*ast.GenDecl); ok {
					collectConsts(d, own)
				}
			}
		}
		for n, v := range own {
			qualified[files[0].Name.Name+"."+n] = v
		}
	}
	read := map[string]string{}
	var unnamed []string
	for _, files := range pkgs {
		found, unresolved := envInPackage(files, qualified)
		for v, pos := range found {
			rel, _ := filepath.Rel(root, fset.Position(pos).Filename)
			read[v] = filepath.ToSlash(rel)
		}
		for _, pos := range unresolved {
			p := fset.Position(pos)
			rel, _ := filepath.Rel(root, p.Filename)
			unnamed = append(unnamed, fmt.Sprintf("%s:%d", filepath.ToSlash(rel), p.Line))
		}
	}
	report(t, "environment reads whose variable name the configuration test cannot work out (use a literal or a constant)", unnamed)
	if len(read) == 0 {
		t.Fatalf("no code under %v reads an environment variable (os.Getenv): has the reading moved?", dirs)
	}
	return read
}

// readerParam is a parameter of a function of the package that reaches
// os.Getenv.
type readerParam struct {
	fn  string
	idx int
}

// envInPackage finds the variables the package's files read, and the
// reads it cannot name.
func envInPackage(files []*ast.File, qualified map[string]string) (map[string]token.Pos, []token.Pos) {
	consts := map[string]string{}
	for k, v := range qualified {
		consts[k] = v
	}
	var fns []*ast.FuncDecl
	var vars []ast.Node // package-level var declarations
	for _, f := range files {
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.GenDecl:
				collectConsts(d, consts)
				if d.Tok == token.VAR {
					vars = append(vars, d)
				}
			case *ast.FuncDecl:
				if d.Body != nil {
					fns = append(fns, d)
				}
			}
		}
	}
	readers := readerParams(fns)
	found := map[string]token.Pos{}
	var unresolved []token.Pos
	scopes := map[ast.Node]*ast.FuncDecl{}
	for _, fn := range fns {
		scopes[fn.Body] = fn
	}
	for _, v := range vars {
		scopes[v] = nil
	}
	for body, fn := range scopes {
		params, name := map[string]int{}, ""
		if fn != nil {
			params, name = paramIndexes(fn), fn.Name.Name
		}
		ast.Inspect(body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			idx := readerArg(call, readers)
			if idx < 0 || idx >= len(call.Args) {
				return true
			}
			arg := call.Args[idx]
			if v, ok := stringValue(arg, consts); ok {
				if envName.MatchString(v) {
					if _, seen := found[v]; !seen {
						found[v] = call.Pos()
					}
				}
				return true
			}
			if id, ok := arg.(*ast.Ident); ok {
				if i, isParam := params[id.Name]; isParam && readers[readerParam{name, i}] {
					return true // named by this function's callers
				}
			}
			unresolved = append(unresolved, call.Pos())
			return true
		})
	}
	return found, unresolved
}

// readerArg is the index of the argument of call that names a variable
// read: 0 for os.Getenv/LookupEnv, a reader function's parameter, or -1.
func readerArg(call *ast.CallExpr, readers map[readerParam]bool) int {
	if isGetenv(call) {
		return 0
	}
	if id, ok := call.Fun.(*ast.Ident); ok {
		for p := range readers {
			if p.fn == id.Name {
				return p.idx
			}
		}
	}
	return -1
}

// readerParams lists, to a fixed point, the parameters of fns that reach
// os.Getenv: passed to it, or to another such parameter.
func readerParams(fns []*ast.FuncDecl) map[readerParam]bool {
	readers := map[readerParam]bool{}
	for changed := true; changed; {
		changed = false
		for _, fn := range fns {
			params := paramIndexes(fn)
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				idx := readerArg(call, readers)
				if idx < 0 || idx >= len(call.Args) {
					return true
				}
				if id, ok := call.Args[idx].(*ast.Ident); ok {
					if i, ok := params[id.Name]; ok && !readers[readerParam{fn.Name.Name, i}] {
						readers[readerParam{fn.Name.Name, i}] = true
						changed = true
					}
				}
				return true
			})
		}
	}
	return readers
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

// paramIndexes maps fn's parameter names to their positions.
func paramIndexes(fn *ast.FuncDecl) map[string]int {
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
	return names
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
	case *ast.SelectorExpr:
		if pkg, ok := x.X.(*ast.Ident); ok {
			v, ok := consts[pkg.Name+"."+x.Sel.Name]
			return v, ok
		}
	}
	return "", false
}

// templateEnvRefs maps each variable template.yaml sets to a parameter
// (`VAR: !Ref Param`) to that parameter.
func templateEnvRefs(t *testing.T) map[string]string {
	root := loadTemplate(t)
	params := templateParameters(t)
	refs := map[string]string{}
	add := func(props *yaml.Node) {
		vars := child(child(props, "Environment"), "Variables")
		if vars == nil || vars.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(vars.Content); i += 2 {
			v := vars.Content[i+1]
			if v.Tag == "!Ref" && params[v.Value] {
				refs[vars.Content[i].Value] = v.Value
			}
		}
	}
	add(child(child(root, "Globals"), "Function"))
	resources := child(root, "Resources")
	for _, id := range keys(resources) {
		add(child(child(resources, id), "Properties"))
	}
	if len(refs) == 0 {
		t.Fatal("template.yaml sets no environment variable from a parameter (!Ref): has the template's form changed?")
	}
	return refs
}

// rowsNaming maps each code span of the first cell of a table's rows to
// the whole row.
func rowsNaming(lines []string) map[string]string {
	rows := map[string]string{}
	for _, cells := range tableRows(lines) {
		for _, s := range codeSpans(cells[0]) {
			rows[s] = strings.Join(cells, " | ")
		}
	}
	return rows
}

// TestVariablesAndParametersAgree: each variable template.yaml sets is a
// row of README.md's Configuration table (the SDK's own AWS_* variables
// are named in the section's text); each one it sets from a parameter
// names that parameter in its row, and docs/deploy.md's row of that
// parameter names the variable: the two tables point at each other.
func TestVariablesAndParametersAgree(t *testing.T) {
	readme := rowsNaming(section(t, readRepoFile(t, "README.md"), "README.md", "Configuration"))
	deploy := rowsNaming(section(t, readRepoFile(t, "docs/deploy.md"), "docs/deploy.md", "Parameters"))
	var notInTable, noParam, noVar []string
	for v, where := range templateEnv(t) {
		if _, ok := readme[v]; !ok && !strings.HasPrefix(v, "AWS_") {
			notInTable = append(notInTable, fmt.Sprintf("%s (set by template.yaml: %s)", v, where))
		}
	}
	for v, p := range templateEnvRefs(t) {
		if row, ok := readme[v]; ok && !strings.Contains(row, "`"+p+"`") {
			noParam = append(noParam, fmt.Sprintf("%s: its row does not name `%s`, the parameter template.yaml sets it from", v, p))
		}
		if row, ok := deploy[p]; ok && !strings.Contains(row, "`"+v+"`") {
			noVar = append(noVar, fmt.Sprintf("%s: its row does not name `%s`, the variable it sets", p, v))
		}
	}
	report(t, "variables template.yaml sets that are not a row of README.md's Configuration table", notInTable)
	report(t, "README.md's Configuration rows that do not name the parameter their variable comes from", noParam)
	report(t, "docs/deploy.md's Parameters rows that do not name the variable their parameter sets", noVar)
}

// TestDeployParameterDefaults: where docs/deploy.md's Parameters row is
// one parameter, its Default cell starts with template.yaml's Default:
// the value in backticks, or "empty" for an empty default.
func TestDeployParameterDefaults(t *testing.T) {
	params := child(loadTemplate(t), "Parameters")
	var wrong []string
	for _, cells := range tableRows(section(t, readRepoFile(t, "docs/deploy.md"), "docs/deploy.md", "Parameters")) {
		names := codeSpans(cells[0])
		if len(names) != 1 || len(cells) < 2 {
			continue
		}
		p := child(params, names[0])
		if p == nil {
			continue // TestDeployParameterTable says so
		}
		want := ""
		if d := child(p, "Default"); d != nil {
			want = d.Value
		}
		cell := strings.TrimSpace(cells[1])
		got, ok := "", strings.HasPrefix(cell, "empty")
		if spans := codeSpans(cell); strings.HasPrefix(cell, "`") && len(spans) > 0 {
			got, ok = spans[0], true
		}
		if !ok || got != want {
			wrong = append(wrong, fmt.Sprintf("%s: docs/deploy.md says %q, template.yaml's Default is %q", names[0], cell, want))
		}
	}
	report(t, "docs/deploy.md's Parameters defaults that are not template.yaml's", wrong)
}

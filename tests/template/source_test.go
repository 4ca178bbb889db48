package template_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// What the template promises about the Go code is checked against the
// source itself (parsed, not imported): the checks hold whatever the
// packages are called.

// goFile is one parsed non-test Go file of the repository.
type goFile struct {
	path string
	src  []byte
	fset *token.FileSet
	f    *ast.File
}

var (
	sourceOnce  sync.Once
	sourceFiles []goFile
	sourceErr   error
)

// sourceGo parses every non-test Go file of the repository (not tests/, not
// .local/ or other hidden directories, not node_modules/ or build/).
func sourceGo(t testing.TB) []goFile {
	t.Helper()
	root := repoRoot(t)
	sourceOnce.Do(func() {
		sourceErr = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				name := d.Name()
				if path != root && (strings.HasPrefix(name, ".") || name == "tests" || name == "node_modules" || name == "build" || name == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
			if err != nil {
				return err
			}
			sourceFiles = append(sourceFiles, goFile{path: path, src: src, fset: fset, f: f})
			return nil
		})
	})
	if sourceErr != nil {
		t.Fatalf("reading the Go source: %v", sourceErr)
	}
	if len(sourceFiles) == 0 {
		t.Fatal("no Go source found")
	}
	return sourceFiles
}

// sourceText is every non-test Go file, concatenated.
func sourceText(t testing.TB) string {
	var b strings.Builder
	for _, f := range sourceGo(t) {
		b.Write(f.src)
		b.WriteByte('\n')
	}
	return b.String()
}

// recordAttributes returns, for every struct type of the Go code stored as
// a table item (it has a field tagged dynamodbav:"pk"), its top-level
// attribute names, keyed by "<file>:<type>". The attributes of an
// embedded struct (registry.Entry's flow.Policy) are its own, as the
// attributevalue encoder inlines them.
func recordAttributes(t testing.TB) map[string][]string {
	type structType struct {
		key string
		st  *ast.StructType
	}
	var structs []structType
	byName := map[string]*ast.StructType{}
	for _, gf := range sourceGo(t) {
		ast.Inspect(gf.f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok {
				rel, _ := filepath.Rel(repoRoot(t), gf.path)
				structs = append(structs, structType{rel + ":" + ts.Name.Name, st})
				byName[ts.Name.Name] = st
			}
			return true
		})
	}
	out := map[string][]string{}
	for _, s := range structs {
		names := structAttributes(s.st, byName, 0)
		if contains(names, "pk") {
			out[s.key] = names
		}
	}
	return out
}

// structAttributes lists the dynamodbav names of st's fields, those of
// untagged embedded structs (found by type name) inline.
func structAttributes(st *ast.StructType, byName map[string]*ast.StructType, depth int) []string {
	var names []string
	for _, fl := range st.Fields.List {
		tag := ""
		if fl.Tag != nil {
			tag, _ = strconv.Unquote(fl.Tag.Value)
		}
		if len(fl.Names) == 0 && tag == "" && depth < 3 {
			typ := fl.Type
			if sel, ok := typ.(*ast.SelectorExpr); ok {
				typ = sel.Sel
			}
			if id, ok := typ.(*ast.Ident); ok && byName[id.Name] != nil {
				names = append(names, structAttributes(byName[id.Name], byName, depth+1)...)
			}
			continue
		}
		name, _, _ := strings.Cut(reflect.StructTag(tag).Get("dynamodbav"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
	}
	return names
}

// readableAttributes: every record attribute but the token bytes, sorted.
func readableAttributes(t testing.TB) []string {
	set := map[string]bool{}
	for _, names := range recordAttributes(t) {
		for _, n := range names {
			if !contains(tokenBytes, n) {
				set[n] = true
			}
		}
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// emission is what the source says about one metric name.
type emission struct {
	sites []string // file:line of each Metric literal with that Name
	// problems: a site whose function emits with dimensions other than
	// the Service set, or does not emit at all; or no site emits under
	// the Service set.
	problems []string
	// service counts the sites emitted under the Service set: Emit with
	// Service, or EmitSets with ServiceAndAccount ([Service] and [Service,
	// Account] in one line). A site whose function calls EmitSets with
	// other sets (the planner's per-account lines, [Service, Account]
	// only) is no problem, as long as another site emits under Service.
	service int
}

// metricsPackage is what the package defining Emit says: its namespace
// constant and its Service dimension set.
type metricsPackage struct {
	path      string
	namespace string
	dims      map[string]string
}

// findMetricsPackage finds the file that declares func Emit, const
// Namespace and var Service (a map literal), and reads their values.
func findMetricsPackage(t testing.TB) *metricsPackage {
	for _, gf := range sourceGo(t) {
		var emit bool
		mp := &metricsPackage{path: gf.path}
		for _, d := range gf.f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.Name == "Emit" {
					emit = true
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					vs, ok := sp.(*ast.ValueSpec)
					if !ok {
						continue
					}
					for i, n := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						switch {
						case n.Name == "Namespace" && d.Tok == token.CONST:
							if bl, ok := vs.Values[i].(*ast.BasicLit); ok {
								mp.namespace, _ = strconv.Unquote(bl.Value)
							}
						case n.Name == "Service" && d.Tok == token.VAR:
							if cl, ok := vs.Values[i].(*ast.CompositeLit); ok {
								mp.dims = map[string]string{}
								for _, e := range cl.Elts {
									kv, ok := e.(*ast.KeyValueExpr)
									if !ok {
										continue
									}
									k, kok := kv.Key.(*ast.BasicLit)
									v, vok := kv.Value.(*ast.BasicLit)
									if kok && vok {
										ks, _ := strconv.Unquote(k.Value)
										vs, _ := strconv.Unquote(v.Value)
										mp.dims[ks] = vs
									}
								}
							}
						}
					}
				}
			}
		}
		if emit && mp.namespace != "" && mp.dims != nil {
			return mp
		}
	}
	return nil
}

var metricName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)

// emittedMetrics finds every Metric literal with a literal Name in the
// source, and checks the function around it: it calls Emit, and every Emit
// call there passes the Service dimension set (Service or <pkg>.Service).
func emittedMetrics(t testing.TB) map[string]*emission {
	out := map[string]*emission{}
	for _, gf := range sourceGo(t) {
		// The functions of the file, to find the one around a literal.
		var funcs []ast.Node
		ast.Inspect(gf.f, func(n ast.Node) bool {
			switch n.(type) {
			case *ast.FuncDecl, *ast.FuncLit:
				funcs = append(funcs, n)
			}
			return true
		})
		enclosing := func(pos token.Pos) ast.Node {
			var best ast.Node
			for _, fn := range funcs {
				if fn.Pos() <= pos && pos < fn.End() && (best == nil || fn.Pos() > best.Pos()) {
					best = fn
				}
			}
			return best
		}
		var visit func(n ast.Node, elem string)
		visit = func(n ast.Node, elem string) {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				ast.Inspect(n, func(c ast.Node) bool {
					if c == n {
						return true
					}
					if cl, ok := c.(*ast.CompositeLit); ok {
						visit(cl, "")
						return false
					}
					return true
				})
				return
			}
			typ := typeName(cl.Type)
			if cl.Type == nil {
				typ = elem
			}
			childElem := ""
			if at, ok := cl.Type.(*ast.ArrayType); ok {
				childElem = typeName(at.Elt)
			}
			if typ == "Metric" {
				for _, e := range cl.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Name" {
						continue
					}
					bl, ok := kv.Value.(*ast.BasicLit)
					if !ok {
						continue
					}
					name, _ := strconv.Unquote(bl.Value)
					if !metricName.MatchString(name) {
						continue
					}
					em := out[name]
					if em == nil {
						em = &emission{}
						out[name] = em
					}
					site := gf.fset.Position(bl.Pos()).String()
					em.sites = append(em.sites, site)
					fn := enclosing(bl.Pos())
					if fn == nil {
						em.problems = append(em.problems, site+": not inside a function")
						continue
					}
					calls := 0
					ast.Inspect(fn, func(c ast.Node) bool {
						call, ok := c.(*ast.CallExpr)
						if !ok {
							return true
						}
						switch funcName(call.Fun) {
						case "Emit":
							calls++
							if len(call.Args) == 0 || typeName(call.Args[0]) != "Service" {
								em.problems = append(em.problems, site+": emitted with dimensions other than Service")
							} else {
								em.service++
							}
						case "EmitSets":
							calls++
							if len(call.Args) > 1 && typeName(call.Args[1]) == "ServiceAndAccount" {
								em.service++
							}
						}
						return true
					})
					if calls == 0 {
						em.problems = append(em.problems, site+": the function never calls Emit")
					}
				}
			}
			for _, e := range cl.Elts {
				if kv, ok := e.(*ast.KeyValueExpr); ok {
					visit(kv.Value, childElem)
					continue
				}
				visit(e, childElem)
			}
		}
		visit(gf.f, "")
	}
	for name, em := range out {
		if em.service == 0 && len(em.problems) == 0 {
			em.problems = append(em.problems, name+": never emitted under the Service dimension set")
		}
	}
	return out
}

// typeName is the last identifier of a type or value expression
// (metrics.Metric -> Metric, Service -> Service).
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

func funcName(e ast.Expr) string { return typeName(e) }

// TestSourceScanners proves the scanners on a small program: an elided
// element type, an emit with other dimensions, a literal never emitted.
func TestSourceScanners(t *testing.T) {
	src := `package x
import "m"
func a() { ms := []m.Metric{{Name: "A", Value: 1}}; m.Emit(m.Service, ms...) }
func b() { m.Emit(map[string]string{"Fn": "b"}, m.Metric{Name: "B"}) }
func c() []m.Metric { return []m.Metric{{Name: "C"}} }
func d() { m.EmitSets(m.WithAccount("1"), m.ServiceAndAccount, m.Metric{Name: "D"}) }
func e() { m.EmitSets(m.WithAccount("1"), [][]string{{"Service", "Account"}}, m.Metric{Name: "E"}) }
type R struct { PK string ` + "`dynamodbav:\"pk\"`" + `; T []byte ` + "`dynamodbav:\"importToken,omitempty\"`" + `; N string ` + "`dynamodbav:\"name\"`" + ` }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Run the scanners on this file alone.
	saved := sourceGo(t)
	sourceFiles = []goFile{{path: filepath.Join(repoRoot(t), "x.go"), src: []byte(src), fset: fset, f: f}}
	defer func() { sourceFiles = saved }()
	em := emittedMetrics(t)
	if e := em["A"]; e == nil || len(e.problems) > 0 {
		t.Errorf("A (elided type, emitted with Service): %+v", e)
	}
	if e := em["B"]; e == nil || len(e.problems) == 0 {
		t.Errorf("B (other dimensions) accepted: %+v", e)
	}
	if e := em["C"]; e == nil || len(e.problems) == 0 {
		t.Errorf("C (never emitted) accepted: %+v", e)
	}
	if e := em["D"]; e == nil || len(e.problems) > 0 {
		t.Errorf("D (emitted under [Service] and [Service, Account]): %+v", e)
	}
	if e := em["E"]; e == nil || len(e.problems) == 0 {
		t.Errorf("E (only under [Service, Account]: an alarm on [Service] sees nothing) accepted: %+v", e)
	}
	if got := recordAttributes(t)["x.go:R"]; strings.Join(got, " ") != "pk importToken name" {
		t.Errorf("record attributes %v", got)
	}
	if got := readableAttributes(t); strings.Join(got, " ") != "name pk" {
		t.Errorf("readable %v", got)
	}
}

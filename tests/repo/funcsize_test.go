package repo_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// The team's limits for a function of the product (shared/, cmd/,
// functions/; test files excluded).
const (
	maxFuncLines      = 80
	maxFuncComplexity = 25
)

// oversized lists functions allowed over a limit, as "path:function" (a
// method as "path:Type.method"): none. The test fails for an entry that is
// back within the limits, so the list can only shrink.
var oversized = map[string]bool{}

type funcSize struct {
	name       string // path:function
	line       int
	lines      int
	complexity int
}

// TestFunctionSize: no function of shared/, cmd/ or functions/ is over
// maxFuncLines lines (from `func` to the closing brace) or over
// maxFuncComplexity cyclomatic complexity (1 + each if, for, range, case
// clause other than default, select clause other than default, && and ||,
// function literals inside it included).
func TestFunctionSize(t *testing.T) {
	var over []string
	seen := map[string]bool{}
	for _, f := range productFuncs(t, "shared", "cmd", "functions") {
		if f.lines <= maxFuncLines && f.complexity <= maxFuncComplexity {
			continue
		}
		seen[f.name] = true
		if oversized[f.name] {
			continue
		}
		over = append(over, fmt.Sprintf("%s (line %d): %d lines (max %d), complexity %d (max %d)", f.name, f.line, f.lines, maxFuncLines, f.complexity, maxFuncComplexity))
	}
	var stale []string
	for name := range oversized {
		if !seen[name] {
			stale = append(stale, name+": within the limits now (or gone): remove it from oversized")
		}
	}
	report(t, "functions over the limits: split them", over)
	report(t, "the oversized allowlist names functions that are not over the limits", stale)
}

func productFuncs(t *testing.T, dirs ...string) []funcSize {
	t.Helper()
	root := repoRoot(t)
	var out []funcSize
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
			rel, _ := filepath.Rel(root, p)
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				start, end := fset.Position(fn.Pos()).Line, fset.Position(fn.End()).Line
				out = append(out, funcSize{
					name:       filepath.ToSlash(rel) + ":" + funcName(fn),
					line:       start,
					lines:      end - start + 1,
					complexity: complexity(fn.Body),
				})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("no function found under " + strings.Join(dirs, ", "))
	}
	return out
}

func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
			continue
		case *ast.IndexExpr: // a generic receiver T[P]
			typ = x.X
			continue
		case *ast.IndexListExpr:
			typ = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fn.Name.Name
		}
		return fn.Name.Name
	}
}

// complexity is the cyclomatic complexity of a function body, counted as
// gocyclo does.
func complexity(body *ast.BlockStmt) int {
	c := 1
	ast.Inspect(body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if x.List != nil {
				c++
			}
		case *ast.CommClause:
			if x.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if x.Op == token.LAND || x.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

// TestFunctionSizeCounts pins the counting rules on a known function.
func TestFunctionSizeCounts(t *testing.T) {
	src := `package p
func f(a, b bool, c chan int, xs []int) int {
	if a && b || !a {
		return 1
	}
	for _, x := range xs {
		switch x {
		case 1, 2:
		case 3:
		default:
		}
	}
	for i := 0; i < 3; i++ {
	}
	select {
	case <-c:
	default:
	}
	g := func() bool { return a || b }
	_ = g
	return 0
}`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	fn := f.Decls[0].(*ast.FuncDecl)
	// 1 + if + && + || + range + 2 cases + for + comm case + || in the literal
	if got, want := complexity(fn.Body), 10; got != want {
		t.Errorf("complexity = %d, want %d", got, want)
	}
}

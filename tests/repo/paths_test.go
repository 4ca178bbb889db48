package repo_test

import (
	"fmt"
	"go/parser"
	"go/token"
	"path"
	"regexp"
	"strings"
	"testing"
)

// What a file of the product may not cite: a path of the machine it was
// written on, outside any clone.
var machinePath = regexp.MustCompile(`(^|[^A-Za-z0-9_.$}/-])((/work|/root|/home|/Users|/mnt)/[A-Za-z0-9_.@+/-]*)`)

// A path relative to the citing file, climbing one directory or more.
var relativePath = regexp.MustCompile(`(^|[^A-Za-z0-9_.$}/-])((\.\./)+[A-Za-z0-9_.@+/-]*)`)

// A Markdown link's target.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// A path from the repository's root: a tracked top-level directory, then
// more. Matched where a path starts (not inside a URL, a module path or
// another path).
var rootPath = regexp.MustCompile(`(^|[\s` + "`" + `'"(\[,;:=])([a-z][a-z0-9_-]*/[A-Za-z0-9_./-]*[A-Za-z0-9_/])`)

// TestNoPathOutsideTheRepository: no document (Markdown), no comment of a
// Go file and no other tracked text file (scripts, the template, the
// Makefile) cites a path outside the repository: an absolute path of a
// machine (under /work, /home and the like), a relative path that climbs
// above the root, or a path from the root (such as shared/<name>.md, or a
// Markdown link) naming nothing tracked.
func TestNoPathOutsideTheRepository(t *testing.T) {
	s := tracked(t)
	top := map[string]bool{}
	for d := range s.dirs {
		if !strings.Contains(d, "/") {
			top[d] = true
		}
	}
	var bad []string
	for _, f := range trackedFiles(t) {
		if skipText(f) {
			continue
		}
		for _, c := range textOf(t, f) {
			for _, p := range citedPaths(c.text, f, top) {
				if why := checkCited(s, f, p); why != "" {
					bad = append(bad, fmt.Sprintf("%s:%d: %s: %s", f, c.line, p.path, why))
				}
			}
		}
	}
	report(t, "paths cited that are not in the repository", bad)
}

// skipText: generated files, lock files and test data are not written by
// hand, .gitignore names what is not tracked by design, and a Go file's code
// may use any path (only its comments are read).
func skipText(f string) bool {
	base := path.Base(f)
	switch {
	case base == "go.sum", base == "package-lock.json", base == ".gitignore":
		return true
	case strings.Contains(f, "/testdata/"):
		return true
	}
	return false
}

type textChunk struct {
	line int
	text string
}

// textOf is the text of f to search: a Go file's comments, any other file's
// lines.
func textOf(t *testing.T, f string) []textChunk {
	src := readRepoFile(t, f)
	if !strings.HasSuffix(f, ".go") {
		var out []textChunk
		for i, l := range strings.Split(src, "\n") {
			out = append(out, textChunk{i + 1, l})
		}
		return out
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, f, src, parser.ParseComments)
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	var out []textChunk
	for _, g := range file.Comments {
		for _, c := range g.List {
			line := fset.Position(c.Pos()).Line
			for i, l := range strings.Split(c.Text, "\n") {
				out = append(out, textChunk{line + i, l})
			}
		}
	}
	return out
}

type cited struct {
	path string
	kind int
}

const (
	citedMachine  = iota // an absolute path of a machine
	citedRelative        // ../..., relative to the citing file
	citedLink            // a Markdown link target, relative to the citing file
	citedRoot            // a path from the repository's root
)

func citedPaths(line, file string, top map[string]bool) []cited {
	var out []cited
	for _, m := range machinePath.FindAllStringSubmatch(line, -1) {
		out = append(out, cited{m[2], citedMachine})
	}
	for _, m := range relativePath.FindAllStringSubmatch(line, -1) {
		out = append(out, cited{m[2], citedRelative})
	}
	if strings.HasSuffix(file, ".md") {
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "../") {
				continue // a URL, an anchor, or a ../ path (checked above)
			}
			out = append(out, cited{target, citedLink})
		}
	}
	for _, m := range rootPath.FindAllStringSubmatch(line, -1) {
		p := m[2]
		if !top[strings.SplitN(p, "/", 2)[0]] {
			continue
		}
		out = append(out, cited{p, citedRoot})
	}
	return out
}

// checkCited says what is wrong with p cited by file, or "".
func checkCited(s trackedSet, file string, p cited) string {
	target := p.path
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	target = strings.TrimRight(target, ".,:;")
	if target == "" || strings.ContainsAny(target, "*<>{}$…") {
		return "" // a pattern or a placeholder, not a path
	}
	switch p.kind {
	case citedMachine:
		return "an absolute path of a machine, outside the repository"
	case citedRelative, citedLink:
		resolved := path.Clean(path.Join(path.Dir(file), target))
		if resolved == ".." || strings.HasPrefix(resolved, "../") {
			return "climbs above the repository's root"
		}
		if !s.exists(resolved) {
			return fmt.Sprintf("resolves to %s, which is not a tracked file or directory", resolved)
		}
	case citedRoot:
		if !s.exists(target) {
			return "not a tracked file or directory (a path from the repository's root)"
		}
	}
	return ""
}

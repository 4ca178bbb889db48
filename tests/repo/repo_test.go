// Package repo_test checks the repository itself, with no tool beyond git and
// the standard library: the README's layout table against the tracked files,
// the configuration tables against template.yaml and the code, no document or
// comment citing a path outside the repository, and the size of functions.
// Each test prints exactly what is missing or extra, so that a change which
// adds a file, a parameter or a variable without its line fails here.
package repo_test

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// repoRoot is the directory holding go.mod, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		rootDir, rootErr = filepath.Abs(filepath.Join("..", ".."))
		if rootErr == nil {
			_, rootErr = os.Stat(filepath.Join(rootDir, "go.mod"))
		}
	})
	if rootErr != nil {
		t.Fatalf("repository root: %v", rootErr)
	}
	return rootDir
}

var (
	filesOnce sync.Once
	files     []string
	filesErr  error
)

// trackedFiles is `git ls-files` of the repository: what a clone has. A
// missing git fails the test (never a skip).
func trackedFiles(t testing.TB) []string {
	t.Helper()
	root := repoRoot(t)
	filesOnce.Do(func() {
		cmd := exec.Command("git", "ls-files", "-z")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			filesErr = err
			if ee, ok := err.(*exec.ExitError); ok {
				filesErr = &gitError{err, string(ee.Stderr)}
			}
			return
		}
		for _, f := range strings.Split(string(out), "\x00") {
			// A file deleted in the work tree but not yet in the index is
			// not part of what a commit of this tree would hold.
			if f != "" {
				if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
					files = append(files, f)
				}
			}
		}
		sort.Strings(files)
	})
	if filesErr != nil {
		t.Fatalf("git ls-files (git is needed by these checks): %v", filesErr)
	}
	return files
}

type gitError struct {
	err    error
	stderr string
}

func (e *gitError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// trackedSet holds every tracked file and every directory above one.
type trackedSet struct {
	files map[string]bool
	dirs  map[string]bool
}

func tracked(t testing.TB) trackedSet {
	s := trackedSet{files: map[string]bool{}, dirs: map[string]bool{}}
	for _, f := range trackedFiles(t) {
		s.files[f] = true
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			s.dirs[d] = true
		}
	}
	return s
}

// exists reports whether p (slash-separated, relative to the root, a
// trailing slash allowed) is a tracked file or a directory holding one.
func (s trackedSet) exists(p string) bool {
	p = strings.TrimSuffix(p, "/")
	return s.files[p] || s.dirs[p] || p == "."
}

func readRepoFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the lines of a Markdown file's section whose heading
// starts with heading (any level), up to the next heading of the same or a
// higher level. Fenced code blocks are kept but their lines never end it.
func section(t testing.TB, doc, file, heading string) []string {
	t.Helper()
	lines := strings.Split(doc, "\n")
	start, level := -1, 0
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "#"))
		title := strings.TrimSpace(l[n:])
		if start < 0 {
			if strings.HasPrefix(title, heading) {
				start, level = i+1, n
			}
			continue
		}
		if n <= level {
			return lines[start:i]
		}
	}
	if start < 0 {
		t.Fatalf("%s has no section %q", file, heading)
	}
	return lines[start:]
}

// tableRows returns the cells of the first Markdown table in lines (the
// header and the separator row left out).
func tableRows(lines []string) [][]string {
	var rows [][]string
	in := false
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "|") {
			if in {
				break
			}
			continue
		}
		if !in {
			in = true // the header row
			continue
		}
		cells := splitRow(l)
		if len(cells) > 0 && strings.Trim(strings.Join(cells, ""), "-: ") == "" {
			continue // the separator row
		}
		rows = append(rows, cells)
	}
	return rows
}

// splitRow splits a table row on the pipes outside backticks.
func splitRow(l string) []string {
	l = strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|")
	var cells []string
	var cur strings.Builder
	code := false
	for i := 0; i < len(l); i++ {
		switch c := l[i]; {
		case c == '`':
			code = !code
			cur.WriteByte(c)
		case c == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// codeSpans returns the contents of the `code spans` of a cell.
func codeSpans(cell string) []string {
	var out []string
	for {
		i := strings.IndexByte(cell, '`')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(cell[i+1:], '`')
		if j < 0 {
			return out
		}
		out = append(out, cell[i+1:i+1+j])
		cell = cell[i+2+j:]
	}
}

// report fails t with one line per entry of each non-empty list.
func report(t *testing.T, what string, items []string) {
	t.Helper()
	if len(items) == 0 {
		return
	}
	sort.Strings(items)
	t.Errorf("%s (%d):\n\t%s", what, len(items), strings.Join(items, "\n\t"))
}

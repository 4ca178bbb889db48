package repo_test

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"testing"
)

// layoutDepth is the depth at which the README's layout table groups files:
// a file at this depth or above is named (in its own row or in its
// directory's); a deeper one is covered by the row of its directory at this
// depth.
const layoutDepth = 3

// fileName is a code span that names a file: `main.go`, `README.md`,
// `rotation.asl.json` (not `flow.MinValidity`, not `KMS_ENDPOINTS_BY_REGION`).
var fileName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.[a-z0-9]+$`)

type layoutRow struct {
	paths []string // the Path cell's code spans, trailing slash removed
	what  string
	dir   bool // every path is a directory
}

func layoutTable(t *testing.T) []layoutRow {
	t.Helper()
	rows := tableRows(section(t, readRepoFile(t, "README.md"), "README.md", "Layout"))
	if len(rows) == 0 {
		t.Fatal("README.md: the Layout section has no table")
	}
	var out []layoutRow
	for i, cells := range rows {
		if len(cells) != 2 {
			t.Fatalf("README.md Layout table, row %d: %d cells, want 2 (Path, What): %q", i+1, len(cells), cells)
		}
		r := layoutRow{what: cells[1]}
		for _, p := range codeSpans(cells[0]) {
			r.paths = append(r.paths, strings.TrimSuffix(p, "/"))
		}
		if len(r.paths) == 0 {
			t.Fatalf("README.md Layout table, row %d names no path in `code`: %q", i+1, cells[0])
		}
		out = append(out, r)
	}
	return out
}

// TestLayoutTable: every path the README's layout table names exists, every
// file a directory's row names is in that directory, and every tracked file
// is covered by a row.
func TestLayoutTable(t *testing.T) {
	s := tracked(t)
	rows := layoutTable(t)

	var extra []string
	filesNamed := map[string]bool{} // files named by a row of their own
	dirRow := map[string]int{}      // directory -> index of its row
	for i := range rows {
		r := &rows[i]
		r.dir = true
		for _, p := range r.paths {
			switch {
			case s.files[p]:
				filesNamed[p] = true
				r.dir = false
			case s.dirs[p]:
				dirRow[p] = i
			default:
				extra = append(extra, fmt.Sprintf("%s: in the Path column, but no tracked file or directory has that path", p))
			}
		}
	}

	// A file name in a directory's row must be a file of that directory
	// (directly, or anywhere below a directory at the grouping depth).
	for _, r := range rows {
		if !r.dir {
			continue
		}
		for _, name := range codeSpans(r.what) {
			if !fileName.MatchString(name) {
				continue
			}
			if !namesFileIn(s, r.paths, name) {
				extra = append(extra, fmt.Sprintf("%s: named in the row of %s, but not a tracked file there", name, strings.Join(r.paths, ", ")))
			}
		}
	}
	report(t, "README.md Layout table names what is not in the repository", extra)

	var missing []string
	for _, f := range trackedFiles(t) {
		if filesNamed[f] {
			continue
		}
		parts := strings.Split(f, "/")
		if len(parts) > layoutDepth {
			g := strings.Join(parts[:layoutDepth], "/")
			if _, ok := dirRow[g]; !ok {
				missing = append(missing, fmt.Sprintf("%s: no row for its directory %s/", f, g))
			}
			continue
		}
		dir := path.Dir(f)
		i, ok := dirRow[dir]
		switch {
		case !ok && dir == ".":
			missing = append(missing, fmt.Sprintf("%s: no row names it", f))
		case !ok:
			missing = append(missing, fmt.Sprintf("%s: no row names it or its directory %s/", f, dir))
		case !containsSpan(rows[i].what, path.Base(f)):
			missing = append(missing, fmt.Sprintf("%s: not named (as `%s`) in the row of %s/", f, path.Base(f), dir))
		}
	}
	report(t, "tracked files the README.md Layout table does not cover", missing)
}

func namesFileIn(s trackedSet, dirs []string, name string) bool {
	for _, d := range dirs {
		if s.files[d+"/"+name] {
			return true
		}
		if strings.Count(d, "/")+1 < layoutDepth {
			continue
		}
		for f := range s.files {
			if strings.HasPrefix(f, d+"/") && path.Base(f) == name {
				return true
			}
		}
	}
	return false
}

func containsSpan(cell, name string) bool {
	for _, c := range codeSpans(cell) {
		if c == name {
			return true
		}
	}
	return false
}

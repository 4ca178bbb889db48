package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrapOut: --out never destroys the material (or the public key), is
// never a symbolic link, replaces an existing file only with --force, and
// is written through a temporary file renamed into place (mode 0600, no
// temporary file left behind).
func TestWrapOut(t *testing.T) {
	f := getFixture(t)
	pubDER, err := os.ReadFile(f.pubDER)
	if err != nil {
		t.Fatal(err)
	}
	// setup prepares the case in dir, where material.bin holds the material
	// and public.der the wrapping public key; it returns --material and
	// --out.
	type paths struct{ material, pub, out string }
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string, p *paths)
		force bool
		want  string // "" succeeds; else exit 2 with this on stderr
	}{
		{"new file", func(t *testing.T, dir string, p *paths) {}, false, ""},
		{"new file, --force", func(t *testing.T, dir string, p *paths) {}, true, ""},
		{"same path as --material", func(t *testing.T, dir string, p *paths) { p.out = p.material }, false, "is the same file as --material"},
		{"same path as --material, --force", func(t *testing.T, dir string, p *paths) { p.out = p.material }, true, "is the same file as --material"},
		{"same file by another path", func(t *testing.T, dir string, p *paths) {
			mustMkdir(t, filepath.Join(dir, "sub"))
			p.out = filepath.Join(dir, "sub", "..", ".", "material.bin")
		}, true, "is the same file as --material"},
		{"hard link to --material", func(t *testing.T, dir string, p *paths) {
			if err := os.Link(p.material, p.out); err != nil {
				t.Fatal(err)
			}
		}, true, "is the same file as --material"},
		{"--material is a symbolic link to --out", func(t *testing.T, dir string, p *paths) {
			if err := os.Rename(p.material, p.out); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p.out, p.material); err != nil {
				t.Fatal(err)
			}
		}, true, "is the same file as --material"},
		{"same file as --public-key", func(t *testing.T, dir string, p *paths) { p.out = p.pub }, true, "is the same file as --public-key"},
		{"symbolic link to --material", func(t *testing.T, dir string, p *paths) {
			if err := os.Symlink(p.material, p.out); err != nil {
				t.Fatal(err)
			}
		}, true, "is a symbolic link"},
		{"symbolic link to another file", func(t *testing.T, dir string, p *paths) {
			writeFile(t, filepath.Join(dir, "other.bin"), "other")
			if err := os.Symlink(filepath.Join(dir, "other.bin"), p.out); err != nil {
				t.Fatal(err)
			}
		}, true, "is a symbolic link"},
		{"dangling symbolic link", func(t *testing.T, dir string, p *paths) {
			if err := os.Symlink(filepath.Join(dir, "nowhere.bin"), p.out); err != nil {
				t.Fatal(err)
			}
		}, true, "is a symbolic link"},
		{"existing file", func(t *testing.T, dir string, p *paths) { writeFile(t, p.out, "old") }, false, "already exists; give --force"},
		{"existing file, --force", func(t *testing.T, dir string, p *paths) { writeFile(t, p.out, "old") }, true, ""},
		{"directory", func(t *testing.T, dir string, p *paths) { mustMkdir(t, p.out) }, true, "is not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := paths{material: filepath.Join(dir, "material.bin"), pub: filepath.Join(dir, "public.der"), out: filepath.Join(dir, "out.bin")}
			writeFile(t, p.material, string(f.symmetric))
			writeFile(t, p.pub, string(pubDER))
			c.setup(t, dir, &p)
			before := snapshot(t, dir)

			args := []string{"wrap", "--public-key", p.pub, "--key-spec", "SYMMETRIC_DEFAULT", "--material", p.material, "--out", p.out}
			if c.force {
				args = append(args, "--force")
			}
			stdout, stderr, code := cli(t, args...)

			if got, _ := os.ReadFile(p.material); !bytes.Equal(got, f.symmetric) {
				t.Fatal("the material file no longer holds the material")
			}
			if got, _ := os.ReadFile(p.pub); !bytes.Equal(got, pubDER) {
				t.Fatal("the public key file changed")
			}
			for name := range snapshot(t, dir) {
				if strings.Contains(name, ".tmp-") {
					t.Fatalf("temporary file %s left behind", name)
				}
			}
			if c.want != "" {
				if code != exitUsage || !strings.Contains(stderr, c.want) || stdout != "" {
					t.Fatalf("exit %d, stderr %q, stdout %q; want exit 2 saying %q", code, stderr, stdout, c.want)
				}
				if after := snapshot(t, dir); !equalSnapshots(before, after) {
					t.Fatalf("files changed although refused:\nbefore %v\nafter  %v", before, after)
				}
				return
			}
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			st, err := os.Lstat(p.out)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
				t.Fatalf("output mode %v, want a regular file with 0600", st.Mode())
			}
			ct, _ := os.ReadFile(p.out)
			if got := unwrap(t, f, "RSAES_OAEP_SHA_256", ct); !bytes.Equal(got, f.symmetric) {
				t.Fatal("the output does not unwrap to the material")
			}
		})
	}
}

// TestWriteOutNoClobber: without --force, a file that appears at --out
// after the check is not replaced.
func TestWriteOutNoClobber(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.bin")
	writeFile(t, out, "appeared meanwhile")
	err := writeOut(wrapFlags{out: out}, []byte("ciphertext"))
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("got %v, want a usage error saying the file exists", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "appeared meanwhile" {
		t.Fatalf("out now holds %q", got)
	}
	if err := writeOut(wrapFlags{out: out, force: true}, []byte("ciphertext")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "ciphertext" {
		t.Fatalf("with force, out holds %q", got)
	}
	if names := snapshot(t, dir); len(names) != 1 {
		t.Fatalf("directory holds %v, want out.bin alone", names)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}

// snapshot is what a directory holds: name -> symlink target or content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[e.Name()] = "-> " + target
		case e.IsDir():
			out[e.Name()] = "dir"
		default:
			b, _ := os.ReadFile(p)
			out[e.Name()] = string(b)
		}
	}
	return out
}

func equalSnapshots(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

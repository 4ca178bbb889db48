package recordfailure

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kms-reimport/kms-reimport/shared/records"
)

// validSubject checks s against SNS Publish's Subject constraints: UTF-8,
// no line breaks or control characters, less than 100 characters (counted
// here as UTF-16 code units, which is never less than a count of runes).
func validSubject(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("subject %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Cf) || (unicode.IsSpace(r) && r != ' ') {
			t.Errorf("subject %q holds %U", s, r)
		}
	}
	if n := len(utf16.Encode([]rune(s))); n >= 100 {
		t.Errorf("subject is %d characters (UTF-16), want fewer than 100: %q", n, s)
	}
	if n := utf8.RuneCountInString(s); n >= 100 {
		t.Errorf("subject is %d runes, want fewer than 100", n)
	}
	if s == "" || s != strings.TrimSpace(s) {
		t.Errorf("subject %q is empty or has white space at an end", s)
	}
}

func TestSNSSubject(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "kms-reimport: rotation failed (InvalidInput) for 1234", "kms-reimport: rotation failed (InvalidInput) for 1234"},
		{"line breaks", "failed\r\n(Bad)\nfor\rkey", "failed (Bad) for key"},
		{"tabs and runs of spaces", "a\t \t b   c", "a b c"},
		{"unicode line separators", "a\u2028b\u2029c\u0085d", "a b c d"},
		{"C0, DEL and C1 controls dropped", "a\x00b\x1b[31mc\x7fd\u009be", "ab[31mcde"},
		{"format characters dropped", "evil\u202Egnp.exe\u200B!\uFEFF", "evilgnp.exe!"},
		{"invalid UTF-8", "a\xffb\xc3", "a\uFFFDb\uFFFD"},
		{"trimmed", " \n\tsubject \r\n", "subject"},
		{"only controls", "\x00\n\x1b", "kms-reimport notification"},
		{"99 characters kept", strings.Repeat("a", 99), strings.Repeat("a", 99)},
		{"100 characters cut", strings.Repeat("a", 100), strings.Repeat("a", 98) + "…"},
		{"long ASCII", strings.Repeat("x", 500), strings.Repeat("x", 98) + "…"},
		{"long two-byte", strings.Repeat("é", 150), strings.Repeat("é", 98) + "…"},
		{"long three-byte", "鍵" + strings.Repeat("鍵", 199), strings.Repeat("鍵", 98) + "…"},
		{"long four-byte counts twice", strings.Repeat("🔑", 80), strings.Repeat("🔑", 49) + "…"},
		{"mixed, cut between characters", "ab" + strings.Repeat("🔑", 60), "ab" + strings.Repeat("🔑", 48) + "…"},
		{"space before the cut trimmed", strings.Repeat("a", 97) + " b" + strings.Repeat("c", 10), strings.Repeat("a", 97) + "…"},
		{"controls in long multibyte", strings.Repeat("ü\n\x00", 120), strings.TrimSpace(strings.Repeat("ü ", 49)) + "…"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := snsSubject(c.in)
			if got != c.want {
				t.Errorf("snsSubject(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
			validSubject(t, got)
		})
	}
}

// TestMessageSubject: the notification's subject is valid whatever the
// error name holds, and keeps what fits.
func TestMessageSubject(t *testing.T) {
	arn := "arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	cases := []struct {
		name, errName, prefix string
	}{
		{"plain", "InvalidInput", "kms-reimport: rotation failed (InvalidInput) for 1234abcd-12ab-34cd-56ef-1234567890ab"},
		{"line break in the error name", "Bad\r\nName", "kms-reimport: rotation failed (Bad Name) for 1234abcd"},
		{"long multibyte error name", "Fehler" + strings.Repeat("ß", 200) + "\x07", "kms-reimport: rotation failed (Fehlerßßß"},
		{"long emoji error name", strings.Repeat("🔥", 100), "kms-reimport: rotation failed (🔥🔥"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			subject, body := message(records.Import{KeyARN: arn, ErrorName: c.errName, Stage: "import"}, nil)
			validSubject(t, subject)
			if !strings.HasPrefix(subject, c.prefix) {
				t.Errorf("subject %q does not start with %q", subject, c.prefix)
			}
			if !strings.Contains(body, "Key:        "+arn+"\n") {
				t.Errorf("body lost the key ARN:\n%s", body)
			}
		})
	}
}

package commands

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// THREATS.md row 27: a command the peer's policy does not allow gets "denied", and nothing is
// executed. Every program below would leave a marker file next to itself if it ran.
func TestThreat27DeniedByPolicy(t *testing.T) {
	sh := lookPath(t, "sh")
	dir := t.TempDir()
	marker := "#!" + sh + "\ntouch \"$0.ran\"\n"
	allowed := filepath.Join(dir, "allowed", "tool")
	other := filepath.Join(dir, "other", "tool") // same base name, not allowed
	other2 := filepath.Join(dir, "other", "tool2")
	dupA := filepath.Join(dir, "a", "dup")
	dupB := filepath.Join(dir, "b", "dup")
	for _, p := range []string{allowed, other, other2, dupA, dupB} {
		writeScript(t, p, marker)
	}
	if err := os.Symlink(sh, filepath.Join(dir, "other", "sh")); err != nil {
		t.Fatal(err)
	}
	p := Policy{
		Allow: []string{allowed, dupA, dupB},
		// A working directory and a PATH full of tempting programs: neither may be used to
		// find what to run.
		Dir: filepath.Join(dir, "other"),
		Env: []string{"PATH=" + filepath.Join(dir, "other") + ":/usr/bin:/bin"},
	}
	cases := []struct {
		name    string
		req     Request
		unknown bool
	}{
		{"absolute not listed", Request{Name: CmdExec, Argv: []string{other}}, false},
		{"absolute not listed, other program", Request{Name: CmdExec, Argv: []string{other2, "x"}}, false},
		{"absolute with dot-dot", Request{Name: CmdExec, Argv: []string{filepath.Join(dir, "allowed") + "/../other/tool"}}, false},
		{"prefix of an allowed path", Request{Name: CmdExec, Argv: []string{filepath.Join(dir, "allowed")}}, false},
		{"bare name not listed", Request{Name: CmdExec, Argv: []string{"tool2"}}, false},
		{"bare shell", Request{Name: CmdExec, Argv: []string{"sh", "-c", "touch " + filepath.Join(dir, "X")}}, false},
		{"relative ./", Request{Name: CmdExec, Argv: []string{"./tool"}}, false},
		{"relative dir/", Request{Name: CmdExec, Argv: []string{"other/tool"}}, false},
		{"relative ../bin/sh", Request{Name: CmdExec, Argv: []string{"../bin/sh", "-c", "touch X"}}, false},
		{"ambiguous base name", Request{Name: CmdExec, Argv: []string{"dup"}}, false},
		{"command line as program", Request{Name: CmdExec, Argv: []string{"tool; touch X"}}, false},
		{"base name with space", Request{Name: CmdExec, Argv: []string{"tool "}}, false},
		{"NUL in program", Request{Name: CmdExec, Argv: []string{allowed + "\x00x"}}, false},
		{"long program name", Request{Name: CmdExec, Argv: []string{strings.Repeat("\u2028", MaxArgBytes/3)}}, false},
		{"empty argv", Request{Name: CmdExec}, false},
		{"empty program", Request{Name: CmdExec, Argv: []string{""}}, false},
		{"too many args", Request{Name: CmdExec, Argv: make([]string, MaxArgs+1)}, false},
		{"negative timeout", Request{Name: CmdExec, Argv: []string{allowed}, Timeout: -1}, false},
		{"ping with argv", Request{Name: CmdPing, Argv: []string{allowed}}, false},
		{"unknown command", Request{Name: "shell", Argv: []string{allowed}}, true},
		{"command name case", Request{Name: "EXEC", Argv: []string{allowed}}, true},
		{"empty command name", Request{Argv: []string{allowed}}, true},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := reg.Check(c.req, p)
			t.Log(err)
			if !errors.Is(err, ErrDenied) {
				t.Errorf("Check(%q) = %v, %v, want an error wrapping ErrDenied", c.req.Argv, got, err)
			}
			if errors.Is(err, ErrUnknownCommand) != c.unknown {
				t.Errorf("Check(%q): errors.Is(%v, ErrUnknownCommand) = %v, want %v", c.req.Name, err, !c.unknown, c.unknown)
			}
			if err != nil && len(err.Error()) > 1024 {
				t.Errorf("Check(%q): message of %d bytes does not fit an ERROR detail (1024)", c.req.Argv, len(err.Error()))
			}
			res := reg.Run(context.Background(), c.req, p)
			if res.ExitCode != -1 || res.Error == "" || res.Stdout != nil || res.Info != nil {
				t.Errorf("Run(%q) = %+v, want exit code -1 and an error", c.req.Argv, res)
			}
			if _, err := EncodeResult(res); err != nil {
				t.Errorf("EncodeResult(Run(%q)) = %v", c.req.Argv, err)
			}
		})
	}
	// Nothing ran: no marker anywhere, no file X.
	var ran []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if strings.HasSuffix(path, ".ran") || filepath.Base(path) == "X" {
			ran = append(ran, path)
		}
		return err
	})
	if len(ran) > 0 {
		t.Fatalf("denied requests left markers: %q", ran)
	}
	// The markers work: the allowed program, asked for by base name, does leave one.
	res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: []string{"tool"}}, p)
	if res.ExitCode != 0 || !exists(allowed+".ran") || exists(other+".ran") {
		t.Fatalf("Run(tool) = %+v; marker %v, want exit code 0 and only the allowed program's marker", res, exists(allowed+".ran"))
	}
}

// THREATS.md row 28: arguments with shell metacharacters reach the program as argv, byte for
// byte, and nothing interprets them.
func TestThreat28ShellMetacharacters(t *testing.T) {
	dir := t.TempDir()
	args := []string{
		"; rm -rf /", "$(touch X)", "`touch X`", "&& touch X", "a && touch X", "| touch X", "> X", ">>X", "< /etc/passwd",
		"*", "?", "[a-z]*", "~", "~root", "$HOME", "${PATH}", "$0", "!!", "#comment", "a\nb", "line\n", "\ttab", "\r",
		`"double"`, "'single'", `\`, `\n`, "-n", "--", "-e", "--help", "", " ", "  spaced  ", "X=1", "%s%n%x",
		"\u2028", "☃ é 日本", "\x1b[31mred", "touch X &", "(touch X)", "{touch,X}", "a;b|c&d",
	}
	t.Run("helper", func(t *testing.T) {
		exe, p := helper(t, "argv")
		p.Dir = dir
		res := NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdExec, Argv: append([]string{exe}, args...)}, p)
		var got []string
		if err := json.Unmarshal(res.Stdout, &got); err != nil || res.ExitCode != 0 {
			t.Fatalf("Run(helper argv) = %+v (%v), want exit code 0 and the arguments as JSON", res, err)
		}
		if !slices.Equal(got, args) {
			t.Errorf("Run(helper %q): the program saw %q", args, got)
		}
	})
	t.Run("printf by base name", func(t *testing.T) {
		printf := lookPath(t, "printf")
		p := Policy{Allow: []string{printf}, Dir: dir}
		res := NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdExec, Argv: append([]string{"printf", "%s\\n"}, args...)}, p)
		want := strings.Join(args, "\n") + "\n"
		if res.ExitCode != 0 || string(res.Stdout) != want {
			t.Errorf("Run(printf %%s\\n %q) = exit %d, stdout %q, stderr %q; want %q", args, res.ExitCode, res.Stdout, res.Stderr, want)
		}
	})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("the working directory holds %v after the runs, want nothing (no file X)", entries)
	}
	if exists("X") {
		t.Errorf("a file X appeared in the test's directory")
	}
}

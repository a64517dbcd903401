package commands

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Policy defaults (the zero value of each Policy field means these).
const (
	DefaultMaxTimeout = 10 * time.Minute
	DefaultTimeout    = time.Minute
	DefaultMaxOutput  = 1 << 20
	DefaultDir        = "/"
)

// DefaultEnv returns the environment exec gets when Policy.Env is nil. The agent's own
// environment is never passed on.
func DefaultEnv() []string {
	return []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/"}
}

// Policy is what one peer may do on this agent. ping and sysinfo are open to every paired
// peer; exec runs only the programs in Allow.
type Policy struct {
	// Allow holds the absolute program paths this peer may exec (see ResolveAllow). Entries
	// are compared after filepath.Clean; relative entries never match.
	Allow []string
	// MaxTimeout caps the timeout a request asks for; zero or negative = DefaultMaxTimeout.
	MaxTimeout time.Duration
	// DefaultTimeout applies when a request asks for none; zero or negative = DefaultTimeout.
	// It is capped by MaxTimeout too.
	DefaultTimeout time.Duration
	// MaxOutput is how many bytes of stdout, and separately of stderr, are kept; zero or
	// negative = DefaultMaxOutput, and never more than MaxOutputLimit.
	MaxOutput int
	// Env is the whole environment of an exec'd program; nil = DefaultEnv(). An empty,
	// non-nil slice means an empty environment.
	Env []string
	// Dir is the working directory; "" = DefaultDir.
	Dir string
	// Peer is what this agent calls the peer, so that a denial can name the command that would
	// allow the program; "" = the placeholder NAME.
	Peer string
	// Stdout and Stderr, when set, receive an exec'd program's whole output streams, in place of
	// the capped copies in Result.Stdout and Result.Stderr (which stay empty): the node spools
	// them and sends them as a stream. A write error there does not disturb the program; its
	// output is then lost from that point, which the writer's owner records.
	Stdout, Stderr io.Writer
}

// peerName is the name a denial's suggested `sealpost peer add` command uses.
func (p Policy) peerName() string { return typable(p.Peer, "NAME") }

func (p Policy) maxTimeout() time.Duration {
	if p.MaxTimeout <= 0 {
		return DefaultMaxTimeout
	}
	return p.MaxTimeout
}

// timeout is the timeout a request asking for want runs with: always positive.
func (p Policy) timeout(want time.Duration) time.Duration {
	if want <= 0 {
		want = p.DefaultTimeout
		if want <= 0 {
			want = DefaultTimeout
		}
	}
	return min(want, p.maxTimeout())
}

func (p Policy) maxOutput() int {
	if p.MaxOutput <= 0 {
		return DefaultMaxOutput
	}
	return min(p.MaxOutput, MaxOutputLimit)
}

// env is never nil: a nil Cmd.Env would hand the agent's environment to the program.
func (p Policy) env() []string {
	if p.Env == nil {
		return DefaultEnv()
	}
	return append([]string{}, p.Env...)
}

func (p Policy) dir() string {
	if p.Dir == "" {
		return DefaultDir
	}
	return p.Dir
}

// allowed returns the absolute entries of Allow, cleaned and without duplicates.
func (p Policy) allowed() []string {
	var out []string
	for _, a := range p.Allow {
		if !filepath.IsAbs(a) {
			continue
		}
		if c := filepath.Clean(a); !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// resolveProgram maps the program a request names to the allowlisted absolute path to execute:
// an absolute name must be in the allowlist (after filepath.Clean); a bare name (no slash) must
// be the base name of exactly one entry; anything else is denied.
func resolveProgram(prog string, p Policy) (string, error) {
	allowed := p.allowed()
	switch {
	case prog == "":
		return "", denied("empty program name")
	case filepath.IsAbs(prog):
		c := filepath.Clean(prog)
		if slices.Contains(allowed, c) {
			return c, nil
		}
		return "", denied("program %q is not allowed for this peer; to allow it, run on the agent: sealpost peer add %s --allow %s", clip(prog, 256), p.peerName(), suggestion(c))
	case strings.ContainsRune(prog, '/') || strings.ContainsRune(prog, filepath.Separator):
		return "", denied("program %q is a relative path; ask for an absolute path or a bare name", clip(prog, 256))
	}
	var matches []string
	for _, a := range allowed {
		if filepath.Base(a) == prog {
			matches = append(matches, a)
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", denied("program %q matches no program allowed for this peer; to allow it, run on the agent: sealpost peer add %s --allow %s", clip(prog, 256), p.peerName(), suggestion(prog))
	default:
		return "", denied("program %q is ambiguous: it matches %s; ask for one by its absolute path", clip(prog, 256), strings.Join(matches, ", "))
	}
}

// suggestion is prog as an operator could type it after --allow, or PROGRAM when it holds
// anything but the usual file name characters.
func suggestion(prog string) string { return typable(prog, "PROGRAM") }

// typable is s when an operator could paste it into a shell as it stands (the usual file name
// characters, at most 256 bytes, not starting like a flag), else the placeholder.
func typable(s, placeholder string) string {
	if s == "" || len(s) > 256 || s[0] == '-' || strings.TrimFunc(s, func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-/", r)
	}) != "" {
		return placeholder
	}
	return s
}

// ResolveAllow turns the programs an operator names (`--allow echo`, `--allow /usr/bin/uptime`)
// into the absolute paths a Policy holds, when the policy is written: a bare name is looked up
// in PATH; an absolute path must name an existing, executable regular file. Relative paths are
// refused. The result keeps the order given, without duplicates. Symlinks are not resolved:
// the path is what is allowed, and what it names when a command runs is what runs.
//
// Every failing entry is reported (errors.Join); a missing program wraps fs.ErrNotExist or
// exec.ErrNotFound, one that is not executable wraps fs.ErrPermission.
func ResolveAllow(progs []string) ([]string, error) {
	var out []string
	var errs []error
	for _, prog := range progs {
		path, err := resolveAllowOne(prog)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(out, path) {
			out = append(out, path)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func resolveAllowOne(prog string) (string, error) {
	switch {
	case prog == "":
		return "", errors.New("allow: empty program name")
	case filepath.IsAbs(prog):
		path := filepath.Clean(prog)
		return path, checkExecutable(prog, path)
	case strings.ContainsRune(prog, '/') || strings.ContainsRune(prog, filepath.Separator):
		return "", fmt.Errorf("allow %q: a relative path; give an absolute path, or a bare name to look up in PATH", prog)
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return "", fmt.Errorf("allow %q: not found in PATH (%s): %w", prog, os.Getenv("PATH"), err)
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("allow %q: found as %s, relative to the current directory; give an absolute path", prog, path)
	}
	path = filepath.Clean(path)
	return path, checkExecutable(prog, path)
}

func checkExecutable(prog, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("allow %q: %w", prog, err)
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		return fmt.Errorf("allow %q: %s is a directory, not a program", prog, path)
	case !mode.IsRegular():
		return fmt.Errorf("allow %q: %s is not a regular file (%v)", prog, path, mode.Type())
	case mode.Perm()&0o111 == 0:
		return fmt.Errorf("allow %q: %w: %s is not executable (mode %v)", prog, fs.ErrPermission, path, mode.Perm())
	}
	return nil
}

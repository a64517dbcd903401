// Package sealpost_test holds module-wide checks. The module root has no code of its own.
package sealpost_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sealpost/sealpost"

// leaves are the packages that node joins: none of them may import another (DESIGN.md section 2).
var leaves = []string{"session", "compress", "mailbox", "commands", "keystore", "cron"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// known is every package of the module; a new one must be placed in the house (and here) on
// purpose, so that a renamed or added leaf cannot slip past the checks below.
var known = append([]string{"cmd/sealpost", "node", "fixtures", "web"}, leaves...)

func TestDependencyDirection(t *testing.T) {
	all := goList(t, "./...")
	for _, name := range known {
		if !slices.Contains(all, module+"/"+name) {
			t.Errorf("package %s is missing: a leaf renamed or removed must be renamed here too (DESIGN.md section 2)", name)
		}
	}
	for _, pkg := range all {
		if pkg != module && !slices.Contains(known, strings.TrimPrefix(pkg, module+"/")) {
			t.Errorf("package %s is not in the house: name it in deps_test.go with its place (a leaf, or a joiner)", pkg)
		}
	}
	for _, leaf := range leaves {
		pkg := module + "/" + leaf
		for _, dep := range goList(t, "-deps", pkg) {
			if dep == module+"/node" || dep == module+"/cmd/sealpost" {
				t.Errorf("%s imports %s; leaves import no joiner", leaf, dep)
			}
		}
		for _, dep := range goList(t, "-deps", pkg) {
			for _, other := range leaves {
				if other != leaf && (dep == module+"/"+other || strings.HasPrefix(dep, module+"/"+other+"/")) {
					t.Errorf("%s imports %s; leaves must not import each other (node joins them)", leaf, dep)
				}
			}
		}
	}
}

func TestNoTestCodeInProduction(t *testing.T) {
	for _, pkg := range goList(t, "./...") {
		if pkg == module+"/fixtures" || strings.HasPrefix(pkg, module+"/fixtures/") {
			continue
		}
		for _, dep := range goList(t, "-deps", pkg) {
			if dep == "testing" || dep == module+"/fixtures" || strings.HasPrefix(dep, module+"/fixtures/") {
				t.Errorf("%s imports %s in non-test code", pkg, dep)
			}
		}
	}
}

// TestCLIImportsOnlyNode: the command line asks node for everything (node.API owns the types
// it returns), so that the state's and the protocol's records can change without the CLI
// reading them; the leaves it may use are the ones whose values it builds (commands.Request)
// or serves (mailbox's relay, compress for the demo's figures).
func TestCLIImportsOnlyNode(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}} {{join .TestImports " "}}`, "./cmd/sealpost").Output()
	if err != nil {
		t.Fatalf("go list ./cmd/sealpost: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, forbidden := range []string{"keystore", "session"} {
			if dep == module+"/"+forbidden {
				t.Errorf("cmd/sealpost imports %s; it must reach state and protocol through node", dep)
			}
		}
	}
}

// TestWebImportsOnlyNode: the dashboard (web) reads the node through node's API and its types,
// never the state or the protocol directly, and only the command line imports it (DESIGN.md
// section 2a). Its tests may build commands' values (the sysinfo in a fleet entry).
func TestWebImportsOnlyNode(t *testing.T) {
	for _, c := range []struct {
		field string
		may   []string
	}{{".Imports", []string{"node"}}, {".TestImports", []string{"node", "commands"}}} {
		out, err := exec.Command("go", "list", "-f", "{{join "+c.field+` " "}}`, "./web").Output()
		if err != nil {
			t.Fatalf("go list ./web: %v", err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if rest, ok := strings.CutPrefix(dep, module+"/"); ok && !slices.Contains(c.may, rest) {
				t.Errorf("web (%s) imports %s; it may import only %v", c.field, dep, c.may)
			}
		}
	}
	for _, pkg := range goList(t, "./...") {
		if pkg == module+"/cmd/sealpost" || pkg == module+"/web" {
			continue
		}
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}} {{join .TestImports " "}}`, pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		if slices.Contains(strings.Fields(string(out)), module+"/web") {
			t.Errorf("%s imports web; only the command line may", pkg)
		}
	}
}

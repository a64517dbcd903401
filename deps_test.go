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
var leaves = []string{"session", "compress", "mailbox", "commands", "keystore"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func TestDependencyDirection(t *testing.T) {
	all := goList(t, "./...")
	for _, leaf := range leaves {
		pkg := module + "/" + leaf
		if !slices.Contains(all, pkg) {
			continue // not written yet
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

package core_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps core free of HTTP, JSON and the packages above it.
// The rule: core routes messages among hubs, groups, users and conns and
// knows no HTTP, no JSON and no sockets, so it imports none of transport,
// dialect, api, upstream, admin or server; they depend on core, through the
// interfaces core declares (Codec, Link, Broker, History), never the other
// way round. That keeps the routing testable without a network and lets a
// new transport, dialect or broker come without touching core.
//
// net/http and encoding/json are checked in the imports of core and of
// every package of this module it depends on; they are reachable through
// the Prometheus client, which is allowed.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	const module = "github.com/switchboardhq/switchboard/"
	out, err := exec.Command(goTool, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbiddenPkgs := []string{"net/http", "encoding/json"}
	forbiddenTrees := []string{"internal/transport", "internal/dialect", "internal/api", "internal/upstream", "internal/admin", "internal/server"}
	seen := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg, imports := fields[0], fields[1:]
		if !strings.HasPrefix(pkg, module) {
			continue
		}
		seen++
		rel := strings.TrimPrefix(pkg, module)
		for _, tree := range forbiddenTrees {
			if rel == tree || strings.HasPrefix(rel, tree+"/") {
				t.Errorf("internal/core depends on %s", pkg)
			}
		}
		for _, imp := range imports {
			for _, f := range forbiddenPkgs {
				if imp == f {
					t.Errorf("%s (a dependency of internal/core) imports %s", pkg, imp)
				}
			}
		}
	}
	if seen == 0 {
		t.Fatalf("go list printed no package of this module:\n%s", out)
	}
}

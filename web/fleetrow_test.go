package web

import (
	"math"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// TestFleetRowCapsNumbers: a peer's report is not checked, so absurd figures are shown capped
// (a load of 1e308 as ">999", not 300 digits) and impossible ones as "?", in the fleet row and
// on the peer's page alike.
func TestFleetRowCapsNumbers(t *testing.T) {
	huge, neg := 1e300, -5.0
	e := node.FleetEntry{Name: "bob", MemFreePct: &huge, SysInfo: &commands.SysInfo{
		Load1: 1e308, Load5: math.NaN(), Load15: 12.345, NumCPU: 4, MemTotal: 1, MemAvailable: math.MaxUint64,
		Disks: []commands.Disk{{Mount: "/", Total: 1, Free: math.MaxUint64}}}}
	row := FleetRowOf(e, testNow)
	for _, c := range []struct{ what, got, want string }{
		{"Load", row.Load, ">999 ? 12.35"},
		{"Mem", row.Mem, ">100% of 1B"},
		{"Disk", row.Disk, "/ >100% free"},
	} {
		if c.got != c.want {
			t.Errorf("FleetRowOf(...).%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	e.MemFreePct = &neg
	if row := FleetRowOf(e, testNow); row.Mem != "? of 1B" {
		t.Errorf("FleetRowOf with a negative free memory share: Mem = %q, want %q", row.Mem, "? of 1B")
	}

	src := newFake()
	src.fleet[0].SysInfo.Load1, src.fleet[0].MemFreePct = 1e308, &huge
	src.fleet[0].SysInfo.Disks[0].Free = math.MaxUint64
	res, body := get(t, newPageServer(src), "GET", "http://127.0.0.1/peer/bob", nil)
	if res.StatusCode != 200 || !strings.Contains(body, "<dd>&gt;999 0.00 0.00 (0 CPUs)</dd>") || !strings.Contains(body, "(&gt;100%)</dd>") || !strings.Contains(body, `<td class="num">&gt;100%</td>`) {
		t.Errorf("GET /peer/bob with a load of 1e308: %d, want it shown as >999 and the disk as >100%%:\n%s", res.StatusCode, body)
	}
}

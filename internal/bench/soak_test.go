package bench

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestSoakShort runs the soak for a few seconds against a server whose event handlers are
// the soak's own, with a fast handler cycle, and checks that it did what it is for:
// clients of every kind connected and left, messages were delivered and accounted,
// handler failures were injected, and the server was sampled.
func TestSoakShort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "soak.yaml")
	if err := os.WriteFile(cfg, []byte(SoakServerConfig(ln.Addr().String(), "soak", 300*time.Millisecond)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := RunSoak(ctx, SoakOptions{
		ConnString: srv.ConnectionString(), SignalRConnString: srv.SignalRConnectionString(),
		Duration: 4 * time.Second, Conns: 40, ConnectRate: 100, MinLife: 300 * time.Millisecond, MaxLife: 1500 * time.Millisecond,
		Rate: 100, ClientRate: 10, Groups: 3, Users: 4,
		HandlerListener: ln, HandlerCycle: 1200 * time.Millisecond, HandlerSlow: 600 * time.Millisecond,
		SampleEvery: time.Second, Settle: 200 * time.Millisecond, Drain: 5 * time.Second, SourceIPs: -1,
		Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.WriteText(&out)
	t.Log("\n" + progress.String() + out.String())

	c, m, h := rep.Conns, rep.Messages, rep.Handler
	for _, k := range []soakKind{kindRaw, kindJSON, kindReliable, kindSignalR} {
		if c.ByKind[k.String()] == 0 {
			t.Errorf("no %s client opened: %v", k, c.ByKind)
		}
	}
	if c.Graceful == 0 || c.Abrupt == 0 || c.Accounted == 0 {
		t.Errorf("connections: %+v", c)
	}
	if m.RESTSent == 0 || m.ClientSent == 0 || m.Delivered == 0 || m.Expected == 0 || m.UserEvents == 0 {
		t.Errorf("messages: %+v", m)
	}
	if m.Lost != 0 {
		t.Errorf("%d of %d owed deliveries lost", m.Lost, m.Expected)
	}
	for k, n := range m.DuplicatedBy {
		if k != kindReliable.String() {
			t.Errorf("%d duplicates to %s clients", n, k)
		}
	}
	if len(c.ServerClosed) > 0 {
		t.Errorf("server ended connections: %v", c.ServerClosed)
	}
	// The handler's failing, slow and down periods were injected and seen by the server:
	// its 500s went to events, and connects were refused for them.
	if h.Failed == 0 || h.Slow == 0 || h.DownPeriods == 0 {
		t.Errorf("handler: %+v", h)
	}
	if len(c.ConnectErrors) == 0 {
		t.Errorf("no connect was refused while the connect handler failed")
	}
	for name, s := range map[string]ServerHealth{"start": rep.Start, "end": rep.End} {
		if s.RSS <= 0 || s.Goroutines <= 0 || s.OpenFDs <= 0 {
			t.Errorf("%s sample %+v", name, s)
		}
	}
	if len(rep.Samples) == 0 {
		t.Error("no periodic sample")
	}
}

// TestSoakHandlerCycle checks the handler's cycle: healthy for the first half, then
// failing, slow and down a sixth each, and again.
func TestSoakHandlerCycle(t *testing.T) {
	h := &soakHandler{cycle: 60 * time.Second}
	for _, c := range []struct {
		at   time.Duration
		want handlerMode
	}{
		{0, modeHealthy}, {29 * time.Second, modeHealthy}, {30 * time.Second, modeFailing}, {39 * time.Second, modeFailing},
		{40 * time.Second, modeSlow}, {49 * time.Second, modeSlow}, {50 * time.Second, modeDown}, {59 * time.Second, modeDown},
		{60 * time.Second, modeHealthy}, {125 * time.Second, modeHealthy}, {155 * time.Second, modeFailing}, {170 * time.Second, modeDown},
	} {
		if got := h.modeAt(c.at); got != c.want {
			t.Errorf("mode at %s = %s, want %s", c.at, got, c.want)
		}
	}
}

// TestSoakWithoutHandlerConfigFails checks that a soak against a server whose hub does not
// send its events to the soak's handler fails instead of passing without handler failures.
func TestSoakWithoutHandlerConfigFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := RunSoak(ctx, SoakOptions{
		ConnString: srv.ConnectionString(), Duration: time.Second, Conns: 5, MinLife: 100 * time.Millisecond, MaxLife: 300 * time.Millisecond,
		Rate: 20, HandlerListener: ln, HandlerCycle: 600 * time.Millisecond, HandlerSlow: 100 * time.Millisecond,
		Settle: 100 * time.Millisecond, SourceIPs: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed || !strings.Contains(strings.Join(rep.Failures, "; "), "got no events") {
		t.Errorf("failed %v, failures %v", rep.Failed, rep.Failures)
	}
	if rep.Conns.Opened == 0 {
		t.Errorf("no connection opened: %+v", rep.Conns)
	}
}

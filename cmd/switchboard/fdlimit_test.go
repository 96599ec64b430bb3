package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// runCLIEnv makes the test binary run the CLI with its arguments instead of the tests,
// so that a test can start the real program in a process of its own.
const runCLIEnv = "SB_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(runCLIEnv) == "1" {
		os.Args = append([]string{"switchboard"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	code := m.Run()
	pgtest.Stop() // the outbox tests' PostgreSQL, if one started it
	os.Exit(code)
}

// TestOutOfDescriptorsKeepsServing runs the server under `ulimit -n 64`, opens 80 idle
// TCP connections to each listener (more than it can hold: accept fails with EMFILE),
// closes them, and then expects both listeners to answer GET /api/health. Before the
// fix, the main listener's front door took EMFILE for fatal, closed the listener, and
// port 8080 refused every request until a restart.
func TestOutOfDescriptorsKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to set the open-file limit")
	}
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, os.Args[0],
		"serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--access-key", "fd-limit-test-key",
		"--set", "signalr.addr=127.0.0.1:0", "--log-level", "error")
	cmd.Env = append(os.Environ(), runCLIEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(out)
	var endpoints []string
	for range 2 { // the Web PubSub and the SignalR connection strings
		line, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("server process: %v", err)
		}
		ep, _, err := auth.ParseConnectionString(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("server printed %q: %v", line, err)
		}
		endpoints = append(endpoints, ep)
	}
	go io.Copy(io.Discard, lines)

	client := &http.Client{Timeout: 2 * time.Second}
	for _, ep := range endpoints {
		host := strings.TrimPrefix(ep, "http://")
		var conns []net.Conn
		for range 80 {
			c, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				t.Fatalf("dial %s: %v", host, err)
			}
			conns = append(conns, c)
		}
		// With every descriptor taken, the server is at the limit: give its accept loop
		// time to meet EMFILE before the connections go.
		time.Sleep(200 * time.Millisecond)
		for _, c := range conns {
			c.Close()
		}
	}
	for _, ep := range endpoints {
		// The server sees the closes and accepts again; a dead listener never answers.
		eventually.Nil(t, 15*time.Second, func() error {
			resp, err := client.Get(ep + "/api/health")
			if err != nil {
				return fmt.Errorf("GET %s/api/health after the connections closed: %w", ep, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s/api/health after the connections closed: %d", ep, resp.StatusCode)
			}
			return nil
		})
	}
	resp, err := client.Get(endpoints[0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `switchboard_listener_accept_errors_total{listener="main"}`) {
		t.Errorf("no accept errors counted for the main listener:\n%s", grepLines(string(body), "accept_errors"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

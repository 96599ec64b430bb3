package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServerSample is the server's resident memory and CPU time at one moment.
type ServerSample struct {
	RSS        int64   // bytes
	CPUSeconds float64 // user + system
	At         time.Time
}

// serverProbe reads the server's RSS and CPU: from /proc when its pid is known (given or
// found by its listen port), else from its /metrics.
type serverProbe struct {
	pid        int
	metricsURL string
	token      string
	source     string
}

func (p *serverProbe) sample(ctx context.Context) (ServerSample, error) {
	if p.pid > 0 {
		return procSample(p.pid)
	}
	if p.metricsURL != "" {
		return p.metricsSample(ctx)
	}
	return ServerSample{}, fmt.Errorf("no way to observe the server")
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func procSample(pid int) (ServerSample, error) {
	s := ServerSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	s.CPUSeconds = (ut + st) / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			s.RSS = kb << 10
		}
	}
	return s, nil
}

func (p *serverProbe) metricsSample(ctx context.Context) (ServerSample, error) {
	s := ServerSample{At: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return s, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("/metrics: %s", resp.Status)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			v, _ := strconv.ParseFloat(strings.TrimSpace(val), 64)
			s.RSS = int64(v)
			found++
		case "process_cpu_seconds_total":
			s.CPUSeconds, _ = strconv.ParseFloat(strings.TrimSpace(val), 64)
			found++
		}
	}
	if found < 2 {
		return s, fmt.Errorf("/metrics has no process_resident_memory_bytes / process_cpu_seconds_total")
	}
	return s, sc.Err()
}

// newServerProbe picks how to observe the server at endpoint.
func newServerProbe(ctx context.Context, endpoint string, pid int, token func(string) string) *serverProbe {
	if pid > 0 {
		return &serverProbe{pid: pid, source: fmt.Sprintf("/proc/%d", pid)}
	}
	u, err := url.Parse(endpoint)
	if err == nil && isLocalHost(u.Hostname()) {
		port, _ := strconv.Atoi(u.Port())
		if port == 0 {
			port = map[string]int{"http": 80, "https": 443}[u.Scheme]
		}
		if pid := pidByListenPort(port); pid > 0 {
			return &serverProbe{pid: pid, source: fmt.Sprintf("/proc/%d (found by port %d)", pid, port)}
		}
	}
	m := strings.TrimRight(endpoint, "/") + "/metrics"
	p := &serverProbe{metricsURL: m, token: token(m), source: m}
	if _, err := p.sample(ctx); err != nil {
		return &serverProbe{source: "none (" + err.Error() + ")"}
	}
	return p
}

func isLocalHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// pidByListenPort finds the process with a listening TCP socket on port: the socket's
// inode from /proc/net/tcp{,6}, then the process whose /proc/<pid>/fd links to it.
func pidByListenPort(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && inodes[l] {
				return pid
			}
		}
	}
	return 0
}

// ServerHealth is what a soak watches for leaks: the server's resident memory,
// goroutines and open files at one moment. A field the probe could not read is 0.
type ServerHealth struct {
	At         time.Time `json:"at"`
	RSS        int64     `json:"rssBytes"`
	Goroutines int64     `json:"goroutines"`
	OpenFDs    int64     `json:"openFds"`
}

// health samples the server's RSS, goroutines and open files: RSS and open files from
// /proc/<pid> when the pid is known, goroutines (which /proc does not show) and whatever
// /proc could not give from the server's /metrics (go_goroutines,
// process_resident_memory_bytes, process_open_fds). It fails only when nothing was read.
func (p *serverProbe) health(ctx context.Context) (ServerHealth, error) {
	h := ServerHealth{At: time.Now()}
	var errs []error
	if p.pid > 0 {
		if s, err := procSample(p.pid); err == nil {
			h.RSS = s.RSS
		} else {
			errs = append(errs, err)
		}
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
			h.OpenFDs = int64(len(fds))
		} else {
			errs = append(errs, err)
		}
	}
	if p.metricsURL != "" {
		m, err := p.readMetrics(ctx, "go_goroutines", "process_resident_memory_bytes", "process_open_fds")
		if err != nil {
			errs = append(errs, err)
		}
		h.Goroutines = int64(m["go_goroutines"])
		if h.RSS == 0 {
			h.RSS = int64(m["process_resident_memory_bytes"])
		}
		if h.OpenFDs == 0 {
			h.OpenFDs = int64(m["process_open_fds"])
		}
	}
	if h.RSS == 0 && h.Goroutines == 0 && h.OpenFDs == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("no way to observe the server"))
		}
		return h, fmt.Errorf("sampling the server: %w", errors.Join(errs...))
	}
	return h, nil
}

// readMetrics reads the named unlabelled metrics from the server's /metrics.
func (p *serverProbe) readMetrics(ctx context.Context, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && want[name] {
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				out[name] = v
			}
		}
	}
	return out, sc.Err()
}

// newHealthProbe is newServerProbe for a soak: it also keeps the /metrics address when the
// pid is known, for the goroutine count.
func newHealthProbe(ctx context.Context, endpoint string, pid int, token func(string) string) *serverProbe {
	p := newServerProbe(ctx, endpoint, pid, token)
	if p.metricsURL == "" {
		p.metricsURL = strings.TrimRight(endpoint, "/") + "/metrics"
		p.token = token(p.metricsURL)
	}
	return p
}

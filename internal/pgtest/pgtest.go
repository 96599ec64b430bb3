// Package pgtest runs a real PostgreSQL 15 for tests (it is imported by tests only): one
// server per test binary, started on first use in a temporary directory as an unprivileged
// user (PostgreSQL refuses to run as root) on a free loopback port, and a fresh database per
// test. Without the binaries the test is skipped, or fails when SWITCHBOARD_REQUIRE_POSTGRES=1
// (make test-go sets it, after installing Debian's postgresql-15).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir holds initdb, pg_ctl and postgres (Debian's postgresql-15).
const BinDir = "/usr/lib/postgresql/15/bin"

// RequireEnv, set to 1, makes a missing PostgreSQL a failure instead of a skip.
const RequireEnv = "SWITCHBOARD_REQUIRE_POSTGRES"

// Server is a running PostgreSQL.
type Server struct {
	Dir  string // data directory and socket directory's parent
	Port int
	uid  uint32
	gid  uint32
}

var (
	once    sync.Once
	shared  *Server
	failure error
	dbSeq   atomic.Int64
)

// Start returns the package's PostgreSQL, starting it on first use; it is stopped by Stop
// (call it from TestMain after m.Run).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("PostgreSQL 15 is required (%s=1) but %s/initdb is missing: make postgres installs it", RequireEnv, BinDir)
		}
		t.Skipf("PostgreSQL 15 is not installed (%s/initdb): make postgres installs it", BinDir)
	}
	once.Do(func() { shared, failure = start() })
	if failure != nil {
		t.Fatalf("pgtest: %v", failure)
	}
	return shared
}

// Stop stops the package's PostgreSQL if it was started, and removes its directory.
func Stop() {
	if shared == nil {
		return
	}
	shared.Stop()
}

// Stop stops the server (immediately) and removes its directory.
func (s *Server) Stop() {
	s.run("pg_ctl", "-D", s.dataDir(), "-m", "immediate", "-w", "stop")
	os.RemoveAll(s.Dir)
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// Restart stops the server (fast: the clients' connections break, and what was committed
// is kept although synchronous_commit is off) and starts it again on the same port; for the
// tests of reconnection.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.StopServer(t)
	s.StartServer(t)
}

// StopServer stops the server without removing its data; StartServer starts it again.
func (s *Server) StopServer(t testing.TB) {
	t.Helper()
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v: %s", err, out)
	}
}

// StartServer starts a server stopped by StopServer.
func (s *Server) StartServer(t testing.TB) {
	t.Helper()
	if err := s.startServer(); err != nil {
		t.Fatal(err)
	}
}

// DSN returns the URL of database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// NewDatabase creates a fresh database for t and returns its DSN.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return s.DSN(name)
}

// Connect opens a connection to dsn that the test's cleanup closes.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func start() (*Server, error) {
	uid, gid, err := unprivileged()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "switchboard-pgtest-")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Dir: dir, uid: uid, gid: gid}
	if out, err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := s.startServer(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) startServer() error {
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1", "-p " + strconv.Itoa(s.Port), "-k " + s.Dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c max_connections=200", "-c shared_buffers=32MB",
	}, " ")
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-o", opts, "-l", filepath.Join(s.Dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
	return nil
}

// run runs one of the server's programs as the unprivileged user.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(BinDir, prog), args...)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	}
	return cmd.CombinedOutput()
}

// unprivileged returns the user the server runs as: the current one unless it is root,
// else postgres (Debian's package creates it) or nobody.
func unprivileged() (uint32, uint32, error) {
	if os.Geteuid() != 0 {
		return uint32(os.Geteuid()), uint32(os.Getegid()), nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return uint32(uid), uint32(gid), nil
		}
	}
	return 0, 0, errors.New("running as root and no postgres or nobody user to run PostgreSQL as")
}

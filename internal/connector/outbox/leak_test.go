package outbox_test

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// A server with a running outbox connector that is stopped leaves no goroutine and no
// connection behind: the locking session, the partitions' workers and the pool all end.
func TestOutboxConnectorStopLeavesNothing(t *testing.T) {
	dsn, db := outboxDB(t, 4)
	cfg := configFile(t, outboxConnector("chat", dsn, `group: "conversation:{key}"`, "ordering: target"))
	insert(t, db, map[string]any{"partition_key": "c", "payload": []byte(`{"n":1}`)})
	runtime.GC()
	goroutines, files := runtime.NumGoroutine(), openFiles(t)
	srv := startServer(t, cfg)
	waitFor(t, "the row is sent", func() bool { return len(history(t, srv.Endpoint(), "conversation:c")) == 1 })
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles(t)
		if g <= goroutines && f <= files {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines and %d open files after the stop, %d and %d before; goroutines:\n%s",
				g, f, goroutines, files, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The database sees none of the connector's connections either (its locks are released).
	waitFor(t, "the database has no session of the connector", func() bool {
		return count(t, db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()") == 0
	})
}

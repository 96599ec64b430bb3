package kafka_test

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

// A server with a running connector that is stopped leaves no goroutine and no connection
// behind: the poll loop, the partitions' workers and the Kafka client all end.
func TestKafkaConnectorStopLeavesNothing(t *testing.T) {
	brokers := startKafka(t, 4, "account-updates")
	cfg := configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb", `group: "customer:{key}"`, "ordering: target"))
	produce(t, producer(t, brokers), record("account-updates", 0, "c-1", `{"n":1}`))
	runtime.GC()
	goroutines, files := runtime.NumGoroutine(), openFiles(t)
	srv := startServer(t, cfg)
	waitHistory(t, srv.Endpoint(), "customer:c-1", 1)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles(t)
		if g <= goroutines && f <= files {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines and %d open files after the stop, %d and %d before; goroutines:\n%s",
				g, f, goroutines, files, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

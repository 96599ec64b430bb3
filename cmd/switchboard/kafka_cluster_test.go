package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/connector/kafka"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// TestKafkaClusterNodeKilled: two Switchboard processes of a cluster (NATS with JetStream,
// which holds the history groups) share one Kafka connector's consumer group with ordering:
// target (each lane keeps several runs in flight). One is SIGKILLed while both send; the other
// takes its partitions after the session timeout, and every record is in the history exactly
// once, in partition order per customer (the records the killed node had sent but not yet
// committed are answered from the idempotency index).
func TestKafkaClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const parts, keys, perKey = 4, 16, 300 // 4,800 records
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "account-updates"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	brokers := kf.ListenAddrs()[0]
	ns := natstest.StartJetStream(t)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 100000, max_age: 1h}
connectors:
  - name: accounts
    type: kafka
    brokers: [%q]
    topics: [account-updates]
    consumer_group: switchboard
    start_offset: earliest
    session_timeout: 2s
    commit_interval: 1s   # long: the kill leaves sent records uncommitted
    hub: accounts
    group: "customer:{key}"
    ordering: target
`, brokers)), 0o600)
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produceRange := func(from, to int) { produceSeqs(t, prod, keys, parts, from, to) }
	total := func(ep string) int { return historyTotal(t, ep, keys) }
	epA, cmdA := startSwitchboard(t, cfgFile, t.TempDir(), "--set", "cluster.nats_url="+ns.URL(), "--set", "server.node_id=a")
	epB, _ := startSwitchboard(t, cfgFile, t.TempDir(), "--set", "cluster.nats_url="+ns.URL(), "--set", "server.node_id=b")
	eventually.True(t, "the two nodes hold 2 partitions each", 30*time.Second, func() bool {
		return kafkaHeld(t, epA) == 2 && kafkaHeld(t, epB) == 2
	})
	const sent = `switchboard_connector_records_total{connector="accounts",result="sent"}`
	produceRange(0, perKey/2)
	eventually.True(t, "both nodes send, and a quarter of the records reach the history", 60*time.Second, func() bool {
		return promValue(t, epA, sent) > 0 && promValue(t, epB, sent) > 0 && total(epB) >= keys*perKey/4
	})
	t.Logf("node a killed after sending %v records, node b %v", promValue(t, epA, sent), promValue(t, epB, sent))
	if err := cmdA.Process.Kill(); err != nil { // SIGKILL: no shutdown, no final commit
		t.Fatal(err)
	}
	cmdA.Wait()
	produceRange(perKey/2, perKey)
	eventually.True(t, "every record reaches the history", 90*time.Second, func() bool { return total(epB) >= keys*perKey })
	t.Logf("%v records sent again by node b were answered from the idempotency index",
		promValue(t, epB, `switchboard_connector_records_total{connector="accounts",result="replayed"}`))
	checkOnceInOrder(t, epB, keys, perKey, "record", "record once in partition order")
}

// kafkaHeld returns how many partitions the node at endpoint holds (/admin/connectors).
func kafkaHeld(t *testing.T, endpoint string) int {
	t.Helper()
	n := 0
	for _, c := range adminConnectors[kafka.Status](t, endpoint) {
		n += len(c.Partitions)
	}
	return n
}

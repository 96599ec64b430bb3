package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/auth"
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
	produceRange := func(from, to int) {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			for k := range keys {
				recs = append(recs, &kgo.Record{Topic: "account-updates", Partition: int32(k % parts),
					Key: []byte(fmt.Sprintf("c%d", k)), Value: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	total := func(ep string) int {
		n := 0
		for k := range keys {
			n += len(groupSeqs(t, ep, fmt.Sprintf("customer:c%d", k)))
		}
		return n
	}
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
	for k := range keys {
		group := fmt.Sprintf("customer:c%d", k)
		got := groupSeqs(t, epB, group)
		if len(got) != perKey {
			t.Errorf("%s has %d records, want %d (duplicates or losses)", group, len(got), perKey)
		}
		for i, s := range got {
			if s != i {
				t.Errorf("%s: record %d has seq %d: not each record once in partition order (%v…)", group, i, s, got[max(0, i-3):min(len(got), i+3)])
				break
			}
		}
	}
}

// kafkaHeld returns how many partitions the node at endpoint holds (/admin/connectors).
func kafkaHeld(t *testing.T, endpoint string) int {
	t.Helper()
	keys, _ := auth.NewKeyRing(crashKey)
	u := endpoint + "/admin/connectors"
	tok, _ := keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Connectors []kafka.Status }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range v.Connectors {
		n += len(c.Partitions)
	}
	return n
}

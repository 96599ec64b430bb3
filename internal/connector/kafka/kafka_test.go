package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// waitHistory waits until group's history at endpoint has n messages and returns them.
func waitHistory(t *testing.T, endpoint, group string, n int) []entry {
	t.Helper()
	var got []entry
	eventually.True(t, fmt.Sprintf("group %s has %d messages in its history", group, n), 30*time.Second, func() bool {
		got = history(t, endpoint, group)
		return len(got) >= n
	})
	return got
}

// The example: a topic of account updates keyed by customer reaches the group named
// after the customer, by the key (customer:{key}) and by a JSON field
// (account:{value.customerId}); a record's switchboard-group header wins over the template.
func TestKafkaMapsByTemplatesAndHeaders(t *testing.T) {
	brokers := startKafka(t, 3, "account-updates")
	srv := startServer(t, configFile(t,
		kafkaConnector("by_key", brokers, "account-updates", "sb-key", `group: "customer:{key}"`)+
			kafkaConnector("by_field", brokers, "account-updates", "sb-field", `group: "account:{value.customerId}"`,
				`idempotency_key: "{topic}/{partition}/{offset}/by_field"`)))
	p := producer(t, brokers)
	produce(t, p,
		record("account-updates", 0, "c-17", `{"type": "AccountListUpdated", "customerId": "c-17", "n": 1}`),
		record("account-updates", 1, "c-18", `{"customerId": "c-18", "n": 2}`, "switchboard-group", "customer:vip"))
	ep := srv.Endpoint()
	if got := waitHistory(t, ep, "customer:c-17", 1); string(got[0].Data) != `{"type":"AccountListUpdated","customerId":"c-17","n":1}` {
		t.Errorf("customer:c-17 got %s", got[0].Data)
	}
	waitHistory(t, ep, "account:c-17", 1)
	waitHistory(t, ep, "account:vip", 0)
	if got := waitHistory(t, ep, "customer:vip", 2); len(got) != 2 { // one per connector: the header wins for both
		t.Errorf("customer:vip has %d messages, want 2", len(got))
	}
	if n := len(history(t, ep, "customer:c-18")); n != 0 {
		t.Errorf("customer:c-18 has %d messages: the header did not win", n)
	}
	var status struct {
		Connectors []struct {
			Name, State string
			Partitions  []struct{ Partition int32 }
			Records     struct{ Sent, Poison int64 }
		}
	}
	if err := json.Unmarshal(adminGet(t, ep, "/admin/connectors"), &status); err != nil {
		t.Fatal(err)
	}
	if len(status.Connectors) != 2 || status.Connectors[0].State != "running" || len(status.Connectors[0].Partitions) != 3 ||
		status.Connectors[0].Records.Sent != 2 {
		t.Errorf("/admin/connectors: %+v", status)
	}
}

// A record that cannot be placed goes to the dead-letter topic with its origin and reason,
// and the records behind it are delivered.
func TestKafkaPoisonGoesToDeadLetterTopic(t *testing.T) {
	brokers := startKafka(t, 1, "account-updates", "account-dlq")
	srv := startServer(t, configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb",
		`group: "account:{value.customerId}"`, "dead_letter_topic: account-dlq")))
	p := producer(t, brokers)
	produce(t, p,
		record("account-updates", 0, "c-1", `{"customerId": `),
		record("account-updates", 0, "c-1", `{"other": 1}`),
		record("account-updates", 0, "c-1", `{"customerId": "c-1", "n": 3}`))
	ep := srv.Endpoint()
	if got := waitHistory(t, ep, "account:c-1", 1); string(got[0].Data) != `{"customerId":"c-1","n":3}` {
		t.Errorf("history %s", got[0].Data)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("account-dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var dead []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(dead) < 2 && ctx.Err() == nil {
		dead = append(dead, cl.PollFetches(ctx).Records()...)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters", len(dead))
	}
	headers := func(r *kgo.Record) map[string]string {
		m := map[string]string{}
		for _, h := range r.Headers {
			m[h.Key] = string(h.Value)
		}
		return m
	}
	for i, want := range []struct{ source, reason string }{{"account-updates/0/0", "template"}, {"account-updates/0/1", "template"}} {
		h := headers(dead[i])
		if h["switchboard-source"] != want.source || h["switchboard-reason"] != want.reason || h["switchboard-connector"] != "accounts" {
			t.Errorf("dead letter %d headers %v, want source %s reason %s", i, h, want.source, want.reason)
		}
	}
	if string(dead[1].Value) != `{"other": 1}` {
		t.Errorf("dead letter value %q", dead[1].Value)
	}
	if got := metric(t, ep, `switchboard_connector_poison_records_total{connector="accounts",reason="template"}`); got != 2 {
		t.Errorf("poison metric %v", got)
	}
}

// seqs returns the "seq" fields of a history's messages.
func seqs(t *testing.T, es []entry) []int {
	t.Helper()
	out := make([]int, len(es))
	for i, e := range es {
		var v struct{ Seq int }
		if err := json.Unmarshal(e.Data, &v); err != nil {
			t.Fatalf("%s: %v", e.Data, err)
		}
		out[i] = v.Seq
	}
	return out
}

// Records of one partition reach their groups in partition order, with partitions
// proceeding side by side; with ordering: target, the records of a partition to different
// groups go concurrently and each group still gets its records in partition order.
func TestKafkaOrderPerPartition(t *testing.T) {
	for _, ordering := range []string{"partition", "target"} {
		t.Run(ordering, func(t *testing.T) {
			const parts, keys, perKey = 4, 8, 60
			brokers := startKafka(t, parts, "account-updates")
			srv := startServer(t, configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb", `group: "customer:{key}"`,
				"max_in_flight: 16", "ordering: "+ordering)))
			p := producer(t, brokers)
			var recs []*kgo.Record
			for i := range perKey {
				for k := range keys {
					recs = append(recs, record("account-updates", int32(k%parts), fmt.Sprintf("c%d", k), fmt.Sprintf(`{"seq":%d}`, i)))
				}
			}
			produce(t, p, recs...)
			for k := range keys {
				got := seqs(t, waitHistory(t, srv.Endpoint(), fmt.Sprintf("customer:c%d", k), perKey))
				if len(got) != perKey || !sort.IntsAreSorted(got) || got[0] != 0 || got[perKey-1] != perKey-1 {
					t.Errorf("customer:c%d: %v", k, got)
				}
			}
		})
	}
}

// Two Switchboard servers in one consumer group share the partitions: the second one's
// arrival and the first one's shutdown move partitions (each revoke commits what was sent),
// and every record is in the history of exactly one of them, once, in order.
func TestKafkaRebalanceBetweenTwoServers(t *testing.T) {
	const parts, keys = 4, 8
	brokers := startKafka(t, parts, "account-updates")
	cfg := configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb", `group: "customer:{key}"`))
	dirA := t.TempDir()
	a := startServer(t, cfg, "server.data_dir="+dirA)
	p := producer(t, brokers)
	seq := 0
	batch := func(n int) {
		var recs []*kgo.Record
		for range n {
			for k := range keys {
				recs = append(recs, record("account-updates", int32(k%parts), fmt.Sprintf("c%d", k), fmt.Sprintf(`{"seq":%d}`, seq)))
			}
			seq++
		}
		produce(t, p, recs...)
	}
	batch(20)
	waitHistory(t, a.Endpoint(), "customer:c0", 20)
	b := startServer(t, cfg)
	assigned := func(endpoint string) int {
		var s struct{ Connectors []struct{ Partitions []any } }
		json.Unmarshal(adminGet(t, endpoint, "/admin/connectors"), &s)
		return len(s.Connectors[0].Partitions)
	}
	eventually.True(t, "the second server gets partitions", 30*time.Second, func() bool {
		return assigned(b.Endpoint()) > 0 && assigned(a.Endpoint())+assigned(b.Endpoint()) == parts
	})
	batch(20)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "every partition moves to the second server", 30*time.Second, func() bool { return assigned(b.Endpoint()) == parts })
	batch(20)
	// The first server's history, read by a server without connectors on its data directory.
	readA := startServer(t, configFile(t, ""), "server.data_dir="+dirA)
	for k := range keys {
		group := fmt.Sprintf("customer:c%d", k)
		var fromB []int
		eventually.True(t, group+" gets its last record on the second server", 30*time.Second, func() bool {
			fromB = seqs(t, history(t, b.Endpoint(), group))
			return len(fromB) > 0 && fromB[len(fromB)-1] == seq-1
		})
		fromA := seqs(t, history(t, readA.Endpoint(), group))
		if !sort.IntsAreSorted(fromA) || !sort.IntsAreSorted(fromB) {
			t.Errorf("%s out of order: first server %v, second %v", group, fromA, fromB)
		}
		all := append(append([]int(nil), fromA...), fromB...)
		sort.Ints(all)
		for i, v := range all {
			if v != i {
				t.Fatalf("%s: the two histories together hold %v, want each of 0..%d once", group, all, seq-1)
			}
		}
		if len(all) != seq {
			t.Errorf("%s: %d records, want %d", group, len(all), seq)
		}
	}
}

// With topic_regex, every topic matching one of the expressions is read.
func TestKafkaTopicRegex(t *testing.T) {
	brokers := startKafka(t, 1, "account-updates", "account-closures", "other")
	srv := startServer(t, configFile(t, strings.Replace(kafkaConnector("accounts", brokers, "account-.*", "sb", `group: "customer:{key}"`,
		"topic_regex: true"), `topics: ["account-.*"]`, `topics: ["^account-.*$"]`, 1)))
	p := producer(t, brokers)
	produce(t, p, record("account-updates", 0, "c-1", `{"seq":0}`), record("account-closures", 0, "c-1", `{"seq":1}`),
		record("other", 0, "c-1", `{"seq":2}`))
	got := seqs(t, waitHistory(t, srv.Endpoint(), "customer:c-1", 2))
	sort.Ints(got)
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("history %v, want the records of the two account-* topics", got)
	}
}

package kafka_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

const testKey = "kafka-connector-test-key"

// startKafka runs an in-process Kafka (kfake) on a loopback port with the topics seeded.
func startKafka(t testing.TB, partitions int32, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// configFile writes a server configuration: hub accounts keeps history for customer:* and
// account:* groups, and the connectors given (YAML list items).
func configFile(t testing.TB, connectors string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	body := `hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 100000, max_age: 1h}
      - {pattern: "account:*", max_messages: 100000, max_age: 1h}
connectors:
` + connectors
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// kafkaConnector is the YAML of a connector reading topic from brokers into hub accounts.
func kafkaConnector(name, brokers, topic, group string, extra ...string) string {
	s := fmt.Sprintf(`  - name: %s
    type: kafka
    brokers: [%q]
    topics: [%q]
    consumer_group: %s
    start_offset: earliest
    session_timeout: 2s
    commit_interval: 100ms
    hub: accounts
`, name, brokers, topic, group)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func startServer(t testing.TB, cfgFile string, settings ...string) *servertest.Server {
	t.Helper()
	return servertest.Start(t, servertest.Options{ConfigFile: cfgFile,
		Settings: append([]string{"auth.access_keys=" + testKey, "history.fsync=none"}, settings...)})
}

// producer returns a client that writes records to the partition they name.
func producer(t testing.TB, brokers string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func record(topic string, partition int32, key, value string, headers ...string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Partition: partition, Key: []byte(key), Value: []byte(value)}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

// entry is one message of a group's history, as the catch-up REST API answers it.
type entry struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

// history reads a group's whole history through the catch-up REST API.
func history(t testing.TB, endpoint, group string) []entry {
	t.Helper()
	keys, _ := auth.NewKeyRing(testKey)
	var out []entry
	var after uint64
	for {
		u := fmt.Sprintf("%s/api/hubs/accounts/groups/%s/messages", strings.TrimRight(endpoint, "/"), url.PathEscape(group))
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(http.MethodGet, u+"?api-version=2024-12-01&limit=1000&after="+strconv.FormatUint(after, 10), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("catch-up read of %s: %d %s", group, resp.StatusCode, b)
		}
		var page struct {
			Messages []entry `json:"messages"`
			NextLink *string `json:"nextLink"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("catch-up read of %s: %v in %s", group, err, b)
		}
		out = append(out, page.Messages...)
		if page.NextLink == nil || len(page.Messages) == 0 {
			return out
		}
		after = page.Messages[len(page.Messages)-1].Offset
	}
}

// adminGet reads an /admin/ path with a server token.
func adminGet(t testing.TB, endpoint, path string) []byte {
	t.Helper()
	keys, _ := auth.NewKeyRing(testKey)
	u := strings.TrimRight(endpoint, "/") + path
	tok, _ := keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// metric returns the value of the /metrics sample whose name and labels start with prefix
// (e.g. `switchboard_connector_records_total{connector="a",result="sent"}`), 0 when absent.
func metric(t testing.TB, endpoint, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(strings.TrimRight(endpoint, "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}

func adminJSON(t testing.TB, endpoint string, v any) {
	t.Helper()
	if err := json.Unmarshal(adminGet(t, endpoint, "/admin/connectors"), v); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, what, 30*time.Second, cond)
}

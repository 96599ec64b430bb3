package kafka_test

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A broker that goes away (unreachable for longer than the session timeout) and comes back
// on the same address is waited out: the connector reports the error, rejoins and delivers
// what was produced after, with nothing delivered twice; Switchboard is not restarted.
func TestKafkaSurvivesBrokerRestart(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir),
			kfake.SeedTopics(1, "account-updates"), kfake.GroupMinSessionTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	kf := start()
	brokers := kf.ListenAddrs()[0]
	srv := startServer(t, configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb", `group: "customer:{key}"`)))
	p := producer(t, brokers)
	produce(t, p, record("account-updates", 0, "c-1", `{"seq":0}`))
	waitHistory(t, srv.Endpoint(), "customer:c-1", 1)

	kf.Close()
	time.Sleep(3 * time.Second) // longer than the 2 s session timeout: the member is gone for the broker too
	var status struct {
		Connectors []struct {
			State     string
			LastError string `json:"last_error"`
		}
	}
	json.Unmarshal(adminGet(t, srv.Endpoint(), "/admin/connectors"), &status)
	if len(status.Connectors) != 1 || status.Connectors[0].LastError == "" {
		t.Errorf("/admin/connectors while the broker was away: %+v, want its error", status.Connectors)
	}
	if got := metric(t, srv.Endpoint(), `switchboard_connector_kafka_errors_total{connector="accounts",kind="connect"}`); got == 0 {
		t.Error("no connect errors counted while the broker was away")
	}

	kf = start()
	defer kf.Close()
	produce(t, p, record("account-updates", 0, "c-1", `{"seq":1}`))
	got := seqs(t, waitHistory(t, srv.Endpoint(), "customer:c-1", 2))
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Errorf("history after the broker came back: %v, want [0 1]", got)
	}
}

// A server whose broker is unreachable when it starts serves all the same, reports the
// error, and delivers once the broker is up.
func TestKafkaStartsWithBrokerUnreachable(t *testing.T) {
	port := freePort(t)
	brokers := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServer(t, configFile(t, kafkaConnector("accounts", brokers, "account-updates", "sb", `group: "customer:{key}"`)))
	var status struct {
		Connectors []struct {
			State     string
			LastError string `json:"last_error"`
		}
	}
	waitFor(t, "the unreachable broker is reported", func() bool {
		adminJSON(t, srv.Endpoint(), &status)
		return status.Connectors[0].LastError != ""
	})
	if status.Connectors[0].State != "starting" {
		t.Errorf("state %q while the broker was never reached", status.Connectors[0].State)
	}
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, "account-updates"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	produce(t, producer(t, brokers), record("account-updates", 0, "c-1", `{"seq":0}`))
	waitHistory(t, srv.Endpoint(), "customer:c-1", 1)
}

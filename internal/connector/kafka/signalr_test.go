package kafka_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

// A connector into the SignalR namespace makes each record an invocation of its method with the
// value as the argument, in the SignalR hub's history (read with the SignalR catch-up API); the
// same topic read into the Web PubSub hub of the same name keeps its own idempotency keys.
func TestKafkaIntoSignalRHub(t *testing.T) {
	brokers := startKafka(t, 1, "account-updates")
	srv := startServer(t, configFile(t,
		kafkaConnector("to_signalr", brokers, "account-updates", "sb-signalr", `group: "customer:{key}"`,
			"namespace: signalr", "invocation: accountUpdated")+
			kafkaConnector("to_wps", brokers, "account-updates", "sb-wps", `group: "customer:{key}"`)))
	produce(t, producer(t, brokers), record("account-updates", 0, "c-1", `{"n": 1}`))
	waitHistory(t, srv.Endpoint(), "customer:c-1", 1)
	keys, _ := auth.NewKeyRing(testKey)
	u := strings.TrimRight(srv.SignalREndpoint(), "/") + "/api/hubs/accounts/groups/customer:c-1/messages"
	tok, _ := keys.MintServerToken(u, time.Hour)
	var page struct {
		Messages []struct {
			Target    string
			Arguments []json.RawMessage
		}
	}
	eventually.True(t, "the invocation is in the SignalR hub's history", 30*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, u+"?api-version=2024-12-01", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("SignalR catch-up read: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Messages) > 0
	})
	m := page.Messages[0]
	if got := fmt.Sprint(m.Target, " ", len(m.Arguments)); got != "accountUpdated 1" || string(m.Arguments[0]) != `{"n":1}` {
		t.Errorf("SignalR history: target %q arguments %s", m.Target, m.Arguments)
	}
}

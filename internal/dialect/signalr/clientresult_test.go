package signalr_test

import (
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// TestClientCompletionResolvesAwaitedResult: a client's Completion reaches the caller that
// waits for its id (core.Conn.AwaitResult) with the raw result; one nobody waits for is
// dropped and counted, and the connection stays open.
func TestClientCompletionResolvesAwaitedResult(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, n := s.connectJSON(t, "chat", "alice", 1, "")
	conn, err := s.hub(t, "chat").Conn(n.ConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	id, answer, cancel, err := conn.AwaitResult()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	c.sendText(`{"type":3,"invocationId":"nobody-waits","result":1}` + rs)
	c.sendText(`{"type":3,"invocationId":"` + id + `","result":{"a":[1,"x"]}}` + rs)
	res := <-answer
	if !res.HasResult || string(res.Result) != `{"a":[1,"x"]}` || res.Error != "" {
		t.Fatalf("answer %+v (%s)", res, res.Result)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "unsolicited_completion"); got != 1 {
		t.Fatalf("unsolicited completions counted %v, want 1", got)
	}
	// The answer reaches the waiter before the session counts it.
	eventually.True(t, "the client result to be counted", 10*time.Second, func() bool {
		return metrictest.Value(t, s.reg, "switchboard_signalr_invocations_total", "result", "client_result") == 1
	})
	if conn.Ended() {
		t.Fatal("an unsolicited completion ended the connection")
	}
}

package core_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// TestDefaultBrokerIsInProcess: a node without Config.Broker delivers a send to its own conns
// before Send returns, and a send whose context has ended is refused, delivered to nobody.
func TestDefaultBrokerIsInProcess(t *testing.T) {
	n, err := core.NewNode(core.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("NewNode without a Broker: %v", err)
	}
	h := testHub(t, n, "chat")
	c := connect(t, h, core.ConnInfo{})

	if err := h.Send(context.Background(), core.Target{Kind: core.ToAll}, &core.Message{Type: core.Text, Data: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if got := c.bodies(); !slices.Equal(got, []string{"hi"}) {
		t.Fatalf("queued on return of Send: %q, want [hi]", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Send(ctx, core.Target{Kind: core.ToAll}, &core.Message{Type: core.Text, Data: []byte("late")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with an ended context: %v, want context.Canceled", err)
	}
	if got := c.bodies(); len(got) != 0 {
		t.Errorf("an ended send was delivered: %q", got)
	}
}

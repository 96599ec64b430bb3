package cluster

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// recorder is a core.Deliverer that keeps what it gets.
type recorder struct {
	mu  sync.Mutex
	ops []*core.Op
}

func (r *recorder) Deliver(op *core.Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []*core.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*core.Op(nil), r.ops...)
}

func join(t *testing.T, url, id string) *Cluster {
	t.Helper()
	c, err := Connect(context.Background(), Config{URLs: []string{url}, NodeID: id,
		HeartbeatInterval: 50 * time.Millisecond, ReconnectWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func attach(t *testing.T, c *Cluster, ns string) (*Broker, *recorder) {
	t.Helper()
	b, err := c.Broker(ns)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	b.Attach(r)
	watchG(b)
	return b, r
}

// watchG subscribes b to the ops to group g of hub h.1 (send's), as core
// does for a node with a member of g.
func watchG(b *Broker) {
	b.WatchGroup("h.1", "g")
	b.AwaitGroup("h.1", "g")
}

func send(i int) *core.Op {
	return &core.Op{Hub: "h.1", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "g"},
		Message: &core.Message{Type: core.Text, Data: []byte(strconv.Itoa(i))}}
}

// TestBrokerDeliversEveryOpInOrderEverywhere: the ops one node publishes
// reach every node of the namespace, the publisher too, in publish order,
// and no node of another namespace.
func TestBrokerDeliversEveryOpInOrderEverywhere(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := join(t, ns.URL(), "a"), join(t, ns.URL(), "b")
	pa, ra := attach(t, a, "wps")
	_, rb := attach(t, b, "wps")
	_, other := attach(t, b, "signalr")
	const n = 500
	for i := range n {
		if err := pa.Publish(context.Background(), send(i)); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]*recorder{"publisher": ra, "other node": rb} {
		eventually.True(t, name+" gets every op", 10*time.Second, func() bool { return len(r.snapshot()) >= n })
		for i, op := range r.snapshot() {
			if got := string(op.Message.Data); got != strconv.Itoa(i) || op.Hub != "h.1" {
				t.Fatalf("%s: op %d is %q of hub %q", name, i, got, op.Hub)
			}
		}
	}
	if got := len(other.snapshot()); got != 0 {
		t.Errorf("the signalr namespace got %d wps ops", got)
	}
}

func TestDuplicateNodeIDRefused(t *testing.T) {
	ns := natstest.Start(t, 0)
	join(t, ns.URL(), "same")
	join(t, ns.URL(), "heartbeat") // an id that is also a subject token of ours
	_, err := Connect(context.Background(), Config{URLs: []string{ns.URL()}, NodeID: "same"})
	if !errors.Is(err, ErrDuplicateNode) {
		t.Fatalf("second node with id same: %v, want ErrDuplicateNode", err)
	}
	// The first node's id is free again once it left.
	c := join(t, ns.URL(), "other")
	c.Close(context.Background())
	join(t, ns.URL(), "other")
}

// TestPublishWhileNATSIsDown: a publish without NATS fails with
// core.ErrBrokerUnavailable; once NATS is back on its port, publishes are
// delivered again without a new Cluster.
func TestPublishWhileNATSIsDown(t *testing.T) {
	ns := natstest.Start(t, 0)
	port := ns.Port()
	a := join(t, ns.URL(), "a")
	pa, ra := attach(t, a, "wps")
	ns.Stop()
	eventually.True(t, "the disconnect is seen", 10*time.Second, func() bool { return !a.Connected() })
	if err := pa.Publish(context.Background(), send(0)); !errors.Is(err, core.ErrBrokerUnavailable) {
		t.Fatalf("publish without NATS: %v, want ErrBrokerUnavailable", err)
	}
	natstest.Start(t, port)
	eventually.True(t, "a publish after NATS restarted is delivered", 20*time.Second, func() bool {
		pa.Publish(context.Background(), send(1))
		return len(ra.snapshot()) > 0
	})
	if got := string(ra.snapshot()[0].Message.Data); got != "1" {
		t.Errorf("first op delivered is %q, want the one sent after the restart", got)
	}
}

func TestHeartbeatsListLiveNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	a := join(t, ns.URL(), "a")
	b := join(t, ns.URL(), "b")
	eventually.True(t, "a sees a and b", 10*time.Second, func() bool {
		s := a.State(context.Background())
		return len(s.Nodes) == 2 && s.Nodes[0].NodeID == "a" && s.Nodes[1].NodeID == "b"
	})
	if s := a.State(context.Background()); s.NATS.Status != "CONNECTED" || s.JetStream.Enabled {
		t.Errorf("state %+v: want CONNECTED, JetStream off", s)
	}
	b.Close(context.Background())
	eventually.True(t, "b expires from a's view", 10*time.Second, func() bool {
		s := a.State(context.Background())
		return len(s.Nodes) == 1 && s.Nodes[0].NodeID == "a"
	})
}

// TestPublishDeliversItsOwnOpsFirst: a node's operations to its own
// recipients are delivered before Publish returns (the publisher is held
// back by its own fan-out, as on a single node), in order, and NATS does not
// send them back to it: it receives none of its own operations.
func TestPublishDeliversItsOwnOpsFirst(t *testing.T) {
	ns := natstest.Start(t, 0)
	a := join(t, ns.URL(), "a")
	pa, r := attach(t, a, "wps")
	watchG(pa)
	for i := range 200 {
		if err := pa.Publish(context.Background(), send(i)); err != nil {
			t.Fatal(err)
		}
		if got := r.snapshot(); len(got) != i+1 || string(got[i].Message.Data) != strconv.Itoa(i) {
			t.Fatalf("after Publish %d returned the node had delivered %d ops", i, len(got))
		}
	}
	// A second node's op is a fence: a's own ops, had NATS echoed them,
	// would have arrived at a before it.
	b := join(t, ns.URL(), "b")
	pb, _ := attach(t, b, "wps")
	if err := pb.Publish(context.Background(), &core.Op{Hub: "h.1", Kind: core.OpSend, Target: core.Target{Kind: core.ToAll}, Message: &core.Message{Type: core.Text, Data: []byte("fence")}}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "a gets b's fence", 10*time.Second, func() bool { return len(r.snapshot()) == 201 })
	if n := testutil.ToFloat64(pa.recv); n != 1 {
		t.Errorf("a received %v operations from NATS, want 1 (b's): its own came back", n)
	}
}

// goneRecorder is a recorder that also hears of nodes that left.
type goneRecorder struct {
	recorder
	mu   sync.Mutex
	gone []string
}

func (g *goneRecorder) NodeGone(id string) {
	g.mu.Lock()
	g.gone = append(g.gone, id)
	g.mu.Unlock()
}

// TestNodeGoneReachesEveryNamespace: when a node stops heartbeating, the
// deliverer of each of this node's namespaces that listens is told, once.
func TestNodeGoneReachesEveryNamespace(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := join(t, ns.URL(), "a"), join(t, ns.URL(), "b")
	var rs []*goneRecorder
	for _, name := range []string{"wps", "signalr"} {
		br, err := a.Broker(name)
		if err != nil {
			t.Fatal(err)
		}
		r := &goneRecorder{}
		br.Attach(r)
		rs = append(rs, r)
	}
	eventually.True(t, "a sees b", 10*time.Second, func() bool { return len(a.liveNodes()) == 2 })
	b.Close(context.Background())
	for _, r := range rs {
		eventually.True(t, "a's namespace hears b went", 10*time.Second, func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.gone) == 1 && r.gone[0] == "b"
		})
	}
}

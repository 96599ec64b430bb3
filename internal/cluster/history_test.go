package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// TestHistorySubjects: a group's subject is five fixed tokens and two
// base64url ones, whatever the group's name holds ('.', '*', '>', spaces),
// so that no group's subject matches another's or a wildcard; a hub's
// subject does not depend on its name's case; the stream of a subject is
// the one of its rule.
func TestHistorySubjects(t *testing.T) {
	h := &History{ns: "wps", policies: history.Policies{
		"chat":     {{Pattern: "room:*", Retention: history.Retention{MaxMessages: 10, MaxAge: time.Hour}}},
		"_default": {{Pattern: "x*", Retention: history.Retention{MaxMessages: 10, MaxAge: time.Hour}}, {Pattern: "*", Retention: history.Retention{MaxMessages: 5, MaxAge: time.Minute}}},
		"Odd.Hub":  {{Pattern: "*", Retention: history.Retention{MaxMessages: 1, MaxAge: time.Hour}}},
	}}
	seen := map[string]string{}
	for _, c := range []struct{ hub, group, stream string }{
		{"chat", "room:a", "SB_HIST_wps_chat-0"},
		{"Chat", "room:a.b", "SB_HIST_wps_chat-0"},
		{"chat", "room:*", "SB_HIST_wps_chat-0"},
		{"chat", "room:>", "SB_HIST_wps_chat-0"},
		{"chat", "room: a b", "SB_HIST_wps_chat-0"},
		{"other", "xy", "SB_HIST_wps__default-0"},
		{"other", "y.z", "SB_HIST_wps__default-1"},
	} {
		subj, stream, ok := h.subject(c.hub, c.group)
		if !ok || stream != c.stream || h.streamName(subj) != stream {
			t.Errorf("%s/%s: subject %q stream %q (from the subject %q), want stream %q", c.hub, c.group, subj, stream, h.streamName(subj), c.stream)
		}
		toks := strings.Split(subj, ".")
		if len(toks) != 6 {
			t.Errorf("%s/%s: subject %q has %d tokens, want 6", c.hub, c.group, subj, len(toks))
		}
		for _, tok := range toks {
			if tok == "" || strings.ContainsAny(tok, "*> \t") {
				t.Errorf("%s/%s: subject %q has token %q", c.hub, c.group, subj, tok)
			}
		}
		key := strings.ToLower(c.hub) + "/" + c.group
		if prev, ok := seen[subj]; ok && prev != key {
			t.Errorf("%s and %s share subject %s", prev, key, subj)
		}
		seen[subj] = key
	}
	if a, _, _ := h.subject("chat", "room:a"); a != mustSubj(h, "CHAT", "room:a") {
		t.Errorf("hub case changes the subject: %s", a)
	}
	if _, _, ok := h.subject("chat", "lobby"); ok {
		t.Error("a group no rule matches has a subject")
	}
	for _, c := range h.streamConfigs() {
		if strings.ContainsAny(c.Name, ". *>") {
			t.Errorf("stream name %q", c.Name)
		}
	}
}

func mustSubj(h *History, hub, group string) string {
	s, _, _ := h.subject(hub, group)
	return s
}

// FuzzStoredPosition: any stored message decodes to a position (an offset
// and an epoch) or an errEnvelope error, never a panic; a stored group
// send's envelope gives back the offset and epoch it was stored with.
func FuzzStoredPosition(f *testing.F) {
	op := &core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "room:a"},
		Message: &core.Message{Type: core.Text, Data: []byte("hi"), Offset: 7, Epoch: "00000000000000ab"}}
	f.Add(encodeOp(nil, "a", op), uint64(7), "00000000000000ab")
	f.Add([]byte{1, 1, 2, 1}, uint64(1), "e")
	f.Fuzz(func(t *testing.T, b []byte, offset uint64, epoch string) {
		off, ep, err := storedPosition(b)
		switch {
		case err != nil && !errors.Is(err, errEnvelope):
			t.Fatalf("error %v is not errEnvelope", err)
		case err == nil && (off == 0 || ep == ""):
			t.Fatalf("position %d %q without an error", off, ep)
		}
		o := &core.Op{Hub: op.Hub, Kind: op.Kind, Target: op.Target,
			Message: &core.Message{Type: core.Text, Data: []byte("hi"), Offset: offset, Epoch: epoch}}
		off, ep, err = storedPosition(encodeOp(nil, "a", o))
		if offset == 0 || epoch == "" {
			if err == nil {
				t.Fatalf("offset %d epoch %q stored: no error", offset, epoch)
			}
			return
		}
		if err != nil || off != offset || ep != epoch {
			t.Fatalf("stored at %d %q, read %d %q %v", offset, epoch, off, ep, err)
		}
	})
}

// gatedDeliverer delivers nothing until gate is closed, then records.
type gatedDeliverer struct {
	gate      chan struct{}
	delivered atomic.Int64
}

func (d *gatedDeliverer) DeliverStored(*core.Op) {
	<-d.gate
	d.delivered.Add(1)
}

type discard struct{}

func (discard) DeliverStored(*core.Op) {}

func startHistory(t *testing.T, c *Cluster, d core.StoredDeliverer) *History {
	t.Helper()
	h, err := c.History("wps", HistoryConfig{Policies: history.Policies{
		"chat": {{Pattern: "*", Retention: history.Retention{MaxMessages: 100, MaxAge: time.Hour}}}}})
	if err != nil {
		t.Fatal(err)
	}
	h.Attach(d)
	t.Cleanup(h.Close)
	deadline := time.Now().Add(20 * time.Second)
	for h.Unavailable() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the history never became ready: %v", h.Unavailable())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h
}

// TestHistoryTopWaitsForThisNodesDelivery: Top returns the group's last
// offset only once this node delivered that message. A message another
// node stored, that this node's consumer has not delivered yet, would
// otherwise be both in a recovering join's replay (up to top) and delivered
// to it live once it joined: a duplicate (TestClusterHistoryRecoveringJoin
// OnAnotherNode saw one now and then before Top waited).
func TestHistoryTopWaitsForThisNodesDelivery(t *testing.T) {
	ns := natstest.StartJetStream(t)
	d := &gatedDeliverer{gate: make(chan struct{})}
	ha := startHistory(t, join(t, ns.URL(), "a"), d)
	hb := startHistory(t, join(t, ns.URL(), "b"), discard{})
	var open sync.Once
	openGate := func() { open.Do(func() { close(d.gate) }) }
	t.Cleanup(openGate) // before the histories close: their consumer may wait at the gate
	op := &core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "g"},
		Message: &core.Message{Type: core.Text, Data: []byte("hi")}}
	if err := hb.Store(context.Background(), op); err != nil || op.Message.Offset != 1 {
		t.Fatalf("store through node b: offset %d, %v", op.Message.Offset, err)
	}
	type top struct {
		offset    uint64
		delivered int64
	}
	tops := make(chan top, 1)
	go func() {
		off, _ := ha.Top("chat", "g")
		tops <- top{off, d.delivered.Load()}
	}()
	select {
	case got := <-tops:
		t.Fatalf("Top returned offset %d before node a delivered it", got.offset)
	case <-time.After(300 * time.Millisecond):
	}
	openGate()
	if got := <-tops; got.offset != 1 || got.delivered != 1 {
		t.Fatalf("Top: offset %d with %d delivered, want 1 once it is delivered", got.offset, got.delivered)
	}
}

// TestHistoryRulesDifferBetweenNodes: a node whose history rules give a
// stream other limits than the stream has (another node's rules) says so
// (errors_total{kind="config_mismatch"} and an error log) and updates the
// stream to its own; a node with the same rules says nothing.
func TestHistoryRulesDifferBetweenNodes(t *testing.T) {
	ns := natstest.StartJetStream(t)
	rules := func(n int) history.Policies {
		return history.Policies{"chat": {{Pattern: "*", Retention: history.Retention{MaxMessages: n, MaxAge: time.Hour}}}}
	}
	start := func(id string, p history.Policies) *History {
		h, err := join(t, ns.URL(), id).History("wps", HistoryConfig{Policies: p})
		if err != nil {
			t.Fatal(err)
		}
		h.Attach(discard{})
		t.Cleanup(h.Close)
		for deadline := time.Now().Add(20 * time.Second); h.Unavailable() != nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s never ready: %v", id, h.Unavailable())
			}
		}
		return h
	}
	mismatches := func(h *History) float64 {
		return testutil.ToFloat64(h.m.errors.WithLabelValues("wps", "config_mismatch"))
	}
	a := start("a", rules(10))
	b := start("b", rules(10))
	if mismatches(a) != 0 || mismatches(b) != 0 {
		t.Fatalf("same rules: mismatches %v and %v", mismatches(a), mismatches(b))
	}
	c := start("c", rules(20))
	if mismatches(c) != 1 {
		t.Errorf("node c with other rules: %v mismatches, want 1", mismatches(c))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, "SB_HIST_wps_chat-0")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxMsgsPerSubject; got != 20 {
		t.Errorf("the stream keeps %d per group, want node c's 20", got)
	}
}

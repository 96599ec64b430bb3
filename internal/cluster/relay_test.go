package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/relay"
)

// fakeSocket is a relay.Socket that records what is done to it.
type fakeSocket struct {
	mu     sync.Mutex
	src    core.Source
	wakes  int
	code   int
	reason string
	closed bool
	byCli  bool
	ka     string // the keep-alive frame set
}

func (s *fakeSocket) SetKeepAlive(frame []byte, binary bool) {
	s.mu.Lock()
	s.ka = fmt.Sprintf("%s/%v", frame, binary)
	s.mu.Unlock()
}

func (s *fakeSocket) keepAlive() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ka
}

func (s *fakeSocket) Bind(src core.Source) { s.mu.Lock(); s.src = src; s.mu.Unlock(); s.Wake() }
func (s *fakeSocket) Wake()                { s.mu.Lock(); s.wakes++; s.mu.Unlock() }
func (s *fakeSocket) ClosedByClient() bool { return s.byCli }
func (s *fakeSocket) Close(code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed, s.code, s.reason = true, code, reason
	}
}

func (s *fakeSocket) closedWith() (bool, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed, s.code, s.reason
}

// drain returns the bodies queued for the socket.
func (s *fakeSocket) drain(l core.Link) []string {
	s.mu.Lock()
	src := s.src
	s.mu.Unlock()
	var out []string
	for _, it := range src.Drain(l, nil) {
		out = append(out, string(src.AppendHead(nil, it.Seq, it.Body))+string(it.Body))
	}
	return out
}

// queue is a core.Source of test items whose heads are "#<seq> ".
type queue struct {
	mu    sync.Mutex
	items []core.Item
}

func (q *queue) push(l core.Link, body string, seq uint64) {
	q.mu.Lock()
	q.items = append(q.items, core.Item{Body: []byte(body), Seq: seq})
	q.mu.Unlock()
	l.Wake()
}

func (q *queue) Drain(_ core.Link, dst []core.Item) []core.Item {
	q.mu.Lock()
	defer q.mu.Unlock()
	dst = append(dst, q.items...)
	q.items = nil
	return dst
}

func (q *queue) AppendHead(dst []byte, seq uint64, _ []byte) []byte {
	if seq == 0 {
		return dst
	}
	return fmt.Appendf(dst, "#%d ", seq)
}

// session is the owner's handler: it keeps the client's messages and the
// socket it was attached to.
type session struct {
	mu     sync.Mutex
	msgs   []string
	closed string
	ends   int
	sock   relay.Socket
	q      *queue
	fail   error // HandleMessage's answer
}

func (s *session) HandleMessage(data []byte, binary bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, fmt.Sprintf("%s/%v", data, binary))
	return s.fail
}

func (s *session) HandleClose(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = reason
	s.ends++
}

func (s *session) snapshot() ([]string, string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...), s.closed, s.ends
}

// owner is an acceptor of sessions named by conn id; token "ok" is valid.
// Its calls of kind "slow" wait until release is closed.
type owner struct {
	mu       sync.Mutex
	sessions map[string]*session
	release  chan struct{}
	waiting  chan struct{} // gets one per "slow" call that started waiting
}

func (o *owner) accept(req relay.Request, sock relay.Socket) (relay.Handler, error) {
	if req.Token != "ok" {
		return nil, &relay.Refusal{Code: 1008, Reason: "connection cannot be recovered"}
	}
	s := &session{sock: sock, q: &queue{}}
	sock.Bind(s.q)
	o.mu.Lock()
	o.sessions[req.ConnID] = s
	o.mu.Unlock()
	return s, nil
}

// answer echoes a call's body for a session it holds.
func (o *owner) answer(req relay.Request, body []byte) relay.Answer {
	if req.Kind == "slow" {
		o.waiting <- struct{}{}
		<-o.release
	}
	if o.get(req.ConnID) == nil {
		return relay.Answer{Status: 404, Body: "No Connection with that ID"}
	}
	return relay.Answer{Status: 200, Body: req.Kind + ":" + string(body)}
}

func (o *owner) get(id string) *session {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sessions[id]
}

// relayPair joins nodes a (owner) and b (client end) and starts their
// relays.
func relayPair(t *testing.T, cfg RelayConfig) (*Relays, *Relays, *owner) {
	t.Helper()
	ns := natstest.Start(t, 0)
	a, b := join(t, ns.URL(), "a"), join(t, ns.URL(), "b")
	o := &owner{sessions: map[string]*session{}, release: make(chan struct{}), waiting: make(chan struct{}, 1)}
	ra, err := a.Relays("wps", o.accept, o.answer, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Relays("wps", func(relay.Request, relay.Socket) (relay.Handler, error) {
		return nil, &relay.Refusal{Code: 1008, Reason: "b holds nothing"}
	}, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ra, rb, o
}

func dial(t *testing.T, rb *Relays, id, token string) (relay.Handler, *fakeSocket, error) {
	t.Helper()
	sock := &fakeSocket{}
	rc, err := rb.Dial(context.Background(), "a", relay.Request{Kind: relay.KindWebPubSubResume, Hub: "chat", Protocol: "p", ConnID: id, Token: token})
	if err != nil {
		return nil, sock, err
	}
	return rc.Attach(sock), sock, nil
}

// TestRelayCarriesMessagesBothWays: the client's messages reach the owner's
// handler in order, the owner's queued messages (with their per-conn heads)
// reach the client's socket in order, so does the protocol keep-alive the
// owner sets, and the owner's close closes the socket with its code and
// reason.
func TestRelayCarriesMessagesBothWays(t *testing.T) {
	ra, rb, o := relayPair(t, RelayConfig{})
	if node, ok := rb.Remote("a_x"); !ok || node != "a" {
		t.Fatalf("Remote(a_x) = %q, %v", node, ok)
	}
	if _, ok := rb.Remote("b_x"); ok {
		t.Fatal("b's own conn is remote")
	}
	h, sock, err := dial(t, rb, "a_1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := h.HandleMessage(fmt.Appendf(nil, "c%d", i), i%2 == 1); err != nil {
			t.Fatal(err)
		}
	}
	s := o.get("a_1")
	var want []string
	for i := range 50 {
		want = append(want, fmt.Sprintf("c%d/%v", i, i%2 == 1))
	}
	eventually.Nil(t, 5*time.Second, func() error {
		if got, _, _ := s.snapshot(); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("owner got %q", got)
		}
		return nil
	})
	for i := range 50 {
		s.q.push(s.sock, fmt.Sprintf("s%d", i), uint64(i+1))
	}
	s.sock.(relay.KeepAliver).SetKeepAlive([]byte(`{"type":6}`), false)
	eventually.Nil(t, 5*time.Second, func() error {
		if ka := sock.keepAlive(); ka != `{"type":6}/false` {
			return fmt.Errorf("keep-alive %q", ka)
		}
		return nil
	})
	s.sock.Close(4001, "done")
	var got []string
	want = want[:0]
	for i := range 50 {
		want = append(want, fmt.Sprintf("#%d s%d", i+1, i))
	}
	eventually.Nil(t, 5*time.Second, func() error {
		got = append(got, sock.drain(nil)...)
		if closed, code, reason := sock.closedWith(); !closed || code != 4001 || reason != "done" {
			return fmt.Errorf("socket closed %v %d %q", closed, code, reason)
		}
		return nil
	})
	got = append(got, sock.drain(nil)...)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("client got %q", got)
	}
	eventually.Nil(t, 5*time.Second, func() error {
		if _, closed, ends := s.snapshot(); ends != 1 || closed != "done" {
			return fmt.Errorf("owner's handler closed %d times, reason %q", ends, closed)
		}
		return nil
	})
	// 50 messages, a keep-alive and a close to the client; 50 messages to the owner.
	if got := metrictest.Value(t, gatherer(rb), "switchboard_cluster_relay_frames_total", "direction", "to_client"); got != 52 {
		t.Errorf("frames to the client counted on b: %v, want 52", got)
	}
	if got := metrictest.Value(t, gatherer(rb), "switchboard_cluster_relay_frames_total", "direction", "to_owner"); got != 50 {
		t.Errorf("frames to the owner counted on b: %v, want 50", got)
	}
	for _, r := range []*Relays{ra, rb} {
		eventually.Nil(t, 5*time.Second, func() error {
			if open := metrictest.Present(t, gatherer(r), "switchboard_cluster_relays", "side", "owner") + metrictest.Present(t, gatherer(r), "switchboard_cluster_relays", "side", "client"); open != 0 {
				return fmt.Errorf("%v relays still counted open on %s", open, r.c.cfg.NodeID)
			}
			return nil
		})
	}
}

// TestRelayRefusals: the owner's refusal comes back as it gave it; a node
// that is not there is ErrOwnerGone; past cluster.max_relays a dial is
// refused with 1013 before asking anyone.
func TestRelayRefusals(t *testing.T) {
	_, rb, _ := relayPair(t, RelayConfig{Max: 1})
	_, _, err := dial(t, rb, "a_1", "forged")
	var ref *relay.Refusal
	if !errors.As(err, &ref) || ref.Code != 1008 || ref.Reason != "connection cannot be recovered" {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := rb.Dial(context.Background(), "zz", relay.Request{Token: "ok"}); !errors.Is(err, relay.ErrOwnerGone) {
		t.Fatalf("node zz: %v", err)
	}
	if _, _, err := dial(t, rb, "a_1", "ok"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dial(t, rb, "a_2", "ok"); !errors.As(err, &ref) || ref.Code != relay.CloseUnavailable || ref.Reason != reasonLimit {
		t.Fatalf("second relay past max 1: %v", err)
	}
	g := gatherer(rb)
	for reason, want := range map[string]float64{"refused": 1, "owner_gone": 1, "limit": 1} {
		if got := metrictest.Value(t, g, "switchboard_cluster_relay_refusals_total", "reason", reason); got != want {
			t.Errorf("refusals{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got := metrictest.Value(t, g, "switchboard_cluster_relays", "side", "client"); got != 1 {
		t.Errorf("relays{side=client} = %v, want 1", got)
	}
}

func gatherer(r *Relays) prometheus.Gatherer { return r.c.cfg.Registerer.(prometheus.Gatherer) }

// TestRelayClientDropDetachesOwner: a client socket that dropped tells the
// owner (not by the client: a session may be recovered); one closed with a
// close frame says so.
func TestRelayClientDropDetachesOwner(t *testing.T) {
	_, rb, o := relayPair(t, RelayConfig{})
	for _, byClient := range []bool{false, true} {
		id := fmt.Sprintf("a_%v", byClient)
		h, sock, err := dial(t, rb, id, "ok")
		if err != nil {
			t.Fatal(err)
		}
		sock.byCli = byClient
		h.HandleClose("gone")
		s := o.get(id)
		eventually.Nil(t, 5*time.Second, func() error {
			if _, closed, ends := s.snapshot(); ends != 1 || closed != "gone" {
				return fmt.Errorf("owner's handler closed %d times, reason %q", ends, closed)
			}
			return nil
		})
		if s.sock.ClosedByClient() != byClient {
			t.Errorf("ClosedByClient = %v, want %v", s.sock.ClosedByClient(), byClient)
		}
	}
}

// TestRelayGapClosesBothEnds: a frame lost on the way (a gap in the
// sequence) closes the relay: the socket with 1013 (the client recovers
// again), and the owner learns the client is gone. Without the check the
// frame after the gap was delivered as if nothing was missing.
func TestRelayGapClosesBothEnds(t *testing.T) {
	ra, rb, o := relayPair(t, RelayConfig{})
	_, sock, err := dial(t, rb, "a_1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	var id string
	rb.mu.Lock()
	for k := range rb.clients {
		id = k
	}
	rb.mu.Unlock()
	// Frame 1 never arrives: 2 comes first.
	if err := ra.c.nc.Publish(toClient(id), appendRelayFrame(nil, &relayFrame{typ: frameText, seq: 2, data: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	eventually.Nil(t, 5*time.Second, func() error {
		if closed, code, reason := sock.closedWith(); !closed || code != relay.CloseUnavailable || reason != reasonLost {
			return fmt.Errorf("socket closed %v %d %q", closed, code, reason)
		}
		return nil
	})
	if got := sock.drain(nil); len(got) != 0 {
		t.Fatalf("the frame after the gap was delivered: %q", got)
	}
	s := o.get("a_1")
	eventually.Nil(t, 5*time.Second, func() error {
		if _, _, ends := s.snapshot(); ends != 1 {
			return errors.New("the owner's handler was not told")
		}
		return nil
	})
}

// TestRelaySlowClientClosed: a client socket that takes nothing while the
// owner writes past RelayConfig.MaxQueueBytes is closed as a slow consumer
// (1008) and what it held is let go; the owner is told it dropped.
func TestRelaySlowClientClosed(t *testing.T) {
	_, rb, o := relayPair(t, RelayConfig{MaxQueueBytes: 64 << 10})
	_, sock, err := dial(t, rb, "a_1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	s := o.get("a_1")
	body := string(bytes.Repeat([]byte("x"), 1000))
	for range 100 { // 100 kB, never drained
		s.q.push(s.sock, body, 0)
	}
	eventually.Nil(t, 5*time.Second, func() error {
		if closed, code, reason := sock.closedWith(); !closed || code != core.CloseSlowConsumer || reason != reasonSlow {
			return fmt.Errorf("socket closed %v %d %q", closed, code, reason)
		}
		return nil
	})
	if got := sock.drain(nil); len(got) != 0 {
		t.Fatalf("a closed slow client still holds %d messages", len(got))
	}
	eventually.Nil(t, 5*time.Second, func() error {
		if _, _, ends := s.snapshot(); ends != 1 {
			return errors.New("the owner's handler was not told")
		}
		if s.sock.ClosedByClient() {
			return errors.New("a slow consumer is reported as a goodbye")
		}
		return nil
	})
}

// TestRelayOwnerGoneClosesClient: when the owner's node leaves the
// heartbeats, the sweep closes its relays' sockets with 1013 (the client
// reconnects and learns the session is gone).
func TestRelayOwnerGoneClosesClient(t *testing.T) {
	ra, rb, _ := relayPair(t, RelayConfig{})
	_, sock, err := dial(t, rb, "a_1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "b to see a's heartbeat", 5*time.Second, func() bool { return slices.Contains(rb.c.liveNodes(), "a") })
	rb.sweepOnce(time.Now().Add(time.Hour)) // a is live: nothing happens
	if closed, _, _ := sock.closedWith(); closed {
		t.Fatal("closed while the owner is live")
	}
	// a leaves abruptly: no close frame, only the missing heartbeats.
	ra.c.nc.Close()
	eventually.Nil(t, 5*time.Second, func() error {
		if closed, code, reason := sock.closedWith(); !closed || code != relay.CloseUnavailable || reason != reasonOwnerGone {
			return fmt.Errorf("socket closed %v %d %q", closed, code, reason)
		}
		return nil
	})
}

func TestRelayEnvelopes(t *testing.T) {
	for _, f := range []relayFrame{
		{typ: frameText, seq: 1, data: []byte(`{"a":1}`)},
		{typ: frameBinary, seq: 300, data: []byte{0, 1, 2}},
		{typ: frameClose, seq: 2, byClient: true, code: 1000, reason: "bye"},
		{typ: frameClose, seq: 3, code: 1008, reason: ""},
		{typ: frameKeepAlive, seq: 4, binary: true, data: []byte{0x92, 6}},
		{typ: frameKeepAlive, seq: 5, data: []byte(`{"type":6}`)},
	} {
		got, err := decodeRelayFrame(appendRelayFrame(nil, &f))
		if err != nil || !reflect.DeepEqual(got, f) {
			t.Errorf("%+v: got %+v, %v", f, got, err)
		}
	}
	a := attachReq{req: relay.Request{Kind: relay.KindWebPubSubResume, Hub: "chat", Protocol: "p", ConnID: "a_1", Token: "t", UserID: "u"}, id: newRelayID(), client: "b"}
	if got, err := decodeAttach(appendAttach(nil, &a)); err != nil || got != a {
		t.Errorf("attach: got %+v, %v", got, err)
	}
	for _, r := range []*relay.Refusal{nil, {Code: 1008, Reason: "no"}} {
		if got, err := decodeAttachReply(appendAttachReply(nil, r)); err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("reply %+v: got %+v, %v", r, got, err)
		}
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     {2, frameText, 1},
		"type":        {relayV1, 9, 1},
		"seq 0":       {relayV1, frameText, 0},
		"close flags": {relayV1, frameClose, 1, 2, 0xe8, 7, 0},
		"close code":  appendString(appendUvarint([]byte{relayV1, frameClose, 1, 0}, 5000), ""),
		"close tail":  append(appendRelayFrame(nil, &relayFrame{typ: frameClose, seq: 1, code: 1000}), 0),
	} {
		if _, err := decodeRelayFrame(b); err == nil {
			t.Errorf("%s: frame %x decoded", name, b)
		}
	}
	bad := a
	bad.id = "../x"
	if _, err := decodeAttach(appendAttach(nil, &bad)); err == nil {
		t.Error("an attach with a relay id that is no subject token decoded")
	}
}

func FuzzDecodeRelay(f *testing.F) {
	f.Add(appendRelayFrame(nil, &relayFrame{typ: frameText, seq: 1, data: []byte("x")}))
	f.Add(appendRelayFrame(nil, &relayFrame{typ: frameClose, seq: 9, byClient: true, code: 1001, reason: "r"}))
	f.Add(appendAttach(nil, &attachReq{req: relay.Request{Kind: "k", Hub: "h"}, id: newRelayID(), client: "b"}))
	f.Add(appendAttachReply(nil, &relay.Refusal{Code: 1008, Reason: "no"}))
	f.Add(appendCall(nil, &relay.Request{Kind: "k", Hub: "h", UserID: "u"}, []byte("{}\x1e")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if fr, err := decodeRelayFrame(b); err == nil {
			if fr2, err := decodeRelayFrame(appendRelayFrame(nil, &fr)); err != nil || !reflect.DeepEqual(fr, fr2) {
				t.Fatalf("frame %+v re-decodes as %+v, %v", fr, fr2, err)
			}
		} else if !errors.Is(err, errRelayEnvelope) && !errors.Is(err, errEnvelope) {
			t.Fatalf("error %v is not an envelope error", err)
		}
		if a, err := decodeAttach(b); err == nil {
			if a2, err := decodeAttach(appendAttach(nil, &a)); err != nil || a2 != a {
				t.Fatalf("attach %+v re-decodes as %+v, %v", a, a2, err)
			}
		}
		if req, body, err := decodeCall(b); err == nil {
			if req2, body2, err := decodeCall(appendCall(nil, &req, body)); err != nil || req2 != req || !bytes.Equal(body, body2) {
				t.Fatalf("call %+v %q re-decodes as %+v %q, %v", req, body, req2, body2, err)
			}
		}
		if r, err := decodeAttachReply(b); err == nil {
			if r2, err := decodeAttachReply(appendAttachReply(nil, r)); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("reply %+v re-decodes as %+v, %v", r, r2, err)
			}
		}
	})
}

// TestRelayClosedBeforeAttach: an owner that closes before the socket is
// attached (the upgrade was still under way) closes the socket at once on
// Attach, and an Abort (the upgrade failed) tells the owner.
func TestRelayClosedBeforeAttach(t *testing.T) {
	_, rb, o := relayPair(t, RelayConfig{})
	rc, err := rb.Dial(context.Background(), "a", relay.Request{ConnID: "a_1", Token: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	s := o.get("a_1")
	s.sock.Close(1000, "early")
	eventually.Nil(t, 5*time.Second, func() error {
		rb.mu.Lock()
		defer rb.mu.Unlock()
		if len(rb.clients) != 0 {
			return errors.New("the relay is still open")
		}
		return nil
	})
	sock := &fakeSocket{}
	rc.Attach(sock)
	if closed, code, reason := sock.closedWith(); !closed || code != 1000 || reason != "early" {
		t.Fatalf("socket closed %v %d %q", closed, code, reason)
	}
	rc, err = rb.Dial(context.Background(), "a", relay.Request{ConnID: "a_2", Token: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	rc.Abort("upgrade failed")
	s = o.get("a_2")
	eventually.Nil(t, 5*time.Second, func() error {
		if _, _, ends := s.snapshot(); ends != 1 {
			return errors.New("the owner's handler was not told")
		}
		return nil
	})
}

// TestRelayCall: a call runs on the owner and comes back with its answer;
// a node that answers no calls is as gone (ErrOwnerGone).
func TestRelayCall(t *testing.T) {
	ra, rb, _ := relayPair(t, RelayConfig{})
	if _, _, err := dial(t, rb, "a_1", "ok"); err != nil {
		t.Fatal(err)
	}
	a, err := rb.Call(context.Background(), "a", relay.Request{Kind: "k", ConnID: "a_1"}, []byte("body"))
	if err != nil || a != (relay.Answer{Status: 200, Body: "k:body"}) {
		t.Fatalf("call: %+v, %v", a, err)
	}
	if a, err := rb.Call(context.Background(), "a", relay.Request{Kind: "k", ConnID: "a_9"}, nil); err != nil || a.Status != 404 {
		t.Fatalf("call for a session a does not hold: %+v, %v", a, err)
	}
	if _, err := ra.Call(context.Background(), "b", relay.Request{Kind: "k"}, nil); !errors.Is(err, relay.ErrOwnerGone) {
		t.Fatalf("call to b, which answers no calls: %v", err)
	}
}

// TestRelayCallsRunSideBySide: a call that waits (a POST whose invocation
// waits for an upstream) does not hold the node's other calls. Answered one
// after the other on the subscription's goroutine, the second call timed
// out behind the first.
func TestRelayCallsRunSideBySide(t *testing.T) {
	_, rb, o := relayPair(t, RelayConfig{})
	if _, _, err := dial(t, rb, "a_1", "ok"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { close(o.release) }) }
	t.Cleanup(release) // before the nodes close, which wait for the call
	slow := make(chan error, 1)
	go func() {
		_, err := rb.Call(context.Background(), "a", relay.Request{Kind: "slow", ConnID: "a_1"}, nil)
		slow <- err
	}()
	<-o.waiting
	a, err := rb.Call(context.Background(), "a", relay.Request{Kind: "k", ConnID: "a_1"}, []byte("x"))
	if err != nil || a.Status != 200 {
		t.Fatalf("a call beside a waiting one: %+v, %v", a, err)
	}
	select {
	case err := <-slow:
		t.Fatalf("the waiting call returned before it was released: %v", err)
	default:
	}
	release()
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRelayToClient: messages of 100 bytes from a session on node a to
// its client's socket on node b through a relay (one NATS server in
// process): ns/op is per message, end to end.
func BenchmarkRelayToClient(b *testing.B) {
	ns := natstest.Start(b, 0)
	connect := func(id string) *Cluster {
		c, err := Connect(context.Background(), Config{URLs: []string{ns.URL()}, NodeID: id})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	o := &owner{sessions: map[string]*session{}, release: make(chan struct{}), waiting: make(chan struct{}, 1)}
	_, err := connect("a").Relays("wps", o.accept, nil, RelayConfig{})
	if err != nil {
		b.Fatal(err)
	}
	rb, err := connect("b").Relays("wps", o.accept, nil, RelayConfig{})
	if err != nil {
		b.Fatal(err)
	}
	rc, err := rb.Dial(context.Background(), "a", relay.Request{ConnID: "a_1", Token: "ok"})
	if err != nil {
		b.Fatal(err)
	}
	sock := &fakeSocket{}
	rc.Attach(sock)
	s := o.get("a_1")
	body := string(bytes.Repeat([]byte("x"), 100))
	b.ReportAllocs()
	b.ResetTimer()
	got := 0
	for i := 0; i < b.N; i++ {
		s.q.push(s.sock, body, 0)
		if i%64 == 63 || i == b.N-1 { // take what arrived, as a socket's writer would
			for got < i+1-256 {
				got += len(sock.drain(nil))
			}
		}
	}
	for got < b.N {
		got += len(sock.drain(nil))
	}
}

package websocket

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestFramesInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	const n = 300
	want := make([]string, n)
	for i := range want {
		body := fmt.Sprintf("message %03d ", i)
		if i%10 == 0 { // large bodies go out uncopied
			body += strings.Repeat("x", 3000)
		}
		want[i] = body
		p.src.push(core.Item{Body: []byte(body), Binary: i%3 == 0})
		if i%7 == 0 {
			p.sock.Wake()
		}
	}
	p.sock.Wake()
	for i := 0; i < n; i++ {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		data, op, err := wsutil.ReadServerData(c.conn)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(data) != want[i] {
			t.Fatalf("message %d = %.20q…, want %.20q…", i, data, want[i])
		}
		if wantOp := map[bool]ws.OpCode{true: ws.OpBinary, false: ws.OpText}[i%3 == 0]; op != wantOp {
			t.Errorf("message %d opcode %v, want %v", i, op, wantOp)
		}
	}
}

func TestSequencedHeads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.prepare = func(p *peer) { p.src.seqs = true }
	c, p := e.dial(t, 0)
	p.src.push(core.Item{Body: []byte("a"), Seq: 7}, core.Item{Body: []byte("ctl")}, core.Item{Body: bytes.Repeat([]byte("b"), 600), Seq: 8})
	p.sock.Wake()
	for _, want := range []string{"#7 a", "ctl", "#8 " + strings.Repeat("b", 600)} {
		_, data := c.readFrame(t)
		if string(data) != want {
			t.Errorf("got %.20q, want %.20q", data, want)
		}
	}
}

func TestCoalescedWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1})
	const n = 100
	e.prepare = func(p *peer) {
		for i := 0; i < n; i++ {
			p.src.push(text(fmt.Sprintf("m%d", i)))
		}
	}
	c, _ := e.dial(t, 0)
	for i := 0; i < n; i++ {
		_, data := c.readFrame(t)
		if want := fmt.Sprintf("m%d", i); string(data) != want {
			t.Fatalf("frame %d = %q, want %q", i, data, want)
		}
	}
	// The writer counts a write after the syscall returns, which may be
	// after the client has read everything.
	eventually.True(t, "the write to be counted", 5*time.Second, func() bool {
		return metrictest.Value(t, e.reg, "switchboard_websocket_frames_out_total") >= n
	})
	writes := metrictest.Value(t, e.reg, "switchboard_websocket_writes_total")
	frames := metrictest.Value(t, e.reg, "switchboard_websocket_frames_out_total")
	if frames != n {
		t.Errorf("frames_out_total = %v, want %d", frames, n)
	}
	if writes != 1 {
		t.Errorf("writes_total = %v for %d frames queued before the wake, want 1 (one writev)", writes, n)
	}
}

func TestPingPong(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	c.write(t, ws.NewPingFrame([]byte("are you there")))
	h, data := c.readFrame(t)
	if h.OpCode != ws.OpPong || string(data) != "are you there" {
		t.Errorf("got %v %q, want pong with the ping's payload", h.OpCode, data)
	}
	c.write(t, ws.NewPingFrame(nil))
	if h, data := c.readFrame(t); h.OpCode != ws.OpPong || len(data) != 0 {
		t.Errorf("got %v %q, want empty pong", h.OpCode, data)
	}
	// An unsolicited pong is ignored; the socket keeps working.
	c.write(t, ws.NewPongFrame([]byte("x")))
	c.write(t, ws.NewTextFrame([]byte("still here")))
	if m := p.handler.next(t); m.data != "still here" {
		t.Errorf("handler got %q", m.data)
	}
}

func TestServerPings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{PingInterval: 20 * time.Millisecond, IdleTimeout: time.Hour})
	c, _ := e.dial(t, 0)
	h, _ := c.readFrame(t)
	if h.OpCode != ws.OpPing {
		t.Errorf("first frame %v, want a ping", h.OpCode)
	}
}

// TestKeepAliveFrame checks that a socket with a keep-alive frame gets it as
// a data frame of the requested opcode from the ping sweep, never a ping.
func TestKeepAliveFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		frame  string
		binary bool
		op     ws.OpCode
	}{
		{"text", "{\"type\":6}\x1e", false, ws.OpText},
		{"binary", "\x02\x91\x06", true, ws.OpBinary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{PingInterval: 20 * time.Millisecond, IdleTimeout: time.Hour})
			e.prepare = func(p *peer) { p.sock.SetKeepAlive([]byte(tc.frame), tc.binary) }
			c, _ := e.dial(t, 0)
			for i := 0; i < 2; i++ { // every sweep, not only the first
				h, data := c.readFrame(t)
				if h.OpCode != tc.op || string(data) != tc.frame {
					t.Fatalf("frame %d: got %v %q, want %v %q", i, h.OpCode, data, tc.op, tc.frame)
				}
			}
		})
	}
}

// TestProtocolErrors checks each violation gets its close code, a close
// frame, the end of the TCP connection and one HandleClose.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 2000)
	tests := []struct {
		name   string
		frames [][]byte
		code   ws.StatusCode
		kind   string // the reason label of protocol_errors_total
	}{
		{"oversized message", [][]byte{rawFrame(true, ws.OpText, []byte(long), true)}, 1009, "too_big"},
		{"oversized binary", [][]byte{rawFrame(true, ws.OpBinary, []byte(long), true)}, 1009, "too_big"},
		{"oversized across fragments", [][]byte{
			rawFrame(false, ws.OpText, []byte(long[:700]), true),
			rawFrame(true, ws.OpContinuation, []byte(long[:700]), true),
		}, 1009, "too_big"},
		{"unmasked frame", [][]byte{rawFrame(true, ws.OpText, []byte("hi"), false)}, 1002, "unmasked"},
		{"unmasked ping", [][]byte{rawFrame(true, ws.OpPing, nil, false)}, 1002, "unmasked"},
		{"invalid UTF-8", [][]byte{rawFrame(true, ws.OpText, []byte("ok \xff\xfe"), true)}, 1007, "bad_utf8"},
		{"invalid UTF-8 across fragments", [][]byte{
			rawFrame(false, ws.OpText, []byte("ok \xe2\x82"), true),
			rawFrame(true, ws.OpContinuation, []byte("x"), true),
		}, 1007, "bad_utf8"},
		{"reserved bits", [][]byte{func() []byte {
			b := rawFrame(true, ws.OpText, []byte("hi"), true)
			b[0] |= 0x40
			return b
		}()}, 1002, "reserved_bits"},
		{"reserved opcode", [][]byte{rawFrame(true, ws.OpCode(0x3), []byte("hi"), true)}, 1002, "reserved_opcode"},
		{"fragmented ping", [][]byte{rawFrame(false, ws.OpPing, []byte("hi"), true)}, 1002, "bad_control_frame"},
		{"long ping", [][]byte{rawFrame(true, ws.OpPing, bytes.Repeat([]byte("p"), 126), true)}, 1002, "bad_control_frame"},
		{"continuation without start", [][]byte{rawFrame(true, ws.OpContinuation, []byte("hi"), true)}, 1002, "orphan_continuation"},
		{"new message inside fragmented one", [][]byte{
			rawFrame(false, ws.OpText, []byte("a"), true),
			rawFrame(true, ws.OpText, []byte("b"), true),
		}, 1002, "interleaved_message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{MaxMessageBytes: 1024})
			c, p := e.dial(t, 0)
			for _, f := range tt.frames {
				c.writeRaw(t, f)
			}
			code, _, before := c.expectClose(t)
			if code != tt.code {
				t.Errorf("close code %d, want %d", code, tt.code)
			}
			if len(before) != 0 {
				t.Errorf("data frames before the close: %q", before)
			}
			c.expectEOF(t)
			p.handler.waitClosed(t, 5*time.Second)
			if got := metrictest.Value(t, e.reg, "switchboard_websocket_protocol_errors_total", "code", fmt.Sprint(int(tt.code)), "reason", tt.kind); got != 1 {
				t.Errorf("protocol_errors_total{code=%d,reason=%s} = %v, want 1", tt.code, tt.kind, got)
			}
			select {
			case m := <-p.handler.msgs:
				t.Errorf("handler got a message %.20q", m.data)
			default:
			}
			eventually.True(t, "the socket to be counted closed", 5*time.Second, func() bool { return e.srv.Sockets() == 0 })
		})
	}
}

func TestMessageAtLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{MaxMessageBytes: 1024})
	c, p := e.dial(t, 0)
	body := strings.Repeat("é", 512) // 1024 bytes
	c.write(t, ws.NewTextFrame([]byte(body)))
	if m := p.handler.next(t); m.data != body || m.binary {
		t.Errorf("message at the limit: got %d bytes binary=%v", len(m.data), m.binary)
	}
}

func TestFragmentedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	// "héllo wörld" split inside multi-byte characters, with a ping between
	// the fragments.
	msg := []byte("héllo wörld")
	c.writeRaw(t, rawFrame(false, ws.OpText, msg[:2], true))
	c.writeRaw(t, rawFrame(true, ws.OpPing, []byte("mid"), true))
	c.writeRaw(t, rawFrame(false, ws.OpContinuation, msg[2:9], true))
	c.writeRaw(t, rawFrame(false, ws.OpContinuation, nil, true))
	c.writeRaw(t, rawFrame(true, ws.OpContinuation, msg[9:], true))
	if m := p.handler.next(t); m.data != string(msg) || m.binary {
		t.Errorf("reassembled %q binary=%v, want %q", m.data, m.binary, msg)
	}
	if h, data := c.readFrame(t); h.OpCode != ws.OpPong || string(data) != "mid" {
		t.Errorf("got %v %q, want the pong to the interleaved ping", h.OpCode, data)
	}
	bin := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100)
	c.writeRaw(t, rawFrame(false, ws.OpBinary, bin[:150], true))
	c.writeRaw(t, rawFrame(true, ws.OpContinuation, bin[150:], true))
	if m := p.handler.next(t); m.data != string(bin) || !m.binary {
		t.Errorf("binary reassembled wrongly (%d bytes, binary=%v)", len(m.data), m.binary)
	}
	if got := metrictest.Value(t, e.reg, "switchboard_websocket_frames_in_total"); got != 2 {
		t.Errorf("frames_in_total = %v, want 2 messages", got)
	}
}

func TestHandlerErrorCloses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		code   ws.StatusCode
		reason string
	}{
		{&CloseError{Code: 1003, Reason: "binary not supported"}, 1003, "binary not supported"},
		{fmt.Errorf("wrapped: %w", &CloseError{Code: 1008, Reason: "policy"}), 1008, "policy"},
		{errors.New("boom"), 1011, "boom"},
	}
	for _, tt := range tests {
		e := newEnv(t, Options{})
		e.prepare = func(p *peer) { p.handler.err = func([]byte) error { return tt.err } }
		c, p := e.dial(t, 0)
		c.write(t, ws.NewTextFrame([]byte("x")))
		code, reason, _ := c.expectClose(t)
		if code != tt.code || reason != tt.reason {
			t.Errorf("%v: close %d %q, want %d %q", tt.err, code, reason, tt.code, tt.reason)
		}
		p.handler.waitClosed(t, 5*time.Second)
	}
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	p.src.push(text("one"), text("two"), core.Item{Body: bytes.Repeat([]byte("3"), 1000)})
	p.sock.Close(4000, "bye now")
	p.sock.Close(1000, "second close is ignored")
	code, reason, before := c.expectClose(t)
	if code != 4000 || reason != "bye now" {
		t.Errorf("close %d %q, want 4000 %q", code, reason, "bye now")
	}
	if want := []string{"one", "two", strings.Repeat("3", 1000)}; fmt.Sprint(before) != fmt.Sprint(want) {
		t.Errorf("frames before the close: %.40q, want %.40q", before, want)
	}
	c.expectEOF(t)
	p.handler.waitClosed(t, 5*time.Second)
	if got := p.handler.closeReasons(); len(got) != 1 {
		t.Errorf("HandleClose called %d times", len(got))
	}
}

func TestCloseReasonTruncated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	long := strings.Repeat("a", 122) + "€€" // the cut falls inside '€'
	p.sock.Close(1008, long)
	code, reason, _ := c.expectClose(t)
	if code != 1008 {
		t.Errorf("code %d", code)
	}
	if len(reason) > 123 || !utf8.ValidString(reason) || !strings.HasPrefix(long, reason) {
		t.Errorf("reason %q (%d bytes): want a valid UTF-8 prefix of at most 123 bytes", reason, len(reason))
	}
}

func TestClientClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload []byte
		echo    ws.StatusCode
	}{
		{ws.NewCloseFrameBody(1000, "done"), 1000},
		{ws.NewCloseFrameBody(4001, "app"), 4001},
		{nil, 1000},
		{ws.NewCloseFrameBody(1012, ""), 1012}, // registered with IANA after RFC 6455
		{ws.NewCloseFrameBody(3000, ""), 3000},
		{ws.NewCloseFrameBody(4999, ""), 4999},
	}
	for _, tt := range tests {
		e := newEnv(t, Options{})
		c, p := e.dial(t, 0)
		c.write(t, ws.NewCloseFrame(tt.payload))
		code, _, _ := c.expectClose(t)
		if code != tt.echo {
			t.Errorf("close %q: echoed %d, want %d", tt.payload, code, tt.echo)
		}
		c.expectEOF(t)
		if r := p.handler.waitClosed(t, 5*time.Second); !strings.Contains(r, "client closed") {
			t.Errorf("HandleClose reason %q", r)
		}
	}
}

// TestBadCloseFrame checks that a close frame RFC 6455 forbids (§5.5.1, §7.4)
// is answered with 1002, not echoed, and counted with its reason.
func TestBadCloseFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		payload []byte
		kind    string
	}{
		{"one-byte payload", []byte{0x03}, "bad_close_payload"},
		{"code 0", ws.NewCloseFrameBody(0, ""), "bad_close_code"},
		{"code 999", ws.NewCloseFrameBody(999, "x"), "bad_close_code"},
		{"code 1004", ws.NewCloseFrameBody(1004, ""), "bad_close_code"},
		{"code 1005", ws.NewCloseFrameBody(1005, ""), "bad_close_code"},
		{"code 1006", ws.NewCloseFrameBody(1006, ""), "bad_close_code"},
		{"code 1015", ws.NewCloseFrameBody(1015, ""), "bad_close_code"},
		{"code 1016", ws.NewCloseFrameBody(1016, ""), "bad_close_code"},
		{"code 2999", ws.NewCloseFrameBody(2999, ""), "bad_close_code"},
		{"code 5000", ws.NewCloseFrameBody(5000, ""), "bad_close_code"},
		{"code 65535", ws.NewCloseFrameBody(65535, ""), "bad_close_code"},
		{"reason not UTF-8", append(ws.NewCloseFrameBody(1000, ""), 0xce, 0xba, 0xe1, 0xbd), "bad_close_reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{})
			c, p := e.dial(t, 0)
			c.write(t, ws.NewCloseFrame(tt.payload))
			code, reason, _ := c.expectClose(t)
			if code != 1002 {
				t.Errorf("close %x answered with %d %q, want 1002", tt.payload, code, reason)
			}
			c.expectEOF(t)
			p.handler.waitClosed(t, 5*time.Second)
			if p.sock.ClosedByClient() {
				t.Error("a bad close frame counts as a client goodbye")
			}
			if got := metrictest.Value(t, e.reg, "switchboard_websocket_protocol_errors_total", "code", "1002", "reason", tt.kind); got != 1 {
				t.Errorf("protocol_errors_total{code=1002,reason=%s} = %v, want 1", tt.kind, got)
			}
		})
	}
}

// TestLengthTopBitSet checks that a 64-bit frame length with its most
// significant bit set (RFC 6455 §5.2) gets a close frame with 1002 before the
// connection ends, not a silently dropped socket.
func TestLengthTopBitSet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	c.writeRaw(t, []byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4})
	code, reason, _ := c.expectClose(t)
	if code != 1002 {
		t.Errorf("close %d %q, want 1002", code, reason)
	}
	c.expectEOF(t)
	p.handler.waitClosed(t, 5*time.Second)
	if got := metrictest.Value(t, e.reg, "switchboard_websocket_protocol_errors_total", "code", "1002", "reason", "bad_length"); got != 1 {
		t.Errorf("protocol_errors_total{code=1002,reason=bad_length} = %v, want 1", got)
	}
}

func TestClientDisconnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	c.conn.Close()
	p.handler.waitClosed(t, 5*time.Second)
	eventually.True(t, "Sockets() to drop", 5*time.Second, func() bool { return e.srv.Sockets() == 0 })
	// Writes after the end are dropped quietly.
	p.src.push(text("late"))
	p.sock.Wake()
	p.sock.Close(1000, "late")
}

func TestBindAfterQueue(t *testing.T) {
	t.Parallel()
	// Frames queued before Bind go out once bound; nothing before.
	e := newEnv(t, Options{})
	e.prepare = func(p *peer) { p.src.push(text("early")) }
	c, _ := e.dial(t, 0)
	if _, data := c.readFrame(t); string(data) != "early" {
		t.Errorf("got %q", data)
	}
}

func TestServerCloseEndsSockets(t *testing.T) {
	e := newEnv(t, Options{})
	var peers []*peer
	for i := 0; i < 3; i++ {
		_, p := e.dial(t, 0)
		peers = append(peers, p)
	}
	e.srv.Close()
	for _, p := range peers {
		p.handler.waitClosed(t, 5*time.Second)
	}
	if n := e.srv.Sockets(); n != 0 {
		t.Errorf("Sockets() = %d after Close", n)
	}
}

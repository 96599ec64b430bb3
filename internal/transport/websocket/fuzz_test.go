package websocket

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
)

func fuzzSeeds() [][]byte {
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	return [][]byte{
		nil,
		rawFrame(true, ws.OpText, []byte("hello"), true),
		rawFrame(true, ws.OpBinary, []byte{0, 1, 2, 3}, true),
		rawFrame(true, ws.OpText, bytes.Repeat([]byte("a"), 300), true),   // 16-bit length
		rawFrame(true, ws.OpText, bytes.Repeat([]byte("b"), 70000), true), // 64-bit length, over the limit
		cat(rawFrame(false, ws.OpText, []byte("he"), true), rawFrame(true, ws.OpPing, []byte("p"), true),
			rawFrame(true, ws.OpContinuation, []byte("llo"), true)),
		cat(rawFrame(true, ws.OpPing, []byte("ping"), true), rawFrame(true, ws.OpPong, nil, true)),
		rawFrame(true, ws.OpClose, ws.NewCloseFrameBody(1000, "bye"), true),
		rawFrame(true, ws.OpClose, []byte{3}, true),                                                // one-byte close payload
		rawFrame(true, ws.OpClose, ws.NewCloseFrameBody(999, ""), true),                            // code below 1000
		rawFrame(true, ws.OpClose, ws.NewCloseFrameBody(1005, ""), true),                           // code that must never be sent
		rawFrame(true, ws.OpClose, ws.NewCloseFrameBody(2999, "x"), true),                          // unassigned code
		rawFrame(true, ws.OpClose, ws.NewCloseFrameBody(5000, ""), true),                           // beyond the ranges
		rawFrame(true, ws.OpClose, append(ws.NewCloseFrameBody(1000, ""), 0xff, 0xfe), true),       // reason not UTF-8
		cat(rawFrame(false, ws.OpText, []byte("he"), true), rawFrame(true, ws.OpClose, nil, true)), // close inside a message
		rawFrame(true, ws.OpText, []byte("unmasked"), false),
		rawFrame(true, ws.OpText, []byte{0xff, 0xfe}, true),
		rawFrame(true, ws.OpContinuation, []byte("orphan"), true),
		rawFrame(false, ws.OpPing, nil, true),
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4},          // 64-bit length with the top bit set
		{0x81, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, // 4 GiB declared
		{0x81, 0xfe, 0x00},            // truncated 16-bit length
		{0x81, 0x85, 1, 2},            // truncated mask
		{0x81, 0x85, 1, 2, 3, 4, 'h'}, // truncated payload
		{0xf1, 0x80, 0, 0, 0, 0},      // rsv bits
		{0x8b, 0x80, 0, 0, 0, 0},      // reserved control opcode
		cat(rawFrame(true, ws.OpText, []byte("a"), true), rawFrame(true, ws.OpText, []byte("b"), true),
			rawFrame(true, ws.OpClose, nil, true), rawFrame(true, ws.OpText, []byte("after close"), true)),
	}
}

// FuzzReadFrames feeds arbitrary client bytes into a Socket's read loop over
// net.Pipe: it must never panic and must always end, with one HandleClose.
func FuzzReadFrames(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	srv, err := NewServer(Options{
		MaxMessageBytes: 64 << 10,
		WriteTimeout:    200 * time.Millisecond, // bounds the wait for a close frame that cannot be written
		PingInterval:    time.Hour,
		Writers:         1,
		Registerer:      prometheus.NewRegistry(),
	})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		server, client := net.Pipe()
		sock := newSocket(srv, server, nil, nil)
		h := newTestHandler()
		sock.Bind(&testSource{})
		sock.Serve(h)
		go io.Copy(io.Discard, client) // whatever the server writes
		go func() {
			// Split the input to exercise partial reads.
			half := len(data) / 2
			client.SetWriteDeadline(time.Now().Add(5 * time.Second))
			client.Write(data[:half])
			client.Write(data[half:])
			client.Close() // EOF for a read loop still waiting
		}()
		select {
		case <-h.closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("read loop did not end for input %q", data)
		}
		if n := len(h.closeReasons()); n != 1 {
			t.Fatalf("HandleClose called %d times", n)
		}
		client.Close()
	})
}

package server_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// BenchmarkHandshake is one client connecting as `switchboard bench connect` does, against
// the whole server (its listener, HTTP server and Web PubSub endpoint): a TCP dial on
// loopback, the upgrade request with its own access token, the wait for the connected
// message, then the client hangs up. Server and client share the process, so ns/op is
// both sides' CPU and the round trip; allocs/op is the server's allocations plus the
// client's dial.
func BenchmarkHandshake(b *testing.B) {
	srv := servertest.Start(b, servertest.Options{})
	host := srv.Addr().String()
	const tokens = 4096 // distinct tokens, each verified in full every time
	reqs := make([][]byte, tokens)
	for i := range reqs {
		tok, err := srv.Keys().MintClientToken(auth.ClientAudience(srv.Endpoint(), "bench"),
			auth.MintOptions{UserID: fmt.Sprintf("user%d", i), Groups: []string{"g1"}})
		if err != nil {
			b.Fatal(err)
		}
		var key [16]byte
		rand.Read(key[:])
		reqs[i] = []byte("GET /client/hubs/bench?access_token=" + url.QueryEscape(tok) + " HTTP/1.1\r\n" +
			"Host: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: json.webpubsub.azure.v1\r\n\r\n")
	}
	connected := []byte(`"event":"connected"`)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c, err := net.Dial("tcp", host)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(reqs[i%tokens]); err != nil {
			b.Fatal(err)
		}
		n := 0
		for !bytes.Contains(buf[:n], connected) {
			m, err := c.Read(buf[n:])
			if err != nil {
				b.Fatalf("after %q: %v", buf[:n], err)
			}
			n += m
		}
		if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101 ")) {
			b.Fatalf("answer %q", buf[:n])
		}
		c.Close()
		i++
	}
}

package bench

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

func TestSignalRScenarios(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	base := Options{ConnString: srv.ConnectionString(), SignalRConnString: srv.SignalRConnectionString(),
		Workers: 0, SourceIPs: -1, Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}

	for _, proto := range []string{"json", "messagepack"} {
		t.Run("fanout-"+proto, func(t *testing.T) {
			o := base
			o.Scenario, o.Protocol, o.Subscribers, o.Publishers, o.Messages, o.Runs = "signalr-fanout", proto, 20, 2, 200, 2
			rep := runOK(t, o)
			for _, r := range rep.Runs {
				// Every subscriber gets every message of both publishers, warm-up included.
				if r.Received != r.Sent*20 || r.Expected != r.Sent*20 || r.Unique != r.Expected {
					t.Errorf("run %d: sent %d, received %d, expected %d, unique %d", r.Run, r.Sent, r.Received, r.Expected, r.Unique)
				}
				if r.Counted != 2*200*20 || r.Latency.Count != r.Counted {
					t.Errorf("run %d: counted %d, latency samples %d, want %d", r.Run, r.Counted, r.Latency.Count, 2*200*20)
				}
				if r.DeliveriesPerSec <= 0 || r.Latency.P50 <= 0 || r.Connections != 20 || r.ConnectLatency.Count != 20 {
					t.Errorf("run %d: figures %+v", r.Run, r)
				}
			}
			if rep.Options.Protocol != proto {
				t.Errorf("report protocol %q, want %q", rep.Options.Protocol, proto)
			}
		})
	}
	t.Run("connect", func(t *testing.T) {
		o := base
		o.ConnString = "" // the SignalR string is enough
		o.Scenario, o.Conns, o.Dialers, o.Runs = "signalr-connect", 60, 8, 2
		rep := runOK(t, o)
		for _, r := range rep.Runs {
			if r.Connections != 60 || r.HandshakesPerSec <= 0 || r.ConnectLatency.Count != 60 {
				t.Errorf("run %d: conns %d handshakes/s %f latency %+v", r.Run, r.Connections, r.HandshakesPerSec, r.ConnectLatency)
			}
		}
	})
	t.Run("connect-messagepack-workers", func(t *testing.T) {
		useTestWorkers(t)
		o := base
		o.Scenario, o.Protocol, o.Conns, o.Dialers, o.Workers, o.SourceIPs = "signalr-connect", "messagepack", 40, 8, 2, 4
		if r := runOK(t, o).Runs[0]; r.Connections != 40 {
			t.Errorf("conns %d", r.Connections)
		}
	})
}

// TestSignalRClientPings holds SignalR clients longer than the server's client timeout: without
// their Pings the server drops them, and the run fails with disconnects.
func TestSignalRClientPings(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"signalr.keep_alive=100ms", "signalr.client_timeout=600ms"}})
	o := Options{SignalRConnString: srv.SignalRConnectionString(), Scenario: "signalr-fanout", Subscribers: 5, Publishers: 1,
		Messages: 15, Rate: 10, Runs: 1, SourceIPs: -1, Drain: 10 * time.Second, pingInterval: 100 * time.Millisecond}
	r := runOK(t, o).Runs[0] // 1.5 s of sends: more than twice the client timeout
	if r.Counted != 15*5 {
		t.Errorf("counted %d, want %d", r.Counted, 15*5)
	}
}

func TestSignalROptionErrors(t *testing.T) {
	cs := servertest.Start(t, servertest.Options{}).SignalRConnectionString()
	for _, o := range []Options{
		{Scenario: "signalr-fanout", Runs: 1},                                         // no SignalR connection string
		{Scenario: "signalr-fanout", SignalRConnString: cs, Protocol: "xml", Runs: 1}, // unknown protocol
		{Scenario: "fanout", ConnString: "Endpoint=http://127.0.0.1:1;AccessKey=k;", Protocol: "json", Runs: 1},
	} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestFirstStringArg(t *testing.T) {
	payload := appendPayload(nil, 7, 42, 1732150000000000000, 64)
	body := appendSignalRBody(nil, func(b []byte) []byte { return append(b, payload...) })
	inv, err := hubproto.ParsePayload("application/json", body)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := hubproto.MessagePack.AppendInvocation(nil, inv.Invocation)
	if err != nil {
		t.Fatal(err)
	}
	mp, _, err := hubproto.MessagePack.Next(framed, 0)
	if err != nil {
		t.Fatal(err)
	}
	withHeaders := hubproto.WithHeaders(inv.Invocation, [][2]string{{"note", `"arguments":["x"]`}})
	cases := []struct {
		name    string
		proto   hubproto.Protocol
		raw     []byte
		want    []byte
		wantErr error
	}{
		{"json", hubproto.JSON, inv.Invocation, payload, nil},
		{"json with headers", hubproto.JSON, withHeaders, payload, nil},
		{"json header value \"arguments\"", hubproto.JSON, []byte(`{"type":1,"headers":{"k":"arguments"},"target":"bench","arguments":["abc"]}`), []byte("abc"), nil},
		{"json spaces", hubproto.JSON, []byte(`{"type":1, "target":"bench", "arguments" : [ "abc" ] }`), []byte("abc"), nil},
		{"json escaped quote", hubproto.JSON, []byte(`{"type":1,"target":"bench","arguments":["a\"b"]}`), []byte(`a\"b`), nil},
		{"json no arguments", hubproto.JSON, []byte(`{"type":1,"target":"bench"}`), nil, errArgumentsAt},
		{"json empty arguments", hubproto.JSON, []byte(`{"type":1,"target":"bench","arguments":[]}`), nil, errNoArgument},
		{"json number argument", hubproto.JSON, []byte(`{"type":1,"target":"bench","arguments":[1]}`), nil, errNoArgument},
		{"json unterminated", hubproto.JSON, []byte(`{"type":1,"target":"bench","arguments":["abc`), nil, errNoArgument},
		{"messagepack", hubproto.MessagePack, mp, payload, nil},
		{"messagepack empty arguments", hubproto.MessagePack, []byte{0x95, 0x01, 0x80, 0xc0, 0xa1, 'b', 0x90}, nil, errNoArgument},
		{"messagepack number argument", hubproto.MessagePack, []byte{0x95, 0x01, 0x80, 0xc0, 0xa1, 'b', 0x91, 0x05}, nil, errNoArgument},
		{"messagepack short", hubproto.MessagePack, []byte{0x93, 0x01, 0x80, 0xc0}, nil, errArgumentsAt},
		{"messagepack truncated", hubproto.MessagePack, mp[:len(mp)-10], nil, errNoArgument},
	}
	for _, tc := range cases {
		got, err := firstStringArg(tc.proto, tc.raw)
		if !errors.Is(err, tc.wantErr) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestHandshakeAnswer(t *testing.T) {
	cases := []struct {
		in      string
		rest    string
		wantErr bool
	}{
		{"{}\x1e", "", false},
		{"{}\x1e{\"type\":6}\x1e", "{\"type\":6}\x1e", false},
		{"{\"error\":\"Requested protocol 'x' is not available.\"}\x1e", "", true},
		{"{}", "", true},
		{"nope\x1e", "", true},
	}
	for _, tc := range cases {
		rest, err := handshakeAnswer([]byte(tc.in))
		if (err != nil) != tc.wantErr || string(rest) != tc.rest {
			t.Errorf("%q: rest %q, err %v", tc.in, rest, err)
		}
		if err != nil && !errors.Is(err, errHandshake) {
			t.Errorf("%q: %v does not wrap errHandshake", tc.in, err)
		}
	}
}

func FuzzFirstStringArg(f *testing.F) {
	f.Add(false, []byte(`{"type":1,"target":"bench","arguments":["p1:2:3:xx"]}`))
	f.Add(false, []byte(`{"arguments"`))
	f.Add(true, []byte{0x95, 0x01, 0x80, 0xc0, 0xa1, 'b', 0x91, 0xa3, 'a', 'b', 'c'})
	f.Add(true, []byte{0x95, 0x01, 0x80, 0xc0, 0xa1})
	f.Fuzz(func(t *testing.T, binary bool, raw []byte) {
		p := hubproto.JSON
		if binary {
			p = hubproto.MessagePack
		}
		arg, err := firstStringArg(p, raw)
		if err == nil && len(arg) > len(raw) {
			t.Fatalf("argument of %d bytes from %d", len(arg), len(raw))
		}
	})
}

// BenchmarkOnHub is the load tool's cost per SignalR delivery: framing, decoding, the payload
// argument and the accounting.
func BenchmarkOnHub(b *testing.B) {
	for _, p := range []hubproto.Protocol{hubproto.JSON, hubproto.MessagePack} {
		b.Run(p.Name(), func(b *testing.B) {
			w := NewWorker()
			c := &client{w: w, proto: p, tracks: map[uint32]*seqTrack{}}
			var frames [][]byte
			for seq := range uint64(1024) {
				body := appendSignalRBody(nil, func(d []byte) []byte { return appendPayload(d, 1, seq, 1732150000000000000, 64) })
				pl, err := hubproto.ParsePayload("application/json", body)
				if err != nil {
					b.Fatal(err)
				}
				f, err := p.AppendInvocation(nil, pl.Invocation)
				if err != nil {
					b.Fatal(err)
				}
				frames = append(frames, f)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%1024 == 0 {
					c.tracks = map[uint32]*seqTrack{}
				}
				c.onHub(frames[i%1024], 1732150000000001000)
			}
			b.StopTimer()
			if len(w.errors) > 0 {
				b.Fatalf("errors %v", w.errors)
			}
		})
	}
}

package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

func sampleRequests(t testing.TB) []*core.Request {
	f, err := odata.Parse("userId eq 'ann' or 'red' in groups")
	if err != nil {
		t.Fatal(err)
	}
	return []*core.Request{
		{Kind: core.ReqConnExists, Hub: "chat", Conn: "n1_abc"},
		{Kind: core.ReqGrant, Hub: "chat", Conn: "n1_abc", Perm: core.PermSend, Group: "room 1"},
		{Kind: core.ReqAddUser, Hub: "a.b", User: "ann", Group: "g"},
		{Kind: core.ReqAddToGroups, Hub: "chat", Groups: []string{"g1", "g2"}, Filter: f},
		{Kind: core.ReqRemoveFromGroups, Hub: "chat", Groups: []string{"g1"}},
		{Kind: core.ReqListGroup, Hub: "chat", Group: "g", After: "n1_abc", Limit: 200},
		{Kind: core.ReqTagUser, Hub: "chat", User: "ann", Group: "g", TTL: 90 * time.Second, Persist: true},
		{Kind: core.ReqDeliver, Hub: "chat", Conn: "n1_abc", Data: []byte("{\"type\":2}\x1e")},
		{Kind: core.ReqInvoke, Hub: "chat", Conn: "n1_abc", ID: "n2.7", Wait: 30 * time.Second, Data: []byte{0x93, 1, 2, 3}},
		{Kind: core.ReqUserConns, Hub: "chat", User: "ann", Limit: 1000},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests(t) {
		b := encodeRequest(nil, r)
		got, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !bytes.Equal(encodeRequest(nil, got), b) || got.Kind != r.Kind || got.Conn != r.Conn || len(got.Groups) != len(r.Groups) ||
			got.TTL != r.TTL || got.Persist != r.Persist || got.After != r.After || got.Limit != r.Limit ||
			got.ID != r.ID || got.Wait != r.Wait || !bytes.Equal(got.Data, r.Data) {
			t.Errorf("round trip of %+v gave %+v", r, got)
		}
	}
}

func TestRequestRefuses(t *testing.T) {
	good := encodeRequest(nil, sampleRequests(t)[1])
	for name, b := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"kind":        append([]byte{requestV1, 0}, good[2:]...),
		"permission":  append([]byte{requestV1, good[1], 7}, good[3:]...),
		"flags":       append([]byte{requestV1, good[1], good[2], 0x80}, good[4:]...),
		"truncated":   good[:len(good)-2],
		"trailing":    append(append([]byte(nil), good...), 0),
		"many groups": {requestV1, byte(core.ReqAddToGroups), 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03},
		"limit":       append(append([]byte(nil), good[:len(good)-4]...), 0xe9, 0x07, 0, 0, 0),
		"wait":        append(append([]byte(nil), good[:len(good)-2]...), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0),
	} {
		if _, err := decodeRequest(b); !errors.Is(err, errRequest) {
			t.Errorf("%s: %v, want errRequest", name, err)
		}
	}
}

func TestReplyCarriesCoreErrors(t *testing.T) {
	for _, r := range []core.Reply{{OK: true}, {}, {Err: fmt.Errorf("%w: x", core.ErrConnNotFound)}, {Err: core.ErrGroupLimit}, {Err: errors.New("disk on fire")},
		{More: true, Members: []core.GroupMember{{ConnID: "a_1", UserID: "ann"}, {ConnID: "b_2"}}},
		{OK: true, Protocol: "messagepack"}, {Result: core.ClientResult{HasResult: true, Result: []byte(`{"v":4}`)}},
		{Result: core.ClientResult{Error: "no handler"}}, {Err: fmt.Errorf("%w (30s)", core.ErrInvocationTimeout)}} {
		got, err := decodeReply(encodeReply(nil, r))
		if err != nil {
			t.Fatal(err)
		}
		if got.OK != r.OK || (got.Err == nil) != (r.Err == nil) || got.More != r.More || fmt.Sprint(got.Members) != fmt.Sprint(r.Members) ||
			got.Protocol != r.Protocol || got.Result.HasResult != r.Result.HasResult || !bytes.Equal(got.Result.Result, r.Result.Result) ||
			got.Result.Error != r.Result.Error {
			t.Errorf("%+v came back as %+v", r, got)
		}
		for _, e := range replyErrors {
			if errors.Is(r.Err, e) != errors.Is(got.Err, e) {
				t.Errorf("%v came back as %v", r.Err, got.Err)
			}
		}
	}
	if _, err := decodeReply([]byte{requestV1, 0, 77, 0, 0, 0, 0, 0}); !errors.Is(err, errRequest) {
		t.Errorf("unknown error code: %v", err)
	}
}

// TestReplyCarriesConnectTimes: a user's conns (core.ReqUserConns) keep
// their connect times to the nanosecond; a truncated list of them is refused.
func TestReplyCarriesConnectTimes(t *testing.T) {
	t1 := time.Date(2026, 12, 7, 11, 0, 0, 123456789, time.UTC)
	r := core.Reply{More: true, Members: []core.GroupMember{{ConnID: "a_1", UserID: "ann", Connected: t1},
		{ConnID: "b_2", UserID: "ann", Connected: t1.Add(-time.Hour)}}}
	b := encodeReply(nil, r)
	got, err := decodeReply(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Members) != 2 || !got.Members[0].Connected.Equal(t1) || !got.Members[1].Connected.Equal(t1.Add(-time.Hour)) ||
		got.Members[1].ConnID != "b_2" || !got.More {
		t.Errorf("%+v came back as %+v", r, got)
	}
	if _, err := decodeReply(b[:len(b)-1]); !errors.Is(err, errRequest) {
		t.Errorf("truncated connect times: %v, want errRequest", err)
	}
}

// TestReplyCarriesConnState: an inspection's reply carries the conn's
// state; a truncated one is refused.
func TestReplyCarriesConnState(t *testing.T) {
	st := &core.ConnState{UserID: "ann", Groups: []string{"a", "b"}, Protocol: "json.webpubsub.azure.v1", Dialect: "json",
		Created: time.Unix(1_700_000_000, 5), QueuedItems: 3, QueuedBytes: 300}
	for _, s := range []*core.ConnState{st, {}} {
		b := encodeReply(nil, core.Reply{OK: true, State: s})
		got, err := decodeReply(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == nil || got.State.UserID != s.UserID || fmt.Sprint(got.State.Groups) != fmt.Sprint(s.Groups) ||
			got.State.Protocol != s.Protocol || got.State.Dialect != s.Dialect || got.State.QueuedItems != s.QueuedItems ||
			got.State.QueuedBytes != s.QueuedBytes || (s.Created.IsZero() != (got.State.Created.UnixNano() == 0)) ||
			(!s.Created.IsZero() && !got.State.Created.Equal(s.Created)) {
			t.Errorf("%+v came back as %+v", s, got.State)
		}
		if _, err := decodeReply(b[:len(b)-1]); !errors.Is(err, errRequest) {
			t.Errorf("truncated state: %v", err)
		}
	}
	if got, _ := decodeReply(encodeReply(nil, core.Reply{OK: true})); got.State != nil {
		t.Error("a reply without state came back with one")
	}
}

// FuzzDecodeRequest: any input decodes or is refused (never a panic), and a
// decoded request encodes to a request that decodes to the same encoding.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests(f) {
		f.Add(encodeRequest(nil, r))
	}
	f.Add(encodeReply(nil, core.Reply{OK: true, Err: core.ErrUserNotFound}))
	for _, r := range samplePresenceReplies() {
		f.Add(encodeReply(nil, r))
	}
	f.Add(encodeReply(nil, core.Reply{OK: true, State: &core.ConnState{UserID: "u", Groups: []string{"g"}, QueuedItems: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeReply(b); err == nil {
			enc := encodeReply(nil, r)
			r2, err := decodeReply(enc)
			if err != nil {
				t.Fatalf("re-decoding %+v: %v", r, err)
			}
			// (an error's text grows by the code's on each crossing,
			// so the presence section is what is compared)
			if fmt.Sprint(r2.Users, presenceOf(r2), r2.States) != fmt.Sprint(r.Users, presenceOf(r), r.States) || r2.More != r.More || r2.Node != r.Node {
				t.Fatalf("%+v re-decodes as %+v", r, r2)
			}
		}
		r, err := decodeRequest(b)
		if err != nil {
			if !errors.Is(err, errRequest) && !errors.Is(err, errEnvelope) {
				t.Fatalf("error %v is not a request error", err)
			}
			return
		}
		enc := encodeRequest(nil, r)
		r2, err := decodeRequest(enc)
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", r, err)
		}
		if !bytes.Equal(encodeRequest(nil, r2), enc) {
			t.Fatalf("%+v re-encodes differently", r)
		}
	})
}

func samplePresenceReplies() []core.Reply {
	return []core.Reply{
		{More: true, Users: []core.UserPresence{{UserID: "ann", Conns: 2}, {UserID: "bob", Conns: 1}}, Node: "n-2"},
		{Presence: &core.Presence{Conns: 7, Users: 3, Groups: 2, UserHashes: []uint64{1, 2, 1 << 63}, GroupHashes: []uint64{5, 9}}},
		{Presence: &core.Presence{}},
		{States: []core.StateItem{{ConnID: "n1_a", UserID: "ann", State: []byte(`{"s":"x"}`), At: 1700000000123}, {ConnID: "n1_b", At: 4}}},
	}
}

// TestReplyCarriesPresence: a users page and a hub's counts, with their
// hashes, cross as they are; a count of hashes past the sketch's size or
// the end is refused.
func TestReplyCarriesPresence(t *testing.T) {
	for _, r := range samplePresenceReplies() {
		got, err := decodeReply(encodeReply(nil, r))
		if err != nil {
			t.Fatal(err)
		}
		if got.More != r.More || got.Node != r.Node || fmt.Sprint(got.Users) != fmt.Sprint(r.Users) || fmt.Sprint(got.States) != fmt.Sprint(r.States) || fmt.Sprint(presenceOf(got)) != fmt.Sprint(presenceOf(r)) {
			t.Errorf("%+v came back as %+v", r, got)
		}
	}
	ok := encodeReply(nil, core.Reply{Presence: &core.Presence{}})
	over := append(ok[:len(ok)-2:len(ok)-2], 0x81, 0x40, 0) // core.SketchSize+1 user hashes
	if _, err := decodeReply(over); !errors.Is(err, errRequest) {
		t.Errorf("too many hashes: %v", err)
	}
	short := append(ok[:len(ok)-2:len(ok)-2], 2, 0, 0, 0, 0, 0, 0, 0, 1, 0)
	if _, err := decodeReply(short); !errors.Is(err, errRequest) {
		t.Errorf("hashes past the end: %v", err)
	}
}

func presenceOf(r core.Reply) core.Presence {
	if r.Presence == nil {
		return core.Presence{}
	}
	return *r.Presence
}

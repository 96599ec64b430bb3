package cluster

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

func sampleOps(t testing.TB) []*core.Op {
	f, err := odata.Parse("userId eq 'ann' and 'red' in groups")
	if err != nil {
		t.Fatal(err)
	}
	return []*core.Op{
		{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToAll},
			Message: &core.Message{Type: core.Text, Data: []byte("hello")}},
		{Hub: "a.b`[c]", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "room 1", Excluded: []string{"n1_x", "n2_y"}, Filter: f},
			SkipConn: "n1_z", Message: &core.Message{Type: core.JSON, Data: []byte(`{"a":1}`), From: core.FromGroup, Group: "room 1",
				FromUserID: "ann", Expires: time.Unix(1700000000, 123), Offset: 42, Epoch: "e1"}},
		{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToUser, Name: "ann"}, Message: &core.Message{Type: core.Binary, Data: []byte{0, 1, 2}}},
		{Hub: "chat", Kind: core.OpClose, Target: core.Target{Kind: core.ToConn, Name: "n2_abc"}, Reason: "bye"},
		{Hub: "chat", Kind: core.OpPresence, Target: core.Target{Kind: core.ToGroup, Name: "room 1"}, User: "ann", Present: true, Origin: "node-1"},
		{Hub: "chat", Kind: core.OpPresence, Target: core.Target{Kind: core.ToGroup, Name: "room 1"}, User: "bob", Origin: "node-1"},
		{Hub: "chat", Kind: core.OpGroupState, Target: core.Target{Kind: core.ToGroup, Name: "room 1"},
			Message: &core.Message{Type: core.GroupState, Group: "room 1", FromUserID: "ann", Data: []byte(`{"s":"x"}`), StateConn: "n1_a", StateAt: 1700000000123}},
		{Hub: "chat", Kind: core.OpGroupState, Target: core.Target{Kind: core.ToGroup, Name: "g"},
			Message: &core.Message{Type: core.GroupState, Group: "g", StateConn: "n1_a", StateAt: 7}},
		{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "g"}, SkipConn: "n1_s",
			Message: &core.Message{Type: core.Text, Data: []byte("frag"), From: core.FromGroup, Group: "g", Stream: &core.Stream{ID: "s-1", Seq: 7}}},
		{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: "g"},
			Message: &core.Message{Type: core.Text, From: core.FromGroup, Group: "g", Stream: &core.Stream{ID: "s-1", Seq: 8, End: true,
				Error: &core.StreamError{Name: "StreamAborted", Message: "gave up", Code: "E42"}}}},
	}
}

// sameOp compares the fields an envelope carries.
func sameOp(a, b *core.Op) bool {
	fa, fb := "", ""
	if a.Target.Filter != nil {
		fa = a.Target.Filter.String()
	}
	if b.Target.Filter != nil {
		fb = b.Target.Filter.String()
	}
	if a.Hub != b.Hub || a.Kind != b.Kind || a.Target.Kind != b.Target.Kind || a.Target.Name != b.Target.Name ||
		!reflect.DeepEqual(a.Target.Excluded, b.Target.Excluded) || fa != fb || a.Reason != b.Reason || a.SkipConn != b.SkipConn ||
		a.User != b.User || a.Present != b.Present || a.Origin != b.Origin {
		return false
	}
	if (a.Message == nil) != (b.Message == nil) {
		return false
	}
	if a.Message == nil {
		return true
	}
	ma, mb := a.Message, b.Message
	return ma.Type == mb.Type && bytes.Equal(ma.Data, mb.Data) && ma.From == mb.From && ma.Group == mb.Group &&
		ma.FromUserID == mb.FromUserID && ma.Expires.Equal(mb.Expires) && ma.Offset == mb.Offset && ma.Epoch == mb.Epoch &&
		ma.StateConn == mb.StateConn && ma.StateAt == mb.StateAt && reflect.DeepEqual(ma.Stream, mb.Stream)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, op := range sampleOps(t) {
		b := encodeOp(nil, "node-1", op)
		got, origin, err := decodeOp(b)
		if err != nil {
			t.Fatalf("%+v: %v", op, err)
		}
		if origin != "node-1" || !sameOp(op, got) {
			t.Errorf("round trip of %+v gave %+v from %q", op, got, origin)
		}
		if got.Target.Filter != nil && !got.Target.Filter.Match(subject{user: "ann", groups: []string{"red"}}) {
			t.Error("the re-parsed filter does not match what the original does")
		}
		// Every strict prefix is refused.
		for i := range len(b) {
			if _, _, err := decodeOp(b[:i]); !errors.Is(err, errEnvelope) {
				t.Fatalf("prefix of %d bytes: %v", i, err)
			}
		}
	}
}

func TestEnvelopeRefuses(t *testing.T) {
	good := encodeOp(nil, "n", sampleOps(t)[0])
	for name, b := range map[string][]byte{
		"version":                  append([]byte{2}, good[1:]...),
		"op kind":                  append([]byte{1, 9}, good[2:]...),
		"target":                   append([]byte{1, 0, 9}, good[3:]...),
		"flags":                    append([]byte{1, 0, 0, 3}, good[4:]...),
		"stream without a message": append([]byte{1, 0, 0, 4}, good[4:]...),
		"trailing":                 append(append([]byte{}, good...), 0),
		"close with a message": func() []byte {
			b := append([]byte{}, good...)
			b[1] = byte(core.OpClose)
			return b
		}(),
		"present flag on a send": func() []byte {
			b := append([]byte{}, good...)
			b[3] |= flagPresent
			return b
		}(),
		"presence to all":       encodeOp(nil, "n", &core.Op{Hub: "h", Kind: core.OpPresence, Target: core.Target{Kind: core.ToAll}, User: "u"}),
		"presence without user": encodeOp(nil, "n", &core.Op{Hub: "h", Kind: core.OpPresence, Target: core.Target{Kind: core.ToGroup, Name: "g"}}),
		// a close of all in hub "h" from "n" whose filter is "eq ".
		"bad filter": {1, 1, 0, 0, 1, 'n', 1, 'h', 0, 0, 0, 3, 'e', 'q', ' ', 0},
	} {
		if _, _, err := decodeOp(b); !errors.Is(err, errEnvelope) {
			t.Errorf("%s: got %v, want errEnvelope", name, err)
		}
	}
}

// subject is an odata.Subject for the filter check.
type subject struct {
	user   string
	groups []string
}

func (s subject) FilterUserID() (string, bool) { return s.user, s.user != "" }
func (s subject) FilterConnectionID() string   { return "c" }
func (s subject) FilterGroups() []string       { return s.groups }
func (s subject) FilterProtocol() string       { return "" }

// FuzzDecodeOp: any input decodes to an op or an errEnvelope error, never a
// panic; an op that decodes encodes to an envelope that decodes to the
// same op.
func FuzzDecodeOp(f *testing.F) {
	for _, op := range sampleOps(f) {
		f.Add(encodeOp(nil, "node-1", op))
	}
	f.Add([]byte{1, 0, 0, 1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		op, origin, err := decodeOp(b)
		if err != nil {
			if !errors.Is(err, errEnvelope) {
				t.Fatalf("error %v is not errEnvelope", err)
			}
			return
		}
		again, origin2, err := decodeOp(encodeOp(nil, origin, op))
		if err != nil {
			t.Fatalf("re-encoded op does not decode: %v", err)
		}
		if origin2 != origin || !sameOp(op, again) {
			t.Fatalf("re-encoded op differs: %+v vs %+v", op, again)
		}
	})
}

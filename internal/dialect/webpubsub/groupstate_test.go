package webpubsub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// TestParseState: objects of string values within the limits are kept,
// compacted with sorted keys; null or absent clears; anything else is
// refused with a reason.
func TestParseState(t *testing.T) {
	for in, want := range map[string]string{
		``: "", `null`: "", `{}`: `{}`, `{ "b":"2", "a":"1" }`: `{"a":"1","b":"2"}`,
	} {
		got, err := parseState(json.RawMessage(in))
		if err != nil || string(got) != want || (want == "") != (got == nil) {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	many := "{"
	for i := range maxStateKeys + 1 {
		if i > 0 {
			many += ","
		}
		many += `"k` + string(rune('a'+i)) + `":"v"`
	}
	many += "}"
	for _, in := range []string{`"x"`, `[]`, `{"a":1}`, `{"a":null}`, `{"":"v"}`, `{"` + strings.Repeat("k", maxStateKey+1) + `":"v"}`,
		`{"k":"` + strings.Repeat("v", maxStateBytes) + `"}`, many} {
		if got, err := parseState(json.RawMessage(in)); err == nil {
			t.Errorf("%.40q: accepted as %q", in, got)
		}
	}
}

// TestStateFrames: the snapshot and update frames carry the items as the
// client's models name them (userId and state absent when empty).
func TestStateFrames(t *testing.T) {
	snap := encodeSnapshot("g", []core.StateItem{{ConnID: "n_a", UserID: "ann", State: []byte(`{"s":"x"}`), At: 5}, {ConnID: "n_b", At: 6}})
	if want := `{"type":"groupStateSnapshot","group":"g","items":[{"connectionId":"n_a","userId":"ann","state":{"s":"x"},"updatedAt":5},{"connectionId":"n_b","updatedAt":6}]}`; string(snap.Data) != want {
		t.Errorf("snapshot %s", snap.Data)
	}
	m := &core.Message{Type: core.GroupState, Group: "g", StateConn: "n_a", StateAt: 9}
	for _, c := range []core.Codec{jsonCodec{}, jsonCodec{reliable: true}} {
		if got := m.Data; got != nil {
			t.Fatal(got)
		}
		if f := c.EncodeMessage(m); string(f.Data) != `{"type":"groupStateUpdate","group":"g","items":[{"connectionId":"n_a","updatedAt":9}]}` {
			t.Errorf("%T update %s", c, f.Data)
		}
	}
	if f := (rawCodec{}).EncodeMessage(m); f.Data != nil {
		t.Errorf("raw codec: %q", f.Data)
	}
}

// FuzzParseState: any state is refused or kept as a valid object within
// the limits.
func FuzzParseState(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `null`, `{"a":1}`, `{"\u00e9":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseState(b)
		if err != nil || got == nil {
			return
		}
		var m map[string]string
		if len(got) > maxStateBytes || json.Unmarshal(got, &m) != nil || len(m) > maxStateKeys {
			t.Fatalf("%q kept as %q", b, got)
		}
	})
}

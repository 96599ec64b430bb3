package connector

import (
	"errors"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

func mustMapping(t testing.TB, c Config) *Mapping {
	t.Helper()
	m, err := NewMapping(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rec(key, value string, headers ...string) *Record {
	r := &Record{Topic: "account-updates", Partition: 3, Offset: 42, Key: []byte(key), Value: []byte(value)}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

// The example: a topic keyed by customer, sent to the group named after the customer,
// by the key or by a field of the JSON value.
func TestMapTemplates(t *testing.T) {
	value := `{"type": "AccountListUpdated", "customerId": "c-17", "n": 12, "ok": true, "items": [{"id": "a1"}]}`
	for _, tc := range []struct {
		cfg       Config
		wantKind  core.TargetKind
		wantName  string
		wantKey   string
		wantValue string
	}{
		{Config{Hub: "accounts", Group: "customer:{key}"}, core.ToGroup, "customer:c-17", "account-updates/3/42", ""},
		{Config{Hub: "accounts", Group: "account:{value.customerId}"}, core.ToGroup, "account:c-17", "account-updates/3/42", ""},
		{Config{Hub: "accounts", User: "{value.items.0.id}-{value.n}-{value.ok}"}, core.ToUser, "a1-12-true", "account-updates/3/42", ""},
		{Config{Hub: "accounts", All: true, IdempotencyKey: "{value.type}:{key}"}, core.ToAll, "", "AccountListUpdated:c-17", ""},
	} {
		s, err := mustMapping(t, tc.cfg).Map(rec("c-17", value))
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		if s.Hub != "accounts" || s.Target.Kind != tc.wantKind || s.Target.Name != tc.wantName || s.Key != tc.wantKey {
			t.Errorf("%+v: got hub %q target %v %q key %q", tc.cfg, s.Hub, s.Target.Kind, s.Target.Name, s.Key)
		}
		if s.Message.Type != core.JSON || strings.Contains(string(s.Message.Data), " ") {
			t.Errorf("%+v: message %v %s, want compacted JSON", tc.cfg, s.Message.Type, s.Message.Data)
		}
		if tc.wantKind == core.ToGroup && (s.Message.From != core.FromGroup || s.Message.Group != tc.wantName) {
			t.Errorf("group message from %v group %q", s.Message.From, s.Message.Group)
		}
	}
}

// Headers win over the configuration.
func TestMapHeadersWin(t *testing.T) {
	m := mustMapping(t, Config{Hub: "accounts", Group: "customer:{key}", Excluded: []string{"x"}, Filter: "userId eq 'a'"})
	s, err := m.Map(rec("c-17", "hello",
		"switchboard-hub", "other", "Switchboard-User", "u1", "content-type", "text/plain; charset=utf-8",
		"switchboard-idempotency-key", "k-1", "switchboard-excluded", "c1, c2", "switchboard-filter", "'g' in groups"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Hub != "other" || s.Target.Kind != core.ToUser || s.Target.Name != "u1" || s.Key != "k-1" {
		t.Errorf("got %+v", s)
	}
	if s.Message.Type != core.Text || string(s.Message.Data) != "hello" {
		t.Errorf("message %v %q", s.Message.Type, s.Message.Data)
	}
	if strings.Join(s.Target.Excluded, "|") != "c1|c2" || s.Target.Filter == nil {
		t.Errorf("excluded %v filter %v", s.Target.Excluded, s.Target.Filter)
	}
	s, err = m.Map(rec("c-17", `{}`, "switchboard-all", "true", "content-type", "application/octet-stream"))
	if err != nil || s.Target.Kind != core.ToAll || s.Message.Type != core.Binary || s.Target.Excluded[0] != "x" {
		t.Errorf("all: %+v, %v", s, err)
	}
	// No target configured: the headers must name it.
	m = mustMapping(t, Config{Hub: "accounts"})
	if s, err := m.Map(rec("", `1`, "switchboard-group", "g1")); err != nil || s.Target.Name != "g1" {
		t.Errorf("group header: %+v, %v", s, err)
	}
}

func TestMapPoison(t *testing.T) {
	byKey := Config{Hub: "accounts", Group: "customer:{key}"}
	byField := Config{Hub: "accounts", Group: "account:{value.customerId}"}
	for _, tc := range []struct {
		name   string
		cfg    Config
		r      *Record
		reason string
	}{
		{"bad JSON", byKey, rec("c", `{"a":`), ReasonData},
		{"bad JSON for a field", byField, rec("c", `nope`), ReasonTemplate},
		{"missing field", byField, rec("c", `{"other":1}`), ReasonTemplate},
		{"object field", byField, rec("c", `{"customerId":{}}`), ReasonTemplate},
		{"no key", byKey, rec("", `{}`), ReasonTemplate},
		{"key not UTF-8", byKey, rec("\xff", `{}`), ReasonTemplate},
		{"no hub", Config{Group: "g"}, rec("c", `{}`), ReasonHub},
		{"invalid hub", byKey, rec("c", `{}`, "switchboard-hub", "9nope"), ReasonHub},
		{"no target", Config{Hub: "h"}, rec("c", `{}`), ReasonTarget},
		{"two targets", byKey, rec("c", `{}`, "switchboard-user", "u", "switchboard-group", "g"), ReasonTarget},
		{"blank group", byKey, rec("c", `{}`, "switchboard-group", "  "), ReasonTarget},
		{"bad all", byKey, rec("c", `{}`, "switchboard-all", "yes please"), ReasonTarget},
		{"content type", byKey, rec("c", `{}`, "content-type", "image/png"), ReasonContentType},
		{"text not UTF-8", byKey, rec("c", "\xff", "content-type", "text/plain"), ReasonData},
		{"bad filter", byKey, rec("c", `{}`, "switchboard-filter", "userId eq"), ReasonHeader},
		{"bad key header", byKey, rec("c", `{}`, "switchboard-idempotency-key", "has space"), ReasonHeader},
	} {
		_, err := mustMapping(t, tc.cfg).Map(tc.r)
		var p *Poison
		if !errors.As(err, &p) || p.Reason != tc.reason {
			t.Errorf("%s: got %v, want a poison record (%s)", tc.name, err, tc.reason)
		}
	}
}

func TestMapLongTopicKeepsKeyValid(t *testing.T) {
	r := rec("c", `{}`)
	r.Topic, r.Offset = strings.Repeat("t", 249), 1<<40
	s, err := mustMapping(t, Config{Hub: "h", All: true}).Map(r)
	if err != nil || len(s.Key) > 255 || !strings.HasPrefix(s.Key, "sha256:") {
		t.Fatalf("key %q, %v", s.Key, err)
	}
	r.Offset++
	s2, _ := mustMapping(t, Config{Hub: "h", All: true}).Map(r)
	if s2.Key == s.Key {
		t.Error("two records share a key")
	}
}

func TestNewMappingErrors(t *testing.T) {
	for _, c := range []Config{
		{Group: "a", User: "b"},
		{Group: "{nope}"},
		{Filter: "x eq"},
		{ContentType: "image/png"},
	} {
		if _, err := NewMapping(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// FuzzMap: any record either maps to a valid send or is a poison record; it never panics.
func FuzzMap(f *testing.F) {
	f.Add("c-17", `{"customerId":"c-17"}`, "switchboard-group", "g")
	f.Add("", `{"a":[1,2,{"b":null}]}`, "content-type", "text/plain")
	f.Add("k", "\xff", "switchboard-filter", "userId eq 'x'")
	maps := []*Mapping{
		mustMapping(f, Config{Hub: "accounts", Group: "account:{value.customerId}"}),
		mustMapping(f, Config{Hub: "h{value.a.0}", User: "{key}", IdempotencyKey: "{value.a.2.b}"}),
		mustMapping(f, Config{Hub: "accounts"}),
		mustMapping(f, Config{Hub: "accounts", All: true, Invocation: "{value.m}"}),
	}
	f.Fuzz(func(t *testing.T, key, value, hk, hv string) {
		for _, m := range maps {
			s, err := m.Map(rec(key, value, hk, hv))
			if err != nil {
				var p *Poison
				if !errors.As(err, &p) || p.Reason == "" {
					t.Fatalf("error %v is not a poison record", err)
				}
				continue
			}
			if !core.ValidHubName(s.Hub) || (s.Message.Type != core.JSON && s.Message.Type != core.Text && s.Message.Type != core.Binary) || (s.Target.Kind == core.ToGroup && !core.ValidGroupName(s.Target.Name)) {
				t.Fatalf("invalid send %+v", s)
			}
		}
	})
}

// With an invocation template, a record becomes the SignalR invocation a REST send with
// {"target", "arguments": [value]} makes.
func TestMapSignalRInvocation(t *testing.T) {
	m := mustMapping(t, Config{Hub: "accounts", User: "{key}", Invocation: "{value.type}"})
	s, err := m.Map(rec("c-17", `{"type": "accountUpdated", "n": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Message.Type != core.JSON || string(s.Message.Data) != `{"type":1,"target":"accountUpdated","arguments":[{"type":"accountUpdated","n":1}]}` {
		t.Errorf("invocation %v %s", s.Message.Type, s.Message.Data)
	}
	s, err = mustMapping(t, Config{Hub: "accounts", Group: "g", Invocation: "say"}).Map(rec("", "hi \"there\"", "content-type", "text/plain"))
	if err != nil || string(s.Message.Data) != `{"type":1,"target":"say","arguments":["hi \"there\""]}` || s.Message.From != core.FromGroup {
		t.Errorf("text argument: %s %v", s.Message.Data, err)
	}
	_, err = mustMapping(t, Config{Hub: "accounts", All: true, Invocation: "say"}).Map(rec("", "\x00\x01", "content-type", "application/octet-stream"))
	var p *Poison
	if !errors.As(err, &p) || p.Reason != ReasonContentType {
		t.Errorf("binary argument: %v", err)
	}
	_, err = mustMapping(t, Config{Hub: "accounts", All: true, Invocation: "say"}).Map(rec("", `1`, "switchboard-filter", "userId eq 'a'"))
	if !errors.As(err, &p) || p.Reason != ReasonHeader {
		t.Errorf("filter header into a SignalR hub: %v", err)
	}
}

// BenchmarkMap places a record of the connector bench's shape (a group named by the key, text
// values): the mapping runs for every record a connector reads.
func BenchmarkMap(b *testing.B) {
	m, err := NewMapping(Config{Hub: "bench", Group: "{key}", ContentType: "text/plain"})
	if err != nil {
		b.Fatal(err)
	}
	r := &Record{Topic: "bench-connector", Partition: 3, Offset: 123456, Key: []byte("conn17"), Value: make([]byte, 64)}
	b.ReportAllocs()
	for b.Loop() {
		s, err := m.Map(r)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.TargetHash() // what a Kafka partition's dispatcher does with it (its lane)
	}
}

// FuzzSameTarget checks that SameTarget and TargetHash, which make no key, agree with
// TargetKey: equal keys, equal answers; the hash is FNV-1a of the key.
func FuzzSameTarget(f *testing.F) {
	f.Add("Accounts", "accounts", uint8(2), uint8(2), "customer:1", "customer:1")
	f.Add("chat", "chat", uint8(2), uint8(3), "a", "a")
	f.Add("chat", "chat", uint8(2), uint8(2), "a", "b")
	f.Add("hub_A", "HUB_a", uint8(1), uint8(1), "", "")
	f.Fuzz(func(t *testing.T, hubA, hubB string, kindA, kindB uint8, nameA, nameB string) {
		kinds := []core.TargetKind{core.ToAll, core.ToGroup, core.ToUser, core.ToConn}
		a := Send{Hub: hubA, Target: core.Target{Kind: kinds[int(kindA)%len(kinds)], Name: nameA}}
		b := Send{Hub: hubB, Target: core.Target{Kind: kinds[int(kindB)%len(kinds)], Name: nameB}}
		if !core.ValidHubName(hubA) || !core.ValidHubName(hubB) {
			return // mapped sends have valid hub names (ASCII), as TargetKey's lower-casing assumes
		}
		if got, want := a.SameTarget(b), a.TargetKey() == b.TargetKey(); got != want {
			t.Fatalf("SameTarget(%q, %q) = %v, keys equal: %v", a.TargetKey(), b.TargetKey(), got, want)
		}
		h := fnv.New32a()
		h.Write([]byte(a.TargetKey()))
		if got, want := a.TargetHash(), h.Sum32(); got != want {
			t.Fatalf("TargetHash of %q = %d, FNV-1a of the key %d", a.TargetKey(), got, want)
		}
	})
}

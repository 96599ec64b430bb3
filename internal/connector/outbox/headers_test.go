package outbox

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// FuzzRecordHeaders: whatever the headers column holds (PostgreSQL guarantees a JSON object
// there, but any text is tried), turning a row into headers never panics, and the columns
// come after the object's headers, so the mapping (last header wins) takes the column.
func FuzzRecordHeaders(f *testing.F) {
	f.Add(`{"switchboard-group":"a","n":1,"b":true}`, "hub", "group", "g")
	f.Add(`{"switchboard-hub":"other"}`, "hub", "all", "")
	f.Add(`not json`, "", "user", "u")
	f.Add(`{"x":{"nested":[1,2]}}`, "h", "connection", "c")
	f.Fuzz(func(t *testing.T, headers, hub, kind, target string) {
		hs := recordHeaders(&headers, &hub, &kind, &target, nil, nil, []string{"a", "b"})
		last := ""
		for _, h := range hs {
			if strings.EqualFold(h.Key, connector.HeaderHub) {
				last = string(h.Value)
			}
		}
		if last != hub {
			t.Errorf("hub column %q lost to %q in %v", hub, last, hs)
		}
		if hs[len(hs)-1].Key != connector.HeaderExcluded || string(hs[len(hs)-1].Value) != "a,b" {
			t.Errorf("excluded column not last: %v", hs)
		}
	})
}

// TestRecordHeadersOfTheObject: string values are taken as they are, other JSON values as
// their JSON text, in key order.
func TestRecordHeadersOfTheObject(t *testing.T) {
	obj := `{"switchboard-filter":"userId eq 'a'","n":12,"b":true}`
	hs := recordHeaders(&obj, nil, nil, nil, nil, nil, nil)
	got, _ := json.Marshal(hs)
	want := `[{"Key":"b","Value":"dHJ1ZQ=="},{"Key":"n","Value":"MTI="},{"Key":"switchboard-filter","Value":"dXNlcklkIGVxICdhJw=="}]`
	if string(got) != want {
		t.Errorf("headers %s, want %s", got, want)
	}
}

package config

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Sample returns a commented configuration file with every key at its default: each key
// under its section, with its description and environment variable; keys without a default
// are commented out. Loaded as it is, it gives Default(). The settings that are lists of
// objects (hubs, SignalR upstreams) follow as commented examples.
func Sample() []byte {
	var b bytes.Buffer
	b.WriteString("# Switchboard configuration: every key at its default. Each key can also be set with\n" +
		"# its environment variable or with --set section.key=value (they win over this file).\n")
	var open []string // the sections of the previous key
	for _, s := range Settings() {
		path := strings.Split(s.Key, ".")
		sections, key := path[:len(path)-1], path[len(path)-1]
		common := 0
		for common < len(open) && common < len(sections) && open[common] == sections[common] {
			common++
		}
		for i := common; i < len(sections); i++ {
			if i == 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "%s%s:\n", indent(i), sections[i])
		}
		open = sections
		in := indent(len(sections))
		fmt.Fprintf(&b, "%s# %s (%s, %s)\n", in, s.Doc, s.Type, s.Env)
		if s.Default == "" {
			fmt.Fprintf(&b, "%s# %s:\n", in, key)
			continue
		}
		fmt.Fprintf(&b, "%s%s: %s\n", in, key, yamlValue(s.Type, s.Default))
	}
	b.WriteString(sampleLists)
	return b.Bytes()
}

func indent(depth int) string { return strings.Repeat("  ", depth) }

// yamlValue writes a default as YAML of its type: strings quoted (a JSON string is YAML),
// lists as flow sequences, the rest as they are.
func yamlValue(typ, v string) string {
	switch typ {
	case "string":
		return strconv.Quote(v)
	case "list":
		var items []string
		for _, p := range strings.Split(v, ",") {
			items = append(items, strconv.Quote(strings.TrimSpace(p)))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	return v
}

// sampleLists documents the settings that are lists of objects, as commented examples.
const sampleLists = `
# Per-hub settings by hub name; _default applies to hubs without their own entry.
# hubs:
#   chat:
#     anonymous_connect: false
#     event_handlers:                   # first match wins
#       - url_template: "http://127.0.0.1:3000/eventhandler/{hub}/{event}"
#         user_events: ["*"]            # "*": all; or names
#         system_events: [connect, connected, disconnected]
#         auth_header: ""               # optional Authorization header value
#         timeout: 30s
#     history:                          # groups that keep history, first matching pattern wins
#       - pattern: "room:*"
#         max_messages: 1000
#         max_age: 24h

# SignalR upstreams (under the signalr section), first match wins:
# signalr:
#   upstreams:
#     - url_template: "http://127.0.0.1:7071/runtime/webhooks/signalr?event={event}"
#       hub_pattern: "*"
#       category_pattern: "*"           # connections, messages
#       event_pattern: "*"
#       auth_header: ""
#       timeout: 30s
`

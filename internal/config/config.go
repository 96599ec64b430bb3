package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration. Each leaf has a YAML key (section.key),
// an environment variable (SWITCHBOARD_SECTION_KEY) and a doc tag that the
// README's reference table repeats.
type Config struct {
	Server    Server               `yaml:"server"`
	Auth      Auth                 `yaml:"auth"`
	Limits    Limits               `yaml:"limits"`
	WebSocket WebSocket            `yaml:"websocket"`
	Reliable  Reliable             `yaml:"reliable"`
	Invoke    Invoke               `yaml:"invoke"`
	Streams   Streams              `yaml:"streams"`
	Log       Log                  `yaml:"log"`
	Admin     Admin                `yaml:"admin"`
	Dashboard Dashboard            `yaml:"dashboard"`
	SignalR   SignalR              `yaml:"signalr"`
	History   History              `yaml:"history"`
	TLS       TLS                  `yaml:"tls"`
	Cluster   Cluster              `yaml:"cluster"`
	Hubs      map[string]HubConfig `yaml:"hubs" env:"-" doc:"per-hub settings by hub name; the key _default applies to hubs without their own entry"`
	// Connectors read events from Kafka (or Event Hubs) or a PostgreSQL outbox into hubs; see
	// connectors.go.
	Connectors []Connector `yaml:"connectors" env:"-" doc:"event sources read into hubs (see the README's Connectors section)"`
}

// Server is where and as what the server listens.
type Server struct {
	Addr            string        `yaml:"addr" doc:"listen address" default:":8080"`
	PublicEndpoint  string        `yaml:"public_endpoint" doc:"public base URL: printed in the connection string, and the base of REST nextLinks and client-token audiences (over forwarding headers); default http://localhost:<port> (https with TLS)"`
	DataDir         string        `yaml:"data_dir" doc:"directory for the generated access key and later durable state" default:"./data"`
	NodeID          string        `yaml:"node_id" doc:"short URL-safe id carried in connection ids; default random per start"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" doc:"how long SIGTERM waits for queues to drain before closing" default:"10s"`
	ReadTimeout     time.Duration `yaml:"read_timeout" doc:"time to read a request's headers and body, on both listeners; a slower request is dropped (WebSockets, SSE streams and long polls are not bound by it once open)" default:"30s"`
}

// Auth holds the access keys.
type Auth struct {
	AccessKeys []string `yaml:"access_keys" doc:"access keys, primary first (comma-separated in the environment); empty: generate one in data_dir"`
}

// Limits bound what clients and requests may use.
type Limits struct {
	MaxMessageBytes  int `yaml:"max_message_bytes" doc:"largest client WebSocket message; larger closes with 1009" default:"1048576"`
	MaxBodyBytes     int `yaml:"max_body_bytes" doc:"largest REST request body; larger answers 413" default:"1048576"`
	MaxQueueBytes    int `yaml:"max_queue_bytes" doc:"outbound bytes queued per connection before it is closed as a slow consumer" default:"4194304"`
	MaxGroupsPerConn int `yaml:"max_groups_per_conn" doc:"groups one connection may be in" default:"1000"`
	MaxConnections   int `yaml:"max_connections" doc:"client connections (WebSockets, SSE streams, held long polls, both listeners) open at once; beyond it a new one is refused with 503; 0: the open-file limit less a tenth (at least 64 or half) for REST, files and history; -1: no limit"`

	// Hubs: made by an authenticated connection or REST call that keeps
	// state, reclaimed once idle.
	MaxHubs            int           `yaml:"max_hubs" doc:"hubs one namespace (Web PubSub, SignalR) holds at once; a connection that needs one more gets 503 (SignalR: a handshake error)" default:"10000"`
	MaxHubMetricSeries int           `yaml:"max_hub_metric_series" doc:"hubs labelled by name in per-hub metrics; later hubs share the label hub=\"_other\" until labelled ones are reclaimed" default:"1000"`
	HubIdleTimeout     time.Duration `yaml:"hub_idle_timeout" doc:"a hub with no connections, no user-group tags and no durable send in flight is reclaimed (its metric series deleted) after this long" default:"10s"`

	ClientRates `yaml:",inline"`
}

// ClientRates are the limits on what one client may ask: per client IP
// (handshake rate, concurrent connections) and per connection (inbound
// message rate). They are limits.* keys; 0 turns a limit off.
type ClientRates struct {
	IPHandshakeRate    float64  `yaml:"ip_handshake_rate" doc:"connection attempts (WebSocket upgrades, SignalR negotiates, transports opened without one) per second one client IP may make, refilled continuously; beyond the burst 429 with Retry-After; 0: unlimited"`
	IPHandshakeBurst   int      `yaml:"ip_handshake_burst" doc:"connection attempts one client IP may make at once; 0: ip_handshake_rate rounded up"`
	IPMaxConnections   int      `yaml:"ip_max_connections" doc:"concurrent client connections (WebSockets, SSE streams, long-polling connections) per client IP; beyond it 429 with Retry-After; 0: unlimited"`
	IPMaxTracked       int      `yaml:"ip_max_tracked" doc:"client IPs (IPv6: /64 prefixes) the per-IP limits track at once; a new one evicts the least recently seen idle one, and is refused with 503 when every tracked IP holds a connection; about 210 bytes each" default:"100000"`
	TrustedProxyHeader string   `yaml:"trusted_proxy_header" doc:"header naming the client address for the per-IP limits (X-Forwarded-For, X-Real-IP, or Forwarded: its for= addresses), read only from trusted_proxies; empty: the TCP peer is the client"`
	TrustedProxies     []string `yaml:"trusted_proxies" doc:"CIDRs or addresses of the proxies whose trusted_proxy_header is believed (comma-separated in the environment); required with the header"`
	ConnMessageRate    float64  `yaml:"conn_message_rate" doc:"client messages per second one connection may send; over it a request gets an error ack (TooManyRequests) or Completion, or is dropped, and a connection that persists is closed (1008); 0: unlimited"`
	ConnMessageBurst   int      `yaml:"conn_message_burst" doc:"client messages one connection may send at once; 0: conn_message_rate rounded up"`
}

// TrustedProxyPrefixes parses TrustedProxies; a bare address is a /32 or
// /128.
func (r ClientRates) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(r.TrustedProxies))
	for _, s := range r.TrustedProxies {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// TLS serves both listeners over TLS (1.2 or later) when a certificate is set.
type TLS struct {
	CertFile string `yaml:"cert_file" doc:"PEM certificate (chain) for both listeners; reloaded within seconds when the file changes; empty: plain HTTP"`
	KeyFile  string `yaml:"key_file" doc:"PEM private key of tls.cert_file"`
}

// Cluster joins several nodes into one service over NATS (preview: see the
// README's Cluster section). Empty nats_url: one node, no NATS.
type Cluster struct {
	NATSURL        []string      `yaml:"nats_url" doc:"NATS servers of the cluster (nats://host:4222, tls://host:4222; comma-separated in the environment); empty: a single node, no NATS"`
	NATSUser       string        `yaml:"nats_user" doc:"NATS user name (with nats_password)"`
	NATSPassword   string        `yaml:"nats_password" doc:"NATS password of nats_user; redacted in /admin/config"`
	NATSToken      string        `yaml:"nats_token" doc:"NATS authentication token (instead of a user); redacted in /admin/config"`
	NATSCredsFile  string        `yaml:"nats_creds_file" doc:"NATS credentials file (user JWT and NKey seed; instead of a user or token)"`
	NATSCAFile     string        `yaml:"nats_ca_file" doc:"PEM CA certificates that verify the NATS servers; empty: the system roots"`
	NATSCertFile   string        `yaml:"nats_cert_file" doc:"PEM client certificate for NATS (TLS client authentication; with nats_key_file)"`
	NATSKeyFile    string        `yaml:"nats_key_file" doc:"PEM private key of nats_cert_file"`
	MaxRelays      int           `yaml:"max_relays" doc:"clients this node relays to the node holding their session (a reliable reconnect, a SignalR transport or poll that landed here), and sessions of this node whose client is on another node, each side counted apart, and relayed SignalR POSTs running at once; past it a relay is refused (1013, or 503 before a SignalR stream) and the client tries again" default:"10000"`
	RequestTimeout time.Duration `yaml:"request_timeout" doc:"how long a REST operation on another node's connections (group membership, permissions, existence, user- and group-wide operations) waits for the nodes' answers; past it the call answers 503 Error.Cluster.Unavailable" default:"2s"`

	// Durable history on JetStream.
	HistoryReplicas int `yaml:"history_replicas" doc:"NATS servers each JetStream stream of durable history is stored on (1 to 5; 3 on a 3-server NATS cluster: a send is then acknowledged once two of them have it); must not exceed the NATS cluster's JetStream servers" default:"1"`
}

// Enabled reports whether the node is part of a cluster.
func (c Cluster) Enabled() bool { return len(c.NATSURL) > 0 }

func (c Cluster) validate(nodeID string, bad func(key, format string, args ...any)) {
	if !c.Enabled() {
		for k, v := range map[string]string{"cluster.nats_user": c.NATSUser, "cluster.nats_password": c.NATSPassword,
			"cluster.nats_token": c.NATSToken, "cluster.nats_creds_file": c.NATSCredsFile, "cluster.nats_ca_file": c.NATSCAFile,
			"cluster.nats_cert_file": c.NATSCertFile, "cluster.nats_key_file": c.NATSKeyFile} {
			if v != "" {
				bad(k, "is set but cluster.nats_url is empty")
			}
		}
		return
	}
	if c.RequestTimeout <= 0 {
		bad("cluster.request_timeout", "must be positive")
	}
	if c.MaxRelays <= 0 {
		bad("cluster.max_relays", "must be positive")
	}
	if c.HistoryReplicas < 1 || c.HistoryReplicas > 5 {
		bad("cluster.history_replicas", "must be 1 to 5, got %d", c.HistoryReplicas)
	}
	for _, s := range c.NATSURL {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
			bad("cluster.nats_url", "%q is not a nats://, tls://, ws:// or wss:// URL with a host", redactURL(s))
		}
	}
	if nodeID != "" && !clusterNodeID.MatchString(nodeID) {
		bad("server.node_id", "%q: in a cluster a node id is 1 to 64 letters, digits or '-'", nodeID)
	}
	auths := 0
	for _, v := range []string{c.NATSUser, c.NATSToken, c.NATSCredsFile} {
		if v != "" {
			auths++
		}
	}
	if auths > 1 {
		bad("cluster", "nats_user, nats_token and nats_creds_file are alternatives: set one")
	}
	if c.NATSPassword != "" && c.NATSUser == "" {
		bad("cluster.nats_password", "needs cluster.nats_user")
	}
	if (c.NATSCertFile == "") != (c.NATSKeyFile == "") {
		bad("cluster", "nats_cert_file and nats_key_file go together")
	}
}

// clusterNodeID is a node id that can be a NATS subject token.
var clusterNodeID = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// redactURL hides the user information of a URL (a user and password, or
// a token).
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		scheme, rest = "", s
	} else {
		scheme += "://"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "<redacted>" + rest[at:]
	}
	return s
}

// WebSocket tunes the WebSocket transport.
type WebSocket struct {
	PingInterval time.Duration `yaml:"ping_interval" doc:"WebSocket ping period" default:"20s"`
	IdleTimeout  time.Duration `yaml:"idle_timeout" doc:"a socket silent this long is dropped" default:"60s"`
	WriteTimeout time.Duration `yaml:"write_timeout" doc:"a socket that accepts no bytes this long is dropped" default:"10s"`
	Writers      int           `yaml:"writers" doc:"writer goroutines; 0: one per CPU"`
	WriteGather  time.Duration `yaml:"write_gather" doc:"shortest time between two write passes of a busy writer, so that messages close together share one write; 0: write at once" default:"1ms"`
}

// Reliable tunes json.reliable.webpubsub.azure.v1 sessions.
type Reliable struct {
	RecoveryWindow time.Duration `yaml:"recovery_window" doc:"how long a dropped reliable session waits for its client" default:"30s"`
	ReplayMessages int           `yaml:"replay_messages" doc:"unacknowledged messages kept per reliable session; more closes it" default:"1000"`
	ReplayBytes    int           `yaml:"replay_bytes" doc:"unacknowledged bytes kept per reliable session; more closes it" default:"16777216"`
}

// Invoke bounds the invocations of Web PubSub JSON clients (invoke
// requests answered by the event handler).
type Invoke struct {
	Timeout    time.Duration `yaml:"timeout" doc:"longest an invocation waits for its event handler's answer before the client gets a Timeout error (the handler's own timeout applies too); at most 1h" default:"30s"`
	MaxPerConn int           `yaml:"max_per_conn" doc:"invocations one connection may have in flight; one more gets a TooManyRequests error; at most 1000" default:"16"`
}

// Streams bounds the group streams of Web PubSub JSON clients
// (openGroupStream: fragments published to a group in order).
type Streams struct {
	MaxPerConn       int           `yaml:"max_per_conn" doc:"group streams one connection may have open; one more is closed at once (streamClosed TooManyRequests); at most 1000" default:"16"`
	MaxFragmentBytes int           `yaml:"max_fragment_bytes" doc:"largest fragment (decoded data) of a group stream; a larger one closes the stream (BadRequest); at most limits.max_message_bytes" default:"262144"`
	IdleTimeout      time.Duration `yaml:"idle_timeout" doc:"a group stream whose client names no idleTimeoutMs is closed (IdleTimeout) after this long without a fragment or keepalive" default:"60s"`
	MaxIdleTimeout   time.Duration `yaml:"max_idle_timeout" doc:"longest idleTimeoutMs a client may ask for (the shortest is 1s); outside, the stream is refused (BadRequest); at most 1h" default:"10m"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error" default:"info"`
	Format string `yaml:"format" doc:"text or json" default:"text"`
}

// Admin configures the operational endpoints.
type Admin struct {
	Pprof bool `yaml:"pprof" doc:"serve /debug/pprof/ on the main listener (behind the access key)"`
}

// Dashboard configures the live dashboard at /dashboard on the main listener.
type Dashboard struct {
	Enabled                 bool          `yaml:"enabled" doc:"serve the dashboard at /dashboard (and redirect / to it) on the main listener" default:"true"`
	Secret                  string        `yaml:"secret" doc:"password of the dashboard login; empty: any access key logs in"`
	SessionTTL              time.Duration `yaml:"session_ttl" doc:"lifetime of a dashboard login (its signed session cookie)" default:"12h"`
	AllowAnonymousLocalhost bool          `yaml:"allow_anonymous_localhost" doc:"open the dashboard without a login to clients connecting from a loopback address"`
}

// SignalR configures the Azure SignalR Service (serverless mode) endpoint. It
// has its own listener because both services use the same REST paths.
type SignalR struct {
	Addr              string            `yaml:"addr" doc:"listen address of the SignalR endpoint (negotiate, the three transports, REST); empty: no SignalR endpoint" default:":8081"`
	PublicEndpoint    string            `yaml:"public_endpoint" doc:"SignalR public base URL: printed in its connection string, and the base of REST nextLinks and client-token audiences (over forwarding headers); default http://localhost:<port> (https with TLS)"`
	StatefulReconnect bool              `yaml:"stateful_reconnect" doc:"grant stateful reconnect (protocol version 2, Ack/Sequence) to clients that ask for it" default:"true"`
	ReconnectWindow   time.Duration     `yaml:"reconnect_window" doc:"how long a stateful-reconnect session waits for its client to come back" default:"30s"`
	KeepAlive         time.Duration     `yaml:"keep_alive" doc:"the server sends a Ping message this often on WebSockets and Server-Sent Events" default:"15s"`
	ClientTimeout     time.Duration     `yaml:"client_timeout" doc:"a WebSocket client silent this long is dropped" default:"30s"`
	HandshakeTimeout  time.Duration     `yaml:"handshake_timeout" doc:"a connection without a handshake this long after it opened is closed" default:"15s"`
	NegotiateTimeout  time.Duration     `yaml:"negotiate_timeout" doc:"a negotiated connection that opens no transport within this is discarded" default:"15s"`
	LongPollTimeout   time.Duration     `yaml:"long_poll_timeout" doc:"how long a long poll is held without data before it returns empty" default:"90s"`
	LongPollGap       time.Duration     `yaml:"long_poll_gap" doc:"a long-polling client that sends no poll for this long is gone" default:"15s"`
	Upstreams         []SignalRUpstream `yaml:"upstreams" env:"-" doc:"webhooks that receive client invocations and connection events, first match wins"`
}

// SignalRUpstream is one upstream of the SignalR endpoint (Azure's upstream
// settings).
type SignalRUpstream struct {
	URLTemplate     string        `yaml:"url_template"`     // {hub}, {category} and {event} are substituted
	HubPattern      string        `yaml:"hub_pattern"`      // "*" (default), "a,b" or a name
	CategoryPattern string        `yaml:"category_pattern"` // connections, messages
	EventPattern    string        `yaml:"event_pattern"`    // connected, disconnected, or invocation targets
	AuthHeader      string        `yaml:"auth_header"`      // optional Authorization header value
	Timeout         time.Duration `yaml:"timeout"`          // 0: the default
}

// History tunes the durable history of groups (which groups keep one is
// set per hub: hubs.<name>.history).
type History struct {
	Fsync             string        `yaml:"fsync" doc:"when history records reach the disk: group_commit (one fsync for every record appended while the previous one ran), always (one fsync per record) or none (written before the send is accepted, flushed by the OS: survives a killed process, not a power cut)" default:"group_commit"`
	IdempotencyWindow time.Duration `yaml:"idempotency_window" doc:"how long the Idempotency-Key of a REST send is remembered; a retry within it returns the first result" default:"10m"`
	IdempotencyKeys   int           `yaml:"idempotency_keys" doc:"most Idempotency-Keys remembered at once; beyond it the oldest are forgotten first" default:"200000"`
	MaxReplay         int           `yaml:"max_replay" doc:"most messages a joinGroup with an offset replays; a client further behind gets recovered: false and pages through the catch-up API" default:"500"`
	SegmentBytes      int           `yaml:"segment_bytes" doc:"size at which a history log segment file is sealed (1 MiB to 1 GiB)" default:"67108864"`
	TrimInterval      time.Duration `yaml:"trim_interval" doc:"period of the background sweep that drops history older than its max_age and deletes unused segment files" default:"5s"`
	ProbeInterval     time.Duration `yaml:"probe_interval" doc:"while the history's storage is unavailable (disk full at a write, or the log could not be opened), how often a small write and fsync (or the open) is tried again; sends to history groups are accepted again as soon as one succeeds" default:"1s"`
}

// HubConfig is the configuration of one hub.
type HubConfig struct {
	AnonymousConnect bool           `yaml:"anonymous_connect" doc:"accept client connections without a token"`
	EventHandlers    []EventHandler `yaml:"event_handlers" doc:"backends that receive the hub's events, first match wins"`
	History          []HistoryRule  `yaml:"history" doc:"groups that keep history, first matching pattern wins"`
	// One session per user (Web PubSub and SignalR hubs of this name).
	MaxConnectionsPerUser int    `yaml:"max_connections_per_user" doc:"most connections one user id may hold to the hub across the cluster; 0 = unlimited"`
	OnConnectionLimit     string `yaml:"on_connection_limit" doc:"beyond max_connections_per_user: reject_new (the new handshake gets 409) or close_oldest (the oldest get the notice, then are closed); empty = reject_new"`
	ConnectionLimitNotice string `yaml:"connection_limit_notice" doc:"close_oldest's notice: the event of the Web PubSub server message, the target of the SignalR invocation; empty = RemoveDuplicateSession"`
	// PresenceNotify: the groups whose members are told when a user joins
	// or leaves (Switchboard's own, off by default); see README Presence.
	PresenceNotify []string `yaml:"presence_notify" doc:"group patterns ('*' any run of characters) whose members get a presence message when a user joins or leaves (first connection in, last out, over the cluster); none by default"`
}

// Values of HubConfig.OnConnectionLimit.
const (
	RejectNew   = "reject_new"
	CloseOldest = "close_oldest"
)

// DefaultConnectionLimitNotice is the notice of close_oldest when none is set.
const DefaultConnectionLimitNotice = "RemoveDuplicateSession"

// maxPresencePatterns bounds a hub's presence_notify patterns (each join
// and leave of a notified hub matches the group against them).
const maxPresencePatterns = 64

// HistoryRule gives the groups whose names match Pattern a history.
type HistoryRule struct {
	Pattern     string        `yaml:"pattern"`      // '*' matches any run of characters
	MaxMessages int           `yaml:"max_messages"` // newest messages kept
	MaxAge      time.Duration `yaml:"max_age"`      // older messages are dropped
}

// EventHandler is one upstream of a hub (Azure's eventHandlers setting).
type EventHandler struct {
	URLTemplate  string   `yaml:"url_template"`  // {hub} and {event} are substituted
	UserEvents   []string `yaml:"user_events"`   // ["*"]: all; names; empty: none
	SystemEvents []string `yaml:"system_events"` // connect, connected, disconnected
	// GroupPresenceEvents: joined, left (Azure's groupPresenceEvents): the
	// azure.webpubsub.gp.* events of every join and leave of the hub's conns.
	GroupPresenceEvents []string      `yaml:"group_presence_events"`
	AuthHeader          string        `yaml:"auth_header"` // optional Authorization header value
	Timeout             time.Duration `yaml:"timeout"`     // 0: 30s
}

// Default returns the configuration with every default filled in.
func Default() Config {
	var c Config
	walk(reflect.ValueOf(&c).Elem(), "", func(f field) {
		if d := f.tag.Get("default"); d != "" {
			if err := f.set(d); err != nil {
				panic("config: bad default for " + f.key + ": " + err.Error())
			}
		}
	})
	return c
}

// Load builds the configuration: defaults, then the YAML file at path (if
// not empty), then SWITCHBOARD_* variables from environ, then settings
// ("section.key=value"). It returns every problem found, joined.
func Load(path string, environ []string, settings []string) (Config, error) {
	c := Default()
	var errs []error
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && err.Error() != "EOF" {
			return c, fmt.Errorf("config: %s: %w", path, err)
		}
		c.connectorDefaults()
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "SWITCHBOARD_") {
			env[k] = v
		}
	}
	fromEnv := func(f field) {
		if v, ok := env[f.env]; ok {
			if err := f.set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.env, err))
			}
		}
	}
	walk(reflect.ValueOf(&c).Elem(), "", fromEnv)
	c.connectorFields(fromEnv)
	for _, s := range settings {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%q: want section.key=value", s))
			continue
		}
		found := false
		set := func(f field) {
			if f.key == k {
				found = true
				if err := f.set(v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", k, err))
				}
			}
		}
		walk(reflect.ValueOf(&c).Elem(), "", set)
		c.connectorFields(set)
		if !found {
			errs = append(errs, fmt.Errorf("%s: unknown setting", k))
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// UnknownEnv returns the SWITCHBOARD_* variables of environ that name no
// setting and are not among alsoKnown (the variables the CLI itself reads,
// such as its commands' connection strings); the server warns about them (a
// typo would otherwise go unseen).
func UnknownEnv(environ []string, alsoKnown ...string) []string {
	known := map[string]bool{}
	var c Config
	walk(reflect.ValueOf(&c).Elem(), "", func(f field) { known[f.env] = true })
	for _, k := range alsoKnown {
		known[k] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		// SWITCHBOARD_CONNECTORS_<NAME>_<KEY> overrides a connector of the file, which
		// this does not know.
		if strings.HasPrefix(k, "SWITCHBOARD_") && !known[k] && !strings.HasPrefix(k, "SWITCHBOARD_CONNECTORS_") {
			out = append(out, k)
		}
	}
	return out
}

// Validate reports every invalid value, each with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.Dashboard.SessionTTL <= 0 {
		bad("dashboard.session_ttl", "must be positive, got %s", c.Dashboard.SessionTTL)
	}
	if _, _, err := net.SplitHostPort(c.Server.Addr); err != nil {
		bad("server.addr", "%v", err)
	}
	if e := c.Server.PublicEndpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("server.public_endpoint", "%q is not an http(s) URL", e)
		}
	}
	if c.Server.DataDir == "" {
		bad("server.data_dir", "must not be empty")
	}
	if strings.ContainsAny(c.Server.NodeID, "_/?#% ") {
		bad("server.node_id", "%q must be URL-safe and contain no '_'", c.Server.NodeID)
	}
	for i, k := range c.Auth.AccessKeys {
		if strings.TrimSpace(k) == "" {
			bad("auth.access_keys", "key %d is empty", i)
		}
	}
	positive := map[string]int{
		"limits.max_message_bytes": c.Limits.MaxMessageBytes, "limits.max_body_bytes": c.Limits.MaxBodyBytes,
		"limits.max_queue_bytes": c.Limits.MaxQueueBytes, "limits.max_groups_per_conn": c.Limits.MaxGroupsPerConn,
		"limits.max_hubs": c.Limits.MaxHubs, "limits.max_hub_metric_series": c.Limits.MaxHubMetricSeries,
		"reliable.replay_messages": c.Reliable.ReplayMessages, "reliable.replay_bytes": c.Reliable.ReplayBytes,
	}
	for k, v := range positive {
		if v <= 0 {
			bad(k, "must be positive, got %d", v)
		}
	}
	c.Limits.ClientRates.validate(bad)
	if c.Invoke.Timeout <= 0 || c.Invoke.Timeout > time.Hour {
		bad("invoke.timeout", "must be between 1ns and 1h, got %s", c.Invoke.Timeout)
	}
	if c.Invoke.MaxPerConn < 1 || c.Invoke.MaxPerConn > 1000 {
		bad("invoke.max_per_conn", "must be between 1 and 1000, got %d", c.Invoke.MaxPerConn)
	}
	if c.Streams.MaxPerConn < 1 || c.Streams.MaxPerConn > 1000 {
		bad("streams.max_per_conn", "must be between 1 and 1000, got %d", c.Streams.MaxPerConn)
	}
	if c.Streams.MaxFragmentBytes < 1 || c.Streams.MaxFragmentBytes > c.Limits.MaxMessageBytes {
		bad("streams.max_fragment_bytes", "must be between 1 and limits.max_message_bytes (%d), got %d", c.Limits.MaxMessageBytes, c.Streams.MaxFragmentBytes)
	}
	if c.Streams.IdleTimeout <= 0 || c.Streams.IdleTimeout > c.Streams.MaxIdleTimeout {
		bad("streams.idle_timeout", "must be positive and at most streams.max_idle_timeout (%s), got %s", c.Streams.MaxIdleTimeout, c.Streams.IdleTimeout)
	}
	if c.Streams.MaxIdleTimeout < time.Second || c.Streams.MaxIdleTimeout > time.Hour {
		bad("streams.max_idle_timeout", "must be between 1s and 1h, got %s", c.Streams.MaxIdleTimeout)
	}
	if c.WebSocket.WriteGather < 0 || c.WebSocket.WriteGather > time.Second {
		bad("websocket.write_gather", "must be between 0 and 1s, got %s", c.WebSocket.WriteGather)
	}
	if c.WebSocket.Writers < 0 {
		bad("websocket.writers", "must not be negative")
	}
	durations := map[string]time.Duration{
		"websocket.ping_interval": c.WebSocket.PingInterval, "websocket.idle_timeout": c.WebSocket.IdleTimeout,
		"websocket.write_timeout": c.WebSocket.WriteTimeout, "reliable.recovery_window": c.Reliable.RecoveryWindow,
		"server.shutdown_timeout": c.Server.ShutdownTimeout, "server.read_timeout": c.Server.ReadTimeout, "limits.hub_idle_timeout": c.Limits.HubIdleTimeout,
		"signalr.reconnect_window": c.SignalR.ReconnectWindow, "signalr.keep_alive": c.SignalR.KeepAlive,
		"signalr.client_timeout": c.SignalR.ClientTimeout, "signalr.handshake_timeout": c.SignalR.HandshakeTimeout,
		"signalr.negotiate_timeout": c.SignalR.NegotiateTimeout, "signalr.long_poll_timeout": c.SignalR.LongPollTimeout,
		"signalr.long_poll_gap": c.SignalR.LongPollGap,
	}
	for k, v := range durations {
		if v <= 0 {
			bad(k, "must be positive, got %s", v)
		}
	}
	if c.WebSocket.IdleTimeout <= c.WebSocket.PingInterval {
		bad("websocket.idle_timeout", "must exceed websocket.ping_interval (%s)", c.WebSocket.PingInterval)
	}
	for i, u := range c.SignalR.Upstreams {
		if err := checkURLTemplate(u.URLTemplate, "{hub}", "{category}", "{event}"); err != nil {
			bad(fmt.Sprintf("signalr.upstreams[%d]", i), "%v", err)
		}
		if u.Timeout < 0 {
			bad(fmt.Sprintf("signalr.upstreams[%d]", i), "timeout %s is negative", u.Timeout)
		}
	}
	if c.SignalR.ClientTimeout <= c.SignalR.KeepAlive {
		bad("signalr.client_timeout", "must exceed signalr.keep_alive (%s)", c.SignalR.KeepAlive)
	}
	if a := c.SignalR.Addr; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("signalr.addr", "%v", err)
		}
	}
	if e := c.SignalR.PublicEndpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("signalr.public_endpoint", "%q is not an http(s) URL", e)
		}
	}
	if c.Limits.MaxConnections < -1 {
		bad("limits.max_connections", "must be -1 (no limit), 0 (from the open-file limit) or positive, got %d", c.Limits.MaxConnections)
	}
	c.Cluster.validate(c.Server.NodeID, bad)
	c.validateConnectors(bad)
	for _, k := range c.Connectors {
		if k.Namespace == "signalr" && c.SignalR.Addr == "" {
			bad("connectors."+k.Name+".namespace", "signalr needs the SignalR endpoint (signalr.addr)")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file go together")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	switch c.History.Fsync {
	case "group_commit", "always", "none":
	default:
		bad("history.fsync", "%q is not group_commit, always or none", c.History.Fsync)
	}
	if c.History.IdempotencyWindow <= 0 {
		bad("history.idempotency_window", "must be positive, got %s", c.History.IdempotencyWindow)
	}
	if c.History.TrimInterval <= 0 {
		bad("history.trim_interval", "must be positive, got %s", c.History.TrimInterval)
	}
	if c.History.ProbeInterval <= 0 {
		bad("history.probe_interval", "must be positive, got %s", c.History.ProbeInterval)
	}
	if c.History.IdempotencyKeys <= 0 {
		bad("history.idempotency_keys", "must be positive, got %d", c.History.IdempotencyKeys)
	}
	if c.History.MaxReplay <= 0 {
		bad("history.max_replay", "must be positive, got %d", c.History.MaxReplay)
	}
	if n := c.History.SegmentBytes; n < 1<<20 || n > 1<<30 {
		bad("history.segment_bytes", "must be between 1048576 and 1073741824, got %d", n)
	}
	for name, h := range c.Hubs {
		if name != "_default" && !validHub(name) {
			bad("hubs."+name, "invalid hub name")
		}
		for i, r := range h.History {
			key := fmt.Sprintf("hubs.%s.history[%d]", name, i)
			if r.Pattern == "" || len(r.Pattern) > 1024 {
				bad(key+".pattern", "must be 1 to 1024 characters")
			}
			if r.MaxMessages <= 0 {
				bad(key+".max_messages", "must be positive, got %d", r.MaxMessages)
			}
			if r.MaxAge <= 0 {
				bad(key+".max_age", "must be positive, got %s", r.MaxAge)
			}
		}
		if h.MaxConnectionsPerUser < 0 {
			bad("hubs."+name+".max_connections_per_user", "must not be negative, got %d", h.MaxConnectionsPerUser)
		}
		switch h.OnConnectionLimit {
		case "", RejectNew, CloseOldest:
		default:
			bad("hubs."+name+".on_connection_limit", "must be reject_new or close_oldest, got %q", h.OnConnectionLimit)
		}
		if n := h.ConnectionLimitNotice; len(n) > 128 || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			bad("hubs."+name+".connection_limit_notice", "must be at most 128 characters without control characters")
		}
		if len(h.PresenceNotify) > maxPresencePatterns {
			bad("hubs."+name+".presence_notify", "at most %d patterns, got %d", maxPresencePatterns, len(h.PresenceNotify))
		}
		for i, p := range h.PresenceNotify {
			if p == "" || len(p) > 1024 {
				bad(fmt.Sprintf("hubs.%s.presence_notify[%d]", name, i), "must be 1 to 1024 characters")
			}
		}
		for i, eh := range h.EventHandlers {
			key := fmt.Sprintf("hubs.%s.event_handlers[%d]", name, i)
			if err := eh.validate(); err != nil {
				bad(key, "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r ClientRates) validate(bad func(key, format string, args ...any)) {
	for k, v := range map[string]float64{"limits.ip_handshake_rate": r.IPHandshakeRate, "limits.conn_message_rate": r.ConnMessageRate} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad(k, "must be a non-negative number, got %v", v)
		}
	}
	for k, v := range map[string]int{"limits.ip_handshake_burst": r.IPHandshakeBurst, "limits.ip_max_connections": r.IPMaxConnections,
		"limits.conn_message_burst": r.ConnMessageBurst} {
		if v < 0 {
			bad(k, "must not be negative, got %d", v)
		}
	}
	if r.IPMaxTracked <= 0 {
		bad("limits.ip_max_tracked", "must be positive, got %d", r.IPMaxTracked)
	}
	if _, err := r.TrustedProxyPrefixes(); err != nil {
		bad("limits.trusted_proxies", "%v", err)
	}
	if h := r.TrustedProxyHeader; h != "" {
		if strings.ContainsAny(h, " :\t\r\n") {
			bad("limits.trusted_proxy_header", "%q is not a header name", h)
		}
		if len(r.TrustedProxies) == 0 {
			bad("limits.trusted_proxies", "required with limits.trusted_proxy_header: the header is believed only from these peers (any client could otherwise name any address)")
		}
	}
}

func (h EventHandler) validate() error {
	var errs []error
	if err := checkURLTemplate(h.URLTemplate, "{hub}", "{event}"); err != nil {
		errs = append(errs, err)
	}
	for _, e := range h.SystemEvents {
		switch strings.ToLower(e) {
		case "connect", "connected", "disconnected":
		default:
			errs = append(errs, fmt.Errorf("system event %q is not connect, connected or disconnected", e))
		}
	}
	for _, e := range h.GroupPresenceEvents {
		switch strings.ToLower(e) {
		case "joined", "left":
		default:
			errs = append(errs, fmt.Errorf("group presence event %q is not joined or left", e))
		}
	}
	for _, e := range h.UserEvents {
		if e == "" {
			errs = append(errs, errors.New("user_events has an empty name"))
		}
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", h.Timeout))
	}
	return errors.Join(errs...)
}

// checkURLTemplate reports a webhook URL template that is missing, not an
// absolute http(s) URL once its placeholders are filled in, or has a
// placeholder in its host.
func checkURLTemplate(t string, placeholders ...string) error {
	pairs := make([]string, 0, 2*len(placeholders))
	for _, p := range placeholders {
		pairs = append(pairs, p, strings.Trim(p, "{}"))
	}
	u, err := url.Parse(strings.NewReplacer(pairs...).Replace(t))
	switch {
	case t == "":
		return errors.New("url_template is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("url_template %q is not an http(s) URL", t)
	}
	if host, _, _ := strings.Cut(strings.SplitN(strings.SplitN(t, "://", 2)[1], "/", 2)[0], "?"); strings.Contains(host, "{") {
		return fmt.Errorf("url_template %q: placeholders are not allowed in the host", t)
	}
	return nil
}

func validHub(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i, r := range name {
		alpha := r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'
		if i == 0 && !alpha {
			return false
		}
		if !alpha && !(r >= '0' && r <= '9') && !strings.ContainsRune("_`,.[]", r) {
			return false
		}
	}
	return true
}

// Hub returns the settings of hub (case-insensitive), falling back to _default.
func (c *Config) Hub(name string) HubConfig {
	for k, v := range c.Hubs {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return c.Hubs["_default"]
}

// Endpoint returns the public endpoint, derived from the listen address when
// not set.
func (c *Config) Endpoint() string {
	return EndpointFor(c.Server.PublicEndpoint, c.Scheme(), c.Server.Addr, nil)
}

// Scheme is the scheme of the default public endpoints: https with TLS.
func (c *Config) Scheme() string {
	if c.TLS.CertFile != "" {
		return "https"
	}
	return "http"
}

// SignalREndpoint returns the public endpoint of the SignalR listener, derived
// from signalr.addr when not set.
func (c *Config) SignalREndpoint() string {
	return EndpointFor(c.SignalR.PublicEndpoint, c.Scheme(), c.SignalR.Addr, nil)
}

// EndpointFor is the one rule for a listener's public endpoint: public (a
// *.public_endpoint) without its trailing '/' when set, else the local
// endpoint of a listener on addr, "<scheme>://<host>:<port>", with localhost for a
// wildcard or missing host. bound, when not nil, is the address the listener
// actually bound, whose port wins over addr's (addr may say :0).
func EndpointFor(public, scheme, addr string, bound net.Addr) string {
	if public != "" {
		return strings.TrimSuffix(public, "/")
	}
	host, port, _ := net.SplitHostPort(addr)
	if bound != nil {
		_, port, _ = net.SplitHostPort(bound.String())
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Redacted returns a copy safe to log.
func (c Config) Redacted() Config {
	keys := make([]string, len(c.Auth.AccessKeys))
	for i := range keys {
		keys[i] = "<redacted>"
	}
	c.Auth.AccessKeys = keys
	urls := make([]string, len(c.Cluster.NATSURL))
	for i, u := range c.Cluster.NATSURL {
		urls[i] = redactURL(u)
	}
	c.Cluster.NATSURL = urls
	for _, s := range []*string{&c.Cluster.NATSPassword, &c.Cluster.NATSToken} {
		if *s != "" {
			*s = "<redacted>"
		}
	}
	if c.Dashboard.Secret != "" {
		c.Dashboard.Secret = "<redacted>"
	}
	c.Connectors = slices.Clone(c.Connectors)
	for i := range c.Connectors {
		if c.Connectors[i].SASL.Password != "" {
			c.Connectors[i].SASL.Password = "<redacted>"
		}
		c.Connectors[i].DSN = redactDSN(c.Connectors[i].DSN)
	}
	return c
}

// Setting describes one configuration key, for documentation.
type Setting struct {
	Key, Env, Type, Default, Doc string
}

// Settings lists every key in declaration order.
func Settings() []Setting {
	var out []Setting
	var c Config
	walk(reflect.ValueOf(&c).Elem(), "", func(f field) {
		out = append(out, Setting{Key: f.key, Env: f.env, Type: f.typeName(), Default: f.tag.Get("default"), Doc: f.tag.Get("doc")})
	})
	return out
}

// field is one leaf of Config.
type field struct {
	key, env string
	tag      reflect.StructTag
	v        reflect.Value
}

func walk(v reflect.Value, prefix string, fn func(field)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name := strings.Split(sf.Tag.Get("yaml"), ",")[0]
		if sf.Anonymous && name == "" { // an inline group of keys of the same section
			walk(v.Field(i), prefix, fn)
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if sf.Tag.Get("env") == "-" {
			continue
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Duration]() {
			walk(v.Field(i), key, fn)
			continue
		}
		env := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		fn(field{key: key, env: env, tag: sf.Tag, v: v.Field(i)})
	}
}

func (f field) typeName() string {
	switch f.v.Interface().(type) {
	case time.Duration:
		return "duration"
	case []string:
		return "list"
	case float64:
		return "number"
	}
	return f.v.Kind().String()
}

func (f field) set(s string) error {
	switch f.v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.v.SetInt(int64(d))
		return nil
	case []string:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		f.v.Set(reflect.ValueOf(list))
		return nil
	}
	switch f.v.Kind() {
	case reflect.String:
		f.v.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		f.v.SetInt(int64(n))
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.v.SetFloat(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", s)
		}
		f.v.SetBool(b)
	default:
		return fmt.Errorf("unsupported type %s", f.v.Type())
	}
	return nil
}

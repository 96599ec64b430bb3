package config

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/connector/template"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// Connector reads events from a source (a Kafka topic, Azure Event Hubs through its Kafka
// endpoint, or a PostgreSQL outbox table) and sends each to a hub's group, user, connection or everyone (see the README's
// Connectors section). It is one item of the connectors: list of the file; its keys can be
// overridden per connector name: SWITCHBOARD_CONNECTORS_<NAME>_<KEY> and
// --set connectors.<name>.<key>=value (the connector itself must be in the file).
type Connector struct {
	Name string `yaml:"name" doc:"connector name: 1 to 64 lower-case letters, digits or '_', unique; names its metrics, logs and environment overrides"`
	Type string `yaml:"type" doc:"kafka (also Azure Event Hubs' Kafka endpoint) or postgres_outbox (a PostgreSQL outbox table)"`

	// Where records go (the mapping shared by every type).
	Namespace      string   `yaml:"namespace" doc:"webpubsub: records are messages to Web PubSub hubs; signalr: SignalR invocations (of the invocation method, the value as its argument) to hubs of the SignalR endpoint" default:"webpubsub"`
	Invocation     string   `yaml:"invocation" doc:"signalr namespace: template of the hub method a record invokes on the clients, e.g. accountUpdated"`
	Hub            string   `yaml:"hub" doc:"hub of a record with no switchboard-hub header (a template)"`
	Group          string   `yaml:"group" doc:"template naming the group a record is sent to, e.g. customer:{key} or account:{value.customerId}; set one of group, user, connection, all"`
	User           string   `yaml:"user" doc:"template naming the user a record is sent to"`
	Connection     string   `yaml:"connection" doc:"template naming the connection a record is sent to"`
	All            bool     `yaml:"all" doc:"send every record to the whole hub"`
	ContentType    string   `yaml:"content_type" doc:"content type of a record with no content-type header: application/json (validated, a poison record when not JSON), text/plain or application/octet-stream" default:"application/json"`
	IdempotencyKey string   `yaml:"idempotency_key" doc:"template of a record's Idempotency-Key when it has no switchboard-idempotency-key header; a redelivered record with the same key is not sent again (exactly once into history)" default:"{topic}/{partition}/{offset}"`
	Excluded       []string `yaml:"excluded" doc:"connection ids left out of every send (the REST excluded parameter; a switchboard-excluded header replaces them)"`
	Filter         string   `yaml:"filter" doc:"OData filter of the connections a send reaches, as the REST filter parameter (a switchboard-filter header replaces it)"`

	// Kafka.
	Brokers                []string      `yaml:"brokers" doc:"seed brokers, host:port (Event Hubs: <namespace>.servicebus.windows.net:9093)"`
	Topics                 []string      `yaml:"topics" doc:"topics to read; with topic_regex, regular expressions matched against every topic"`
	TopicRegex             bool          `yaml:"topic_regex" doc:"topics are regular expressions: topics created later that match are read too"`
	ConsumerGroup          string        `yaml:"consumer_group" doc:"Kafka consumer group; every Switchboard node with this connector shares its partitions"`
	StartOffset            string        `yaml:"start_offset" doc:"where a consumer group with no committed offset starts: latest (new records only) or earliest (everything retained)" default:"latest"`
	InstanceID             string        `yaml:"instance_id" doc:"static group membership id: a restarted node gets its partitions back at once, without a rebalance; default <server.node_id>-<name> when server.node_id is set, else dynamic membership"`
	SessionTimeout         time.Duration `yaml:"session_timeout" doc:"a node silent this long (crashed) loses its partitions to the others; bounds how long a crashed node's partitions wait" default:"10s"`
	CommitInterval         time.Duration `yaml:"commit_interval" doc:"how often the offsets of records whose sends were accepted are committed (also on rebalance and shutdown)" default:"1s"`
	FetchMaxWait           time.Duration `yaml:"fetch_max_wait" doc:"longest a fetch waits at the broker for new records; also how long a partition whose fetching was paused (max_in_flight) may wait to be fetched again" default:"100ms"`
	FetchMaxBytes          int           `yaml:"fetch_max_bytes" doc:"most bytes one fetch returns" default:"16777216"`
	FetchMaxPartitionBytes int           `yaml:"fetch_max_partition_bytes" doc:"most bytes one fetch returns per partition" default:"1048576"`
	MaxConcurrentFetches   int           `yaml:"max_concurrent_fetches" doc:"fetches in flight at once across brokers; 0: one per broker"`
	Ordering               string        `yaml:"ordering" doc:"partition: a partition's records (outbox: rows) are sent in partition (id) order, a record done only once the ones before it are (Kafka: one run of records to one target in flight at a time; the outbox: a whole batch); target: records to different targets (hub and group, user or connection) are sent concurrently (Kafka: up to 32 at once), each target's in partition order, and one target's refused sends hold back no other: far more records/s into history groups from Kafka" default:"partition"`
	MaxInFlight            int           `yaml:"max_in_flight" doc:"records of one partition fetched and not yet sent; past it the partition's fetching pauses" default:"1000"`
	DeadLetterTopic        string        `yaml:"dead_letter_topic" doc:"topic that receives poison records (with headers naming their origin and the reason); empty: they are logged, counted and skipped"`
	SASL                   ConnectorSASL `yaml:"sasl"`
	TLS                    ConnectorTLS  `yaml:"tls"`

	// PostgreSQL outbox.
	DSN             string        `yaml:"dsn" doc:"postgres_outbox: the database, postgres://user:password@host:5432/db (or key=value pairs); the password is redacted in /admin/config"`
	Table           string        `yaml:"table" doc:"postgres_outbox: the outbox table, [schema.]name, made with the DDL of switchboard connectors schema postgres" default:"switchboard_outbox"`
	DeadLetterTable string        `yaml:"dead_letter_table" doc:"postgres_outbox: table that receives poison rows (with the reason), in the transaction that deletes them; empty: they are logged, counted and deleted (or marked)"`
	Partitions      int           `yaml:"partitions" doc:"postgres_outbox: the table's partitions; 0: read from the table's comment, which its DDL writes (switchboard connectors schema postgres --partitions)"`
	PollInterval    time.Duration `yaml:"poll_interval" doc:"postgres_outbox: how often each partition is read when no NOTIFY woke it (a NOTIFY wakes it at once)" default:"1s"`
	BatchSize       int           `yaml:"batch_size" doc:"postgres_outbox: rows of each partition a transaction locks, sends and deletes at most (a worker's partitions together at most 10,000)" default:"500"`
	Workers         int           `yaml:"workers" doc:"postgres_outbox: transactions a node runs at once; worker i sends the rows of the partitions it holds with partition mod workers = i, all in one transaction at a time" default:"2"`
	Processed       string        `yaml:"processed" doc:"postgres_outbox: delete (a sent row is deleted) or mark (its processed_at is set; deleting old rows is then yours)" default:"delete"`
}

// ConnectorSASL is a Kafka connector's SASL authentication.
type ConnectorSASL struct {
	Mechanism string `yaml:"mechanism" doc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL"`
	User      string `yaml:"user" doc:"SASL user (Event Hubs: $ConnectionString)"`
	Password  string `yaml:"password" doc:"SASL password (Event Hubs: the namespace's connection string); redacted in /admin/config"`
}

// ConnectorTLS is a Kafka connector's TLS to the brokers.
type ConnectorTLS struct {
	Enabled            bool   `yaml:"enabled" doc:"connect to the brokers over TLS (required by Event Hubs)"`
	CAFile             string `yaml:"ca_file" doc:"PEM CA certificates that verify the brokers; empty: the system roots"`
	CertFile           string `yaml:"cert_file" doc:"PEM client certificate (TLS client authentication; with key_file)"`
	KeyFile            string `yaml:"key_file" doc:"PEM private key of cert_file"`
	ServerName         string `yaml:"server_name" doc:"name the brokers' certificates must carry; empty: the broker's host"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"accept any broker certificate (tests only)"`
}

// Connector types.
const (
	ConnectorKafka          = "kafka"
	ConnectorPostgresOutbox = "postgres_outbox"
)

var connectorName = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// connectorFields walks the keys of each connector, as connectors.<name>.<key>.
func (c *Config) connectorFields(fn func(field)) {
	for i := range c.Connectors {
		n := c.Connectors[i].Name
		if !connectorName.MatchString(n) {
			continue // reported by Validate
		}
		walk(reflect.ValueOf(&c.Connectors[i]).Elem(), "connectors."+n, func(f field) {
			if f.key != "connectors."+n+".name" {
				fn(f)
			}
		})
	}
}

// connectorDefaults fills the keys a connector of the file left out.
func (c *Config) connectorDefaults() {
	for i := range c.Connectors {
		walk(reflect.ValueOf(&c.Connectors[i]).Elem(), "", func(f field) {
			if d := f.tag.Get("default"); d != "" && f.v.IsZero() {
				if err := f.set(d); err != nil {
					panic("config: bad default for connectors." + f.key + ": " + err.Error())
				}
			}
		})
	}
}

// ConnectorInstanceID is the static membership id of connector k of a node: its instance_id,
// else <node id>-<name> when the node has a fixed id, else "" (dynamic membership).
func (c *Config) ConnectorInstanceID(k Connector) string {
	if k.InstanceID != "" {
		return k.InstanceID
	}
	if c.Server.NodeID != "" {
		return c.Server.NodeID + "-" + k.Name
	}
	return ""
}

func (c *Config) validateConnectors(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	for i, k := range c.Connectors {
		key := fmt.Sprintf("connectors[%d]", i)
		if !connectorName.MatchString(k.Name) {
			bad(key+".name", "%q must be 1 to 64 lower-case letters, digits or '_'", k.Name)
		} else {
			key = "connectors." + k.Name
			if seen[k.Name] {
				bad(key, "two connectors are named %q", k.Name)
			}
			seen[k.Name] = true
		}
		switch k.Type {
		case ConnectorKafka:
			k.validateKafka(key, bad)
		case ConnectorPostgresOutbox:
			k.validateOutbox(key, bad)
		default:
			bad(key+".type", "%q is not kafka or postgres_outbox", k.Type)
			continue
		}
		k.validateMapping(key, bad)
	}
}

func (k Connector) validateMapping(key string, bad func(key, format string, args ...any)) {
	targets := 0
	for _, s := range []string{k.Group, k.User, k.Connection} {
		if s != "" {
			targets++
		}
	}
	if k.All {
		targets++
	}
	if targets > 1 {
		bad(key, "group, user, connection and all are alternatives: set one (a record's switchboard-* headers can name its target instead)")
	}
	for name, s := range map[string]string{"hub": k.Hub, "group": k.Group, "user": k.User, "connection": k.Connection, "idempotency_key": k.IdempotencyKey} {
		if _, err := template.Parse(s); err != nil {
			bad(key+"."+name, "%v", err)
		}
	}
	switch k.Namespace {
	case "webpubsub":
		if k.Invocation != "" {
			bad(key+".invocation", "is for namespace signalr")
		}
	case "signalr":
		if k.Invocation == "" {
			bad(key+".invocation", "is required with namespace signalr (the hub method the clients' handlers are registered for)")
		} else if _, err := template.Parse(k.Invocation); err != nil {
			bad(key+".invocation", "%v", err)
		}
		if k.Filter != "" {
			bad(key+".filter", "is not available for SignalR hubs")
		}
	default:
		bad(key+".namespace", "%q is not webpubsub or signalr", k.Namespace)
	}
	if h := k.Hub; h != "" && !strings.Contains(h, "{") && !validHub(h) {
		bad(key+".hub", "%q is not a valid hub name", h)
	}
	if strings.TrimSpace(k.Filter) != "" {
		if _, err := odata.Parse(k.Filter); err != nil {
			bad(key+".filter", "%v", err)
		}
	}
	switch strings.ToLower(k.ContentType) {
	case "application/json", "text/plain", "application/octet-stream":
	default:
		bad(key+".content_type", "%q is not application/json, text/plain or application/octet-stream", k.ContentType)
	}
}

func (k Connector) validateKafka(key string, bad func(key, format string, args ...any)) {
	if len(k.Brokers) == 0 {
		bad(key+".brokers", "at least one broker (host:port) is required")
	}
	for _, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(key+".brokers", "%q is not host:port", b)
		}
	}
	if len(k.Topics) == 0 {
		bad(key+".topics", "at least one topic is required")
	}
	for _, t := range k.Topics {
		if k.TopicRegex {
			if _, err := regexp.Compile(t); err != nil {
				bad(key+".topics", "%q is not a regular expression: %v", t, err)
			}
		} else if t == "" || len(t) > 249 {
			bad(key+".topics", "%q is not a topic name", t)
		}
	}
	if k.ConsumerGroup == "" {
		bad(key+".consumer_group", "is required")
	}
	if !slices.Contains([]string{"partition", "target"}, k.Ordering) {
		bad(key+".ordering", "%q is not partition or target", k.Ordering)
	}
	if !slices.Contains([]string{"earliest", "latest"}, k.StartOffset) {
		bad(key+".start_offset", "%q is not earliest or latest", k.StartOffset)
	}
	if k.SessionTimeout < time.Second || k.SessionTimeout > 30*time.Second {
		bad(key+".session_timeout", "must be between 1s and 30s (a restarted node resumes within it), got %s", k.SessionTimeout)
	}
	if k.FetchMaxWait < 10*time.Millisecond || k.FetchMaxWait > 30*time.Second {
		bad(key+".fetch_max_wait", "must be between 10ms and 30s, got %s", k.FetchMaxWait)
	}
	if k.CommitInterval < 100*time.Millisecond {
		bad(key+".commit_interval", "must be at least 100ms, got %s", k.CommitInterval)
	}
	for name, v := range map[string]int{"fetch_max_bytes": k.FetchMaxBytes, "fetch_max_partition_bytes": k.FetchMaxPartitionBytes, "max_in_flight": k.MaxInFlight} {
		if v <= 0 {
			bad(key+"."+name, "must be positive, got %d", v)
		}
	}
	if k.MaxConcurrentFetches < 0 {
		bad(key+".max_concurrent_fetches", "must not be negative, got %d", k.MaxConcurrentFetches)
	}
	if k.DeadLetterTopic != "" && len(k.DeadLetterTopic) > 249 {
		bad(key+".dead_letter_topic", "%q is not a topic name", k.DeadLetterTopic)
	}
	for _, t := range k.Topics {
		read := t == k.DeadLetterTopic
		if re, err := regexp.Compile(t); k.TopicRegex && err == nil {
			read = re.MatchString(k.DeadLetterTopic)
		}
		if k.DeadLetterTopic != "" && read {
			bad(key+".dead_letter_topic", "%q is one of the topics the connector reads (%q): its poison records would come back for ever", k.DeadLetterTopic, t)
		}
	}
	switch k.SASL.Mechanism {
	case "":
		if k.SASL.User != "" || k.SASL.Password != "" {
			bad(key+".sasl", "user and password need a mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASL.User == "" {
			bad(key+".sasl.user", "is required with mechanism %s", k.SASL.Mechanism)
		}
	default:
		bad(key+".sasl.mechanism", "%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASL.Mechanism)
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		bad(key+".tls", "cert_file and key_file go together")
	}
	if !k.TLS.Enabled && (k.TLS.CAFile != "" || k.TLS.CertFile != "" || k.TLS.ServerName != "" || k.TLS.InsecureSkipVerify) {
		bad(key+".tls", "is configured but tls.enabled is false")
	}
}

func (k Connector) validateOutbox(key string, bad func(key, format string, args ...any)) {
	if k.DSN == "" {
		bad(key+".dsn", "is required (postgres://user:password@host:5432/db)")
	} else if _, err := pgx.ParseConfig(k.DSN); err != nil {
		bad(key+".dsn", "does not parse: a postgres:// URL or key=value pairs")
	}
	if !outbox.ValidTable(k.Table) {
		bad(key+".table", "%q: lower-case letters, digits and '_' (at most 46), optionally schema.table", k.Table)
	}
	if k.DeadLetterTable != "" && (!outbox.ValidTable(k.DeadLetterTable) || k.DeadLetterTable == k.Table) {
		bad(key+".dead_letter_table", "%q: another table than table, lower-case letters, digits and '_', optionally schema.table", k.DeadLetterTable)
	}
	if k.Partitions < 0 || k.Partitions > outbox.MaxPartitions {
		bad(key+".partitions", "must be 0 (the table's) to %d, got %d", outbox.MaxPartitions, k.Partitions)
	}
	if k.PollInterval < 10*time.Millisecond || k.PollInterval > time.Hour {
		bad(key+".poll_interval", "must be between 10ms and 1h, got %s", k.PollInterval)
	}
	if k.BatchSize < 1 || k.BatchSize > 10000 {
		bad(key+".batch_size", "must be 1 to 10000, got %d", k.BatchSize)
	}
	if k.Workers < 1 || k.Workers > outbox.MaxPartitions {
		bad(key+".workers", "must be 1 to %d, got %d", outbox.MaxPartitions, k.Workers)
	}
	if !slices.Contains([]string{"partition", "target"}, k.Ordering) {
		bad(key+".ordering", "%q is not partition or target", k.Ordering)
	}
	if !slices.Contains([]string{"delete", "mark"}, k.Processed) {
		bad(key+".processed", "%q is not delete or mark", k.Processed)
	}
}

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)

// redactDSN hides a DSN's password: the URL's userinfo password and any password= pair.
func redactDSN(s string) string {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if u, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
				s = scheme + "://" + u + ":<redacted>" + rest[at:]
			}
		}
	}
	return dsnPassword.ReplaceAllString(s, "${1}<redacted>")
}

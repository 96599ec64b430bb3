package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/bench"
	"github.com/switchboardhq/switchboard/internal/bench/baseline"
)

// errBenchFailed makes the process exit non-zero after a failed run's report is printed.
var errBenchFailed = errors.New("bench: run FAILED (lost, duplicated or undelivered messages, or failed connections)")

func newBenchCmd() *cobra.Command {
	o := bench.Options{Workers: -1, SourceIPs: -1}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench <fanout|durable|rooms|users|idle|connect|signalr-fanout|signalr-connect|connector|presence>",
		Short: "Load-test a running server through its public protocols",
		Long: `Drive a running server like real clients do (REST publishers, json.webpubsub.azure.v1
WebSocket clients; SignalR clients with negotiate, the JSON or MessagePack hub protocol and the
SignalR REST API for signalr-fanout and signalr-connect) and report deliveries/s, end-to-end
latency, lost / duplicated / out-of-order messages, handshakes/s and the server's RSS and CPU.
See bench/README.md.`,
		Example: `  switchboard bench fanout --subscribers 100 --publishers 1 --messages 1000
  switchboard bench rooms --groups 100 --members 10 --rate 2 --duration 20s
  switchboard bench users --conns 2000 --users 500 --publishers 4
  switchboard bench idle --conns 15000 --hold 30s
  switchboard bench connect --conns 19000 --dialers 128
  switchboard bench signalr-fanout --subscribers 100 --publishers 1 --protocol messagepack
  switchboard bench signalr-connect --conns 19000 --dialers 128`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: bench.Scenarios,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Scenario = args[0]
			if o.ConnString == "" {
				o.ConnString = os.Getenv(envConnectionString)
			}
			if o.SignalRConnString == "" {
				o.SignalRConnString = os.Getenv(envSignalRConnectionString)
			}
			signalR := strings.HasPrefix(o.Scenario, "signalr-")
			switch {
			case signalR && o.SignalRConnString == "":
				return fmt.Errorf("--signalr-connection-string (or $SWITCHBOARD_SIGNALR_CONNECTION_STRING) is required for %s", o.Scenario)
			case !signalR && o.ConnString == "":
				return fmt.Errorf("--connection-string (or $SWITCHBOARD_CONNECTION_STRING) is required")
			}
			if !cmd.Flags().Changed("warmup") && (o.Scenario == "idle" || o.Scenario == "connect" || o.Scenario == "signalr-connect") {
				o.Warmup = 0
			}
			o.Progress = os.Stderr
			if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				o.ProgressCR = true
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.Run(ctx, o)
			if rep != nil {
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					enc.Encode(rep)
				} else if len(rep.Runs) > 0 {
					rep.WriteTable(cmd.OutOrStdout())
				}
			}
			if err != nil {
				return err
			}
			if rep.Failed {
				return errBenchFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ConnString, "connection-string", "", "server connection string (default $SWITCHBOARD_CONNECTION_STRING)")
	f.StringVar(&o.SignalRConnString, "signalr-connection-string", "", "signalr-*: the SignalR endpoint's connection string, the server's second stdout line (default $SWITCHBOARD_SIGNALR_CONNECTION_STRING)")
	f.StringVar(&o.Protocol, "protocol", "", "signalr-*: hub protocol of the clients, json or messagepack (default json)")
	f.StringArrayVar(&o.Nodes, "node", nil, "another node of the connection string's cluster (its endpoint, e.g. http://127.0.0.1:9080; repeatable): connections and REST publishers spread round-robin over every node")
	f.StringVar(&o.Hub, "hub", "bench", "hub to use")
	f.StringSliceVar(&o.Brokers, "brokers", nil, "connector: the Kafka brokers the server's connector reads (e.g. from switchboard bench kafka-broker)")
	f.StringVar(&o.Topic, "topic", "bench-connector", "connector: the topic the server's connector reads")
	f.StringVar(&o.Compression, "compression", "none", "connector: the producer's batch compression, none (as Kafka's own producer by default), snappy, lz4, zstd or gzip")
	f.StringVar(&o.DSN, "dsn", "", "connector: insert rows into the PostgreSQL outbox of this database (the server's postgres_outbox connector reads it) instead of producing to Kafka")
	f.StringVar(&o.Table, "table", "switchboard_outbox", "connector with --dsn: the outbox table")
	f.IntVar(&o.Subscribers, "subscribers", 100, "fanout, signalr-fanout: connections in the group")
	f.IntVar(&o.Publishers, "publishers", 1, "fanout, signalr-fanout, users: REST publishers, one request in flight each")
	f.IntVar(&o.Messages, "messages", 1000, "fanout, signalr-fanout, users: measured messages per publisher (after the warm-up); connector: measured records per group")
	f.IntVar(&o.Size, "size", 64, "payload bytes (text)")
	f.Float64Var(&o.Rate, "rate", 0, "fanout, signalr-fanout, users, connector: total messages/s (0: as fast as answers come; connector: as fast as the producer takes them); rooms: messages/s per member (default 1)")
	f.IntVar(&o.Groups, "groups", 0, "rooms: groups (default 10); idle: groups the connections spread over (default 1); connector: groups (record keys) the subscribers spread over (default 10)")
	f.IntVar(&o.Members, "members", 10, "rooms: members per group")
	f.IntVar(&o.Conns, "conns", 0, "users, idle, connect, signalr-connect: connections (default 1000)")
	f.IntVar(&o.Users, "users", 100, "users: distinct user ids the connections spread over")
	f.DurationVar(&o.Duration, "duration", 0, "rooms: measured publishing time (default 10s)")
	f.DurationVar(&o.Hold, "hold", 0, "idle: how long the connections stay idle (default 30s)")
	f.IntVar(&o.Dialers, "dialers", 64, "concurrent dialers, all workers together")
	f.IntVar(&o.Workers, "workers", -1, "worker processes holding the connections (default: one per 15,000 connections, more up to one per CPU with at least 1,000 connections each); 0: goroutines of this process")
	f.IntVar(&o.Threads, "worker-threads", 1, "GOMAXPROCS of each worker process; 0: all CPUs")
	f.IntVar(&o.SourceIPs, "source-ips", -1, "spread connections over local addresses 127.0.0.1..127.0.0.N (default 8 for a loopback server, else none)")
	f.DurationVar(&o.Warmup, "warmup", bench.DefaultWarmup, "messages sent during this first period are not counted")
	f.IntVar(&o.Runs, "runs", 3, "runs; the median run is reported")
	f.DurationVar(&o.Drain, "drain", 0, "how long to wait for missing messages without progress (default 5s)")
	f.IntVar(&o.ServerPID, "server-pid", 0, "server process id for RSS/CPU (default: found by the listen port, else /metrics)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(newBenchWorkerCmd(), newBenchBaselineCmd(), newBenchSoakCmd(), newBenchKafkaBrokerCmd())
	return cmd
}

func newBenchBaselineCmd() *cobra.Command {
	addr := "127.0.0.1:18181"
	cmd := &cobra.Command{
		Use:   "baseline",
		Short: "Run the baseline server, the yardstick for the connect and fanout scenarios",
		Long: `Run a server that does only what the connect and fanout scenarios need (a WebSocket
upgrade answered with the connected message, REST group sends written to every connection by
a goroutine per connection) and nothing of its own: no token checks, hubs, queues or metrics.
Its connect figure is what this machine gives a server's handshakes while the load tool shares
it; its fanout figure is what the plain design of a fan-out server gets. It prints a
connection string for the tool on its first line. See bench/README.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.ConnectionString("http://"+ln.Addr().String(), baseline.AnyKey))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return baseline.New().Serve(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", addr, "listen address")
	return cmd
}

// errSoakFailed makes the process exit non-zero after a failed soak's report is printed.
var errSoakFailed = errors.New("bench soak: FAILED (not flat, messages lost, or connections ended by the server)")

func newBenchSoakCmd() *cobra.Command {
	o := bench.SoakOptions{SourceIPs: -1}
	var asJSON, printConfig bool
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Churn connections, keep messages flowing and fail the event handlers for a duration; report whether the server's RSS, goroutines and open files stay flat",
		Long: `Run a soak against a running server: Web PubSub clients (raw, json, json.reliable) and
SignalR clients connect, join groups, stay a random short while and leave (some with a close
frame, some with a TCP reset, some reliable ones dropping and recovering their session); REST
publishers send to all, groups and users, and talking clients sendToGroup and send user
events; deliveries to the clients that stayed are accounted. The soak serves the hub's event
handlers itself (--handler-addr) and cycles them through healthy, failing (500), slow (past
the handler timeout) and down periods. The server's RSS, goroutines and open files are
sampled at the start, every --sample-every and after --settle at the end; the verdict line
compares the start and the end. The server's configuration must point the hub's event
handlers at the soak: --print-config writes it. See bench/README.md.`,
		Example: `  switchboard bench soak --print-config > soak.yaml
  switchboard serve --config soak.yaml > cs.txt &
  switchboard bench soak --connection-string "$(sed -n 1p cs.txt)" --signalr-connection-string "$(sed -n 2p cs.txt)" --duration 30m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if printConfig {
				fmt.Fprint(cmd.OutOrStdout(), bench.SoakServerConfig(o.HandlerAddr, o.Hub, bench.SoakHandlerTimeout))
				return nil
			}
			if o.ConnString == "" {
				o.ConnString = os.Getenv("SWITCHBOARD_CONNECTION_STRING")
			}
			if o.SignalRConnString == "" {
				o.SignalRConnString = os.Getenv("SWITCHBOARD_SIGNALR_CONNECTION_STRING")
			}
			if o.ConnString == "" {
				return fmt.Errorf("--connection-string (or $SWITCHBOARD_CONNECTION_STRING) is required")
			}
			o.Progress = cmd.ErrOrStderr()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := bench.RunSoak(ctx, o)
			if rep != nil {
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					enc.Encode(rep)
				} else {
					rep.WriteText(cmd.OutOrStdout())
				}
			}
			if err != nil {
				return err
			}
			if rep.Failed {
				return errSoakFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ConnString, "connection-string", "", "server connection string (default $SWITCHBOARD_CONNECTION_STRING)")
	f.StringVar(&o.SignalRConnString, "signalr-connection-string", "", "the SignalR endpoint's connection string, the server's second stdout line (default $SWITCHBOARD_SIGNALR_CONNECTION_STRING; without it no SignalR clients)")
	f.StringVar(&o.Hub, "hub", "soak", "hub (Web PubSub and SignalR) the soak uses; its event handlers must point at --handler-addr")
	f.DurationVar(&o.Duration, "duration", time.Minute, "how long the churn runs (the settle period comes after)")
	f.IntVar(&o.Conns, "conns", 300, "clients kept connected at once (dialing ones included)")
	f.Float64Var(&o.ConnectRate, "connect-rate", 50, "new connections per second at most")
	f.DurationVar(&o.MinLife, "min-life", 2*time.Second, "shortest time a client stays")
	f.DurationVar(&o.MaxLife, "max-life", 20*time.Second, "longest time a client stays")
	f.Float64Var(&o.Rate, "rate", 50, "REST sends per second (to all, groups, users, SignalR groups), all publishers together")
	f.IntVar(&o.Publishers, "publishers", 2, "REST publishers, one request in flight each")
	f.Float64Var(&o.ClientRate, "client-rate", 0.5, "requests per second of each talking JSON client (sendToGroup and user events in turn)")
	f.IntVar(&o.Groups, "groups", 10, "groups the clients spread over")
	f.IntVar(&o.Users, "users", 20, "user ids the Web PubSub clients spread over")
	f.IntVar(&o.Size, "size", 64, "payload bytes (text)")
	f.StringVar(&o.HandlerAddr, "handler-addr", bench.DefaultSoakHandlerAddr, "listen address of the soak's event handler")
	f.DurationVar(&o.HandlerCycle, "handler-cycle", time.Minute, "the handler's cycle: healthy its first half, then failing (500), slow and down a sixth each")
	f.DurationVar(&o.HandlerSlow, "handler-slow", bench.SoakHandlerTimeout+time.Second, "how long a slow answer takes (above the handler timeout of --print-config's configuration)")
	f.DurationVar(&o.SampleEvery, "sample-every", 30*time.Second, "how often the server is sampled (a line on stderr)")
	f.DurationVar(&o.Settle, "settle", time.Minute, "wait after the churn with the handler healthy before the end sample (above reliable.recovery_window and the event retries)")
	f.DurationVar(&o.Drain, "drain", 0, "how long a leaving client waits for missing messages without progress (default 5s)")
	f.IntVar(&o.ServerPID, "server-pid", 0, "server process id for RSS and open files (default: found by the listen port, else /metrics)")
	f.IntVar(&o.SourceIPs, "source-ips", -1, "spread connections over local addresses 127.0.0.1..127.0.0.N (default 8 for a loopback server, else none)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVar(&printConfig, "print-config", false, "print the server configuration (YAML) that points --hub's event handlers and SignalR upstream at --handler-addr, and exit")
	return cmd
}

func newBenchWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "worker",
		Short:  "Hold connections for a bench coordinator (JSON lines on stdin/stdout)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The coordinator owns the run: ignore Ctrl-C and end when stdin closes.
			signal.Ignore(os.Interrupt)
			return bench.ServeWorker(context.Background(), os.Stdin, os.Stdout)
		},
	}
}

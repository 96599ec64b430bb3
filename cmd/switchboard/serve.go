package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
	"github.com/switchboardhq/switchboard/internal/tracing"
)

// configFlags are the flags every command that reads the configuration has.
type configFlags struct {
	file       string
	addr       string
	dataDir    string
	endpoint   string
	accessKeys []string
	logLevel   string
	set        []string
}

func (f *configFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.file, "config", "c", "", "YAML configuration file")
	fs.StringVar(&f.addr, "addr", "", "listen address (server.addr)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (server.data_dir)")
	fs.StringVar(&f.endpoint, "public-endpoint", "", "public endpoint for connection strings (server.public_endpoint)")
	fs.StringArrayVar(&f.accessKeys, "access-key", nil, "access key, repeat for primary then secondary (auth.access_keys)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (log.level)")
	fs.StringArrayVar(&f.set, "set", nil, "any setting as section.key=value; repeatable")
}

// load reads the configuration: defaults < file < environment < flags.
func (f *configFlags) load() (config.Config, error) {
	settings := append([]string(nil), f.set...)
	add := func(key, v string) {
		if v != "" {
			settings = append(settings, key+"="+v)
		}
	}
	add("server.addr", f.addr)
	add("server.data_dir", f.dataDir)
	add("server.public_endpoint", f.endpoint)
	add("log.level", f.logLevel)
	if len(f.accessKeys) > 0 {
		for _, k := range f.accessKeys {
			if k == "" {
				return config.Config{}, fmt.Errorf("--access-key must not be empty")
			}
		}
		settings = append(settings, "auth.access_keys="+joinComma(f.accessKeys))
	}
	return config.Load(f.file, os.Environ(), settings)
}

func joinComma(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

func newLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newServeCmd() *cobra.Command {
	var f configFlags
	var check bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server (the default command)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load()
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			if _, _, err := tracing.Wanted(os.Getenv); err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			if check {
				fmt.Fprintln(cmd.OutOrStdout(), "configuration is valid")
				return nil
			}
			log := newLogger(cfg)
			warnUnknownEnv(log, os.Environ())
			stopTracing, err := tracing.Setup(context.Background(), os.Getenv)
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := stopTracing(ctx); err != nil {
					log.Warn("flushing traces", "err", err)
				}
			}()
			if tracing.Enabled() {
				log.Info("tracing on: spans go to the OTLP exporter the OTEL_* environment configures")
			}
			srv, err := server.New(cfg, log)
			if err != nil {
				return err
			}
			if err := srv.Listen(); err != nil {
				srv.Close()
				return err
			}
			log.Info("switchboard listening", "addr", srv.Addr().String(), "endpoint", srv.Endpoint(), "version", version())
			fmt.Fprintln(cmd.OutOrStdout(), srv.ConnectionString())
			if cs := srv.SignalRConnectionString(); cs != "" {
				log.Info("signalr listening", "endpoint", srv.SignalREndpoint())
				fmt.Fprintln(cmd.OutOrStdout(), cs)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return srv.Serve(ctx)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVar(&check, "check-config", false, "validate the configuration and exit")
	return cmd
}

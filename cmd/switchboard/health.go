package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newHealthCmd asks a running server's probe, for container health checks
// and scripts: the image has no curl, the binary is enough.
func newHealthCmd() *cobra.Command {
	var cfg configFlags
	var url string
	var ready bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Ask a running server whether it is alive (/healthz) or ready (/readyz); exit status 1 when not",
		Example: `  switchboard health                 # GET <server.addr>/healthz
  switchboard health --ready         # GET <server.addr>/readyz: listeners, history, NATS, connectors
  switchboard health --url http://10.0.0.5:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := url
			if base == "" {
				c, err := cfg.load()
				if err != nil {
					return fmt.Errorf("invalid configuration:\n%w", err)
				}
				base = c.Endpoint()
			}
			path := "/healthz"
			if ready {
				path = "/readyz"
			}
			return probeServer(cmd.Context(), cmd.OutOrStdout(), strings.TrimSuffix(base, "/")+path, timeout)
		},
	}
	cfg.register(cmd.Flags())
	cmd.Flags().StringVar(&url, "url", "", "the server's base URL (default: the endpoint of the configuration's server.addr)")
	cmd.Flags().BoolVar(&ready, "ready", false, "ask the readiness probe rather than the liveness one")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// probeServer GETs u and prints its answer; not 200 is an error.
func probeServer(ctx context.Context, out io.Writer, u string, timeout time.Duration) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintln(out, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", u, resp.Status)
	}
	return nil
}

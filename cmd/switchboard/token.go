package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/switchboardhq/switchboard/internal/auth"
)

func newTokenCmd() *cobra.Command {
	var t target
	var hub, user string
	var roles, groups []string
	var ttl time.Duration
	var tokenOnly, signalR bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a client access URL for a hub",
		Example: `  switchboard token --hub chat --user alice --group lobby --role webpubsub.sendToGroup.lobby
  switchboard token --hub chat --ttl 10m --token-only
  switchboard token --signalr --hub chat --user alice   # {"url","accessToken"} for a SignalR client`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hub == "" {
				return fmt.Errorf("--hub is required")
			}
			endpoint, ring, err := t.resolveFor(signalR)
			if err != nil {
				return err
			}
			if signalR {
				return printSignalRToken(cmd.OutOrStdout(), endpoint, ring, hub, user, ttl, tokenOnly)
			}
			tok, err := ring.MintClientToken(auth.ClientAudience(endpoint, hub), auth.MintOptions{
				UserID: user, Roles: roles, Groups: groups, TTL: ttl,
			})
			if err != nil {
				return err
			}
			if tokenOnly {
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				return nil
			}
			base := strings.Replace(strings.TrimSuffix(endpoint, "/"), "http", "ws", 1)
			fmt.Fprintf(cmd.OutOrStdout(), "%s/client/hubs/%s?access_token=%s\n", base, url.PathEscape(hub), url.QueryEscape(tok))
			return nil
		},
	}
	t.register(cmd.Flags())
	cmd.Flags().StringVar(&hub, "hub", "", "hub name (required)")
	cmd.Flags().StringVar(&user, "user", "", "user id (sub claim)")
	cmd.Flags().StringArrayVar(&roles, "role", nil, "role, repeatable (e.g. webpubsub.joinLeaveGroup)")
	cmd.Flags().StringArrayVar(&groups, "group", nil, "group to join on connect, repeatable")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "token lifetime")
	cmd.Flags().BoolVar(&tokenOnly, "token-only", false, "print only the token")
	cmd.Flags().BoolVar(&signalR, "signalr", false, "mint a SignalR client token and print the negotiate redirect {\"url\",\"accessToken\"} (with --connection-string, give the SignalR one)")
	return cmd
}

// printSignalRToken prints the redirect negotiate answer of a SignalR client
// of hub, or only its token.
func printSignalRToken(w io.Writer, endpoint string, ring *auth.KeyRing, hub, user string, ttl time.Duration, tokenOnly bool) error {
	aud := auth.SignalRClientAudience(endpoint, hub)
	tok, err := ring.MintSignalRClientToken(aud, user, ttl)
	if err != nil {
		return err
	}
	if tokenOnly {
		_, err = fmt.Fprintln(w, tok)
		return err
	}
	b, _ := json.Marshal(map[string]string{"url": aud, "accessToken": tok}) // strings always encode
	_, err = fmt.Fprintln(w, string(b))
	return err
}

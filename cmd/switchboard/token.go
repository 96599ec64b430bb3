package main

import (
	"fmt"
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
	var tokenOnly bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a client access URL for a hub",
		Example: `  switchboard token --hub chat --user alice --group lobby --role webpubsub.sendToGroup.lobby
  switchboard token --hub chat --ttl 10m --token-only`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hub == "" {
				return fmt.Errorf("--hub is required")
			}
			endpoint, ring, err := t.resolve()
			if err != nil {
				return err
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
	return cmd
}

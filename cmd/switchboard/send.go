package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newSendCmd() *cobra.Command {
	var t target
	var hub, group, user, conn, typ string
	var excluded []string
	var filter string
	cmd := &cobra.Command{
		Use:   "send [message]",
		Short: "Send a message to everyone, a group, a user or a connection of a hub",
		Example: `  switchboard send --hub chat 'hello everyone'
  switchboard send --hub chat --group lobby --type json '{"text":"hi"}'
  echo -n data | switchboard send --hub chat --user alice --type binary -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if hub == "" {
				return fmt.Errorf("--hub is required")
			}
			set := 0
			for _, v := range []string{group, user, conn} {
				if v != "" {
					set++
				}
			}
			if set > 1 {
				return fmt.Errorf("give at most one of --group, --user, --conn")
			}
			ctype, ok := map[string]string{"text": "text/plain", "json": "application/json", "binary": "application/octet-stream"}[typ]
			if !ok {
				return fmt.Errorf("--type must be text, json or binary")
			}
			var body io.Reader = strings.NewReader(args[0])
			if args[0] == "-" {
				body = cmd.InOrStdin()
			}
			endpoint, ring, err := t.resolve()
			if err != nil {
				return err
			}
			path := "/api/hubs/" + url.PathEscape(hub)
			switch {
			case group != "":
				path += "/groups/" + url.PathEscape(group)
			case user != "":
				path += "/users/" + url.PathEscape(user)
			case conn != "":
				path += "/connections/" + url.PathEscape(conn)
			}
			q := url.Values{"api-version": {"2024-12-01"}}
			for _, e := range excluded {
				q.Add("excluded", e)
			}
			if filter != "" {
				q.Set("filter", filter)
			}
			u := strings.TrimSuffix(endpoint, "/") + path + "/:send?" + q.Encode()
			tok, err := ring.MintServerToken(u, 5*time.Minute)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusAccepted {
				return fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
			}
			fmt.Fprintln(os.Stderr, "sent:", resp.Status)
			return nil
		},
	}
	t.register(cmd.Flags())
	cmd.Flags().StringVar(&hub, "hub", "", "hub name (required)")
	cmd.Flags().StringVar(&group, "group", "", "send to this group")
	cmd.Flags().StringVar(&user, "user", "", "send to this user")
	cmd.Flags().StringVar(&conn, "conn", "", "send to this connection id")
	cmd.Flags().StringVar(&typ, "type", "text", "text, json or binary")
	cmd.Flags().StringArrayVar(&excluded, "exclude", nil, "connection id to leave out, repeatable")
	cmd.Flags().StringVar(&filter, "filter", "", "OData filter over userId, connectionId, groups")
	return cmd
}

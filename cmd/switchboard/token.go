package main

import (
	"encoding/json"
	"errors"
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
	var check string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a client access URL for a hub, or check a token",
		Example: `  switchboard token --hub chat --user alice --group lobby --role webpubsub.sendToGroup.lobby
  switchboard token --hub chat --ttl 10m --token-only
  switchboard token --signalr --hub chat --user alice   # {"url","accessToken"} for a SignalR client
  switchboard token --check eyJhbGciOi...               # decode, verify, and say why it would be refused`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if check != "" {
				_, ring, err := t.resolveFor(signalR)
				if err != nil {
					return err
				}
				return checkToken(cmd.OutOrStdout(), ring, check, hub, time.Now())
			}
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
	cmd.Flags().StringVar(&check, "check", "", "decode TOKEN, verify it with the keys as the server would for what its aud names (with --hub: for that hub), print what it says and why it would be refused; exit status 1 when refused")
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

// errTokenRefused is checkToken's error for a token the keys refuse (exit status 1); the
// reason is in the output.
var errTokenRefused = errors.New("the server would refuse this token")

// checkToken prints what token says and whether ring accepts it (see auth.Inspect).
func checkToken(w io.Writer, ring *auth.KeyRing, token, hub string, now time.Time) error {
	in, err := ring.Inspect(strings.TrimSpace(token), hub, now)
	if err != nil {
		fmt.Fprintf(w, "refused: %v\n", err)
		return errTokenRefused
	}
	header, _ := json.Marshal(in.Header) // decoded JSON: encodes again
	claims, _ := json.MarshalIndent(in.Claims, "", "  ")
	fmt.Fprintf(w, "header: %s\nclaims: %s\n", header, claims)
	what := string(in.Kind) + " token"
	switch {
	case in.Hub != "":
		what += fmt.Sprintf(" for hub %q", in.Hub)
	case in.Path != "":
		what += fmt.Sprintf(" for %s", in.Path)
	}
	fmt.Fprintf(w, "kind: %s\n", what)
	for _, c := range []struct{ name, label string }{{"nbf", "not before"}, {"exp", "expires"}} {
		if n, ok := in.Claims[c.name].(json.Number); ok {
			if sec, err := n.Int64(); err == nil {
				at := time.Unix(sec, 0).UTC()
				fmt.Fprintf(w, "%s: %s (%s)\n", c.label, at.Format(time.RFC3339), relative(at, now))
			}
		}
	}
	if in.Verdict != nil {
		fmt.Fprintf(w, "refused: %v\n", in.Verdict)
		return errTokenRefused
	}
	fmt.Fprintln(w, "accepted: these keys verify it, and it is valid now")
	return nil
}

// relative says how far t is from now, rounded to the second.
func relative(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		return fmt.Sprintf("%s ago", -d)
	}
	return fmt.Sprintf("in %s", d)
}

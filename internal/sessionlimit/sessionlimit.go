// Package sessionlimit applies a hub's limit on the connections of one user
// (hubs.<name>.max_connections_per_user), cluster-wide: it counts the user's
// connections on every node (core.Hub.UserConns) and either refuses a new
// handshake (reject_new) or, once the new connection is up, sends the oldest
// ones beyond the limit a notice and closes them (close_oldest).
//
// Race window: the count and the connect are not one step across nodes.
// With reject_new, k handshakes of one user arriving at the same moment may
// all see room and leave the user with up to max+k-1 connections. With
// close_oldest every new connection closes the connections beyond the limit
// that are older than itself, in one order every node agrees on (connect
// time by the clock of the connection's node, then id), so simultaneous
// connects converge on the newest max connections (by the nodes' clocks:
// keep them in sync).
package sessionlimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Policy is what a hub does with a user's connection beyond Max.
type Policy struct {
	Max         int  // 0: no limit
	CloseOldest bool // false: reject the new handshake
	// Notice names the notice the closed connections get first (a Web PubSub
	// server message's "event", a SignalR invocation's target).
	Notice string
}

// ErrLimit is the refusal of a handshake under reject_new.
var ErrLimit = errors.New("user connection limit reached")

// maxListed bounds the connections of one user a check lists (cluster-wide,
// the oldest ones): a limit above it is not enforced beyond it.
const maxListed = 1000

// Limiter applies the policies of hubs.
type Limiter struct {
	policy  func(hub string) Policy
	log     *slog.Logger
	actions *prometheus.CounterVec // action: rejected, closed_oldest, error
}

// New returns a Limiter of the policies policy gives (nil: none), counting in
// switchboard_user_connection_limit_total on reg.
func New(policy func(hub string) Policy, log *slog.Logger, reg prometheus.Registerer) (*Limiter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	actions, err := metricreg.Register(reg, "sessionlimit", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Name: "user_connection_limit_total",
		Help: "Connections refused (rejected) or closed (closed_oldest) by a hub's max_connections_per_user, and checks that failed (error: the connection is let in), by dialect.",
	}, []string{"dialect", "action"}))
	if err != nil {
		return nil, err
	}
	return &Limiter{policy: policy, log: log, actions: actions}, nil
}

// Policy returns hub's policy; the zero Policy for a nil Limiter.
func (l *Limiter) Policy(hub string) Policy {
	if l == nil || l.policy == nil {
		return Policy{}
	}
	return l.policy(hub)
}

// Admit checks, before a handshake of user to hub completes, whether
// reject_new refuses it: it returns an error wrapping ErrLimit when the user
// already holds the hub's limit of connections on the cluster. Anonymous
// connections and hubs without a limit or with close_oldest pass at once. A
// count that fails (the cluster did not answer) lets the handshake in,
// logged and counted as error.
func (l *Limiter) Admit(ctx context.Context, h *core.Hub, user, dialect string) error {
	p := l.Policy(h.Name())
	if p.Max <= 0 || p.CloseOldest || user == "" {
		return nil
	}
	conns, more, err := h.UserConns(ctx, user, min(p.Max, maxListed))
	if err != nil {
		l.actions.WithLabelValues(dialect, "error").Inc()
		l.log.Warn("user connection limit: count failed; connection let in", "hub", h.Name(), "user_id", user, "err", err)
		return nil
	}
	if len(conns) >= p.Max || more {
		l.actions.WithLabelValues(dialect, "rejected").Inc()
		return fmt.Errorf("%w: user %q already has %d connection(s) to hub %q (max_connections_per_user)", ErrLimit, user, len(conns), h.Name())
	}
	return nil
}

// Evict applies close_oldest once c has connected: the oldest connections of
// c's user beyond the hub's limit (c itself is the newest) get notice(reason,
// c's id), then are closed with reason, wherever they are. It returns how many
// it closed.
func (l *Limiter) Evict(ctx context.Context, c *core.Conn, dialect string, notice func(p Policy, reason, newConn string) *core.Message) int {
	h := c.Hub()
	p := l.Policy(h.Name())
	if p.Max <= 0 || !p.CloseOldest || c.UserID() == "" {
		return 0
	}
	conns, _, err := h.UserConns(ctx, c.UserID(), maxListed)
	if err != nil {
		l.actions.WithLabelValues(dialect, "error").Inc()
		l.log.Warn("user connection limit: count failed; older connections kept", "hub", h.Name(), "user_id", c.UserID(), "err", err)
		return 0
	}
	// The newest max connections stay. c closes only the ones to go that
	// are older than itself: if c is one of them too (a newer connection
	// of the user came meanwhile), that newer one's Evict closes c.
	var older []core.GroupMember
	for _, m := range conns[:max(len(conns)-p.Max, 0)] {
		if m.ConnID == c.ID() {
			break
		}
		older = append(older, m)
	}
	if len(older) == 0 {
		return 0
	}
	reason := fmt.Sprintf("Another connection of this user opened (max_connections_per_user is %d); this older one is closed.", p.Max)
	closed := 0
	for _, m := range older {
		t := core.Target{Kind: core.ToConn, Name: m.ConnID}
		if msg := notice(p, reason, c.ID()); msg != nil {
			if err := h.Send(ctx, t, msg); err != nil {
				l.log.Warn("user connection limit: notice not sent", "hub", h.Name(), "conn_id", m.ConnID, "err", err)
			}
		}
		if err := h.CloseConns(ctx, t, reason); err != nil {
			l.actions.WithLabelValues(dialect, "error").Inc()
			l.log.Warn("user connection limit: close failed", "hub", h.Name(), "conn_id", m.ConnID, "err", err)
			continue
		}
		closed++
	}
	l.actions.WithLabelValues(dialect, "closed_oldest").Add(float64(closed))
	return closed
}

package core

import (
	"cmp"
	"slices"
	"time"
)

// HubStats counts what a hub holds on this node.
type HubStats struct {
	Conns  int
	Users  int
	Groups int
}

// Stats counts the hub's conns, users with a session and groups with
// members on this node. It takes each shard's lock in turn, so it is a
// moment's view, not an atomic one.
func (h *Hub) Stats() HubStats {
	return HubStats{Conns: h.conns.len(), Users: h.users.count(), Groups: h.groups.count()}
}

// GroupSize is a group and its members on this node.
type GroupSize struct {
	Name    string
	Members int
}

// TopGroups returns the n groups with the most members on this node,
// biggest first (ties by name). It keeps at most n entries while it scans.
func (h *Hub) TopGroups(n int) []GroupSize {
	if n <= 0 {
		return nil
	}
	top := make([]GroupSize, 0, n)
	less := func(a, b GroupSize) int {
		if c := cmp.Compare(b.Members, a.Members); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	}
	h.groups.eachSet(func(name string, members int) {
		g := GroupSize{Name: name, Members: members}
		if len(top) == n {
			if less(g, top[n-1]) >= 0 {
				return
			}
			top = top[:n-1]
		}
		i, _ := slices.BinarySearchFunc(top, g, less)
		top = slices.Insert(top, i, g)
	})
	return top
}

// Queued returns the items and bytes waiting in the conn's outbound queue.
func (c *Conn) Queued() (items, bytes int) {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return len(c.out.items), c.out.bytes
}

// Dialect returns the conn's dialect (its metrics label: "json", "raw", …).
func (c *Conn) Dialect() string { return c.dialect }

// Created returns when the conn connected.
func (c *Conn) Created() time.Time { return c.created }

// count returns the number of non-empty sets.
func (s *setShards) count() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.sets)
		sh.mu.RUnlock()
	}
	return n
}

// ConnState is what the dashboard's inspector shows of a conn.
type ConnState struct {
	UserID      string
	Groups      []string
	Protocol    string
	Dialect     string
	Created     time.Time
	QueuedItems int
	QueuedBytes int
}

// Inspect returns the conn's state.
func (c *Conn) Inspect() *ConnState {
	items, bytes := c.Queued()
	return &ConnState{UserID: c.userID, Groups: c.Groups(), Protocol: c.protocol, Dialect: c.dialect, Created: c.created,
		QueuedItems: items, QueuedBytes: bytes}
}

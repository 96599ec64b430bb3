package core

import "time"

// A hub's life: AcquireHub makes it (only for an authenticated caller) and
// holds it; every conn holds its hub from Connect until it ends (a reliable
// session in its recovery window included), and so does every call that
// keeps hub state while it runs (durable sends and recovering joins, user
// tags). When the last hold is released the hub's reclaim timer is armed;
// when it fires the hub is reclaimed if it is still unheld and idle: no
// conn, no durable turn, no user–group tag (a hub with tags that expire is
// looked at again when the first expires; untimed tags keep it until they
// are removed). Holds are taken under the node's read lock and the reclaim
// decision is made under its write lock, so a held hub is never reclaimed
// and a reclaimed hub is never held again: callers holding a stale pointer
// find it unregistered and are sent to the hub of the name (held) or fail
// with ErrHubReclaimed (Connect). The group streams of history live in the
// history package, keyed by hub name: reclaiming a hub loses no offset nor
// epoch, and the hub made next for the name continues them.

// acquire returns the hub with key, making it when missing, held.
func (n *Node) acquire(key string) (*Hub, error) {
	n.mu.RLock()
	if h := n.hubs[key]; h != nil {
		h.refs.Add(1)
		n.mu.RUnlock()
		return h, nil
	}
	n.mu.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.hubs[key]
	if h == nil {
		if len(n.hubs) >= n.cfg.MaxHubs {
			n.metrics.hubEvents.WithLabelValues("limit").Inc()
			return nil, ErrHubLimit
		}
		h = newHub(n, key)
		h.registered = true
		h.label = n.cfg.HubSeries.acquire(key)
		n.hubs[key] = h
		n.metrics.hubs.Inc()
		n.metrics.hubEvents.WithLabelValues("created").Inc()
	}
	h.refs.Add(1)
	return h, nil
}

// hold takes a hold on h if it is registered.
func (h *Hub) hold() bool {
	n := h.node
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !h.registered {
		return false
	}
	h.refs.Add(1)
	return true
}

// held returns the registered hub of h's name, held: h itself when it is
// registered, else the hub of its name, made if needed (h is a ViewHub
// stand-in or was reclaimed).
func (h *Hub) held() (*Hub, error) {
	if h.hold() {
		return h, nil
	}
	return h.node.acquire(h.name)
}

// release gives back a hold; the last one arms the reclaim timer.
func (h *Hub) release() {
	if h.refs.Add(-1) == 0 {
		h.armReclaim(h.node.cfg.HubIdleTimeout)
	}
}

// armReclaim (re)starts the reclaim timer to fire after d.
func (h *Hub) armReclaim(d time.Duration) {
	h.reclaimMu.Lock()
	defer h.reclaimMu.Unlock()
	if h.reclaimTimer == nil {
		h.reclaimTimer = time.AfterFunc(d, h.tryReclaim)
		return
	}
	h.reclaimTimer.Reset(d)
}

// tryReclaim removes h from its node if it is unheld and idle.
func (h *Hub) tryReclaim() {
	n := h.node
	n.mu.Lock()
	if !h.registered || h.refs.Load() > 0 {
		n.mu.Unlock()
		return // a release arms the timer again
	}
	busy, next := h.busy(time.Now())
	if busy {
		n.mu.Unlock()
		if !next.IsZero() {
			h.armReclaim(time.Until(next))
		}
		return
	}
	delete(n.hubs, h.name)
	h.registered = false
	n.mu.Unlock()
	n.cfg.HubSeries.release(h.label)
	n.metrics.hubs.Dec()
	n.metrics.hubEvents.WithLabelValues("reclaimed").Inc()
	n.log.Debug("idle hub reclaimed", "hub", h.name)
}

// busy reports whether h keeps state beyond its holds, and when the first of
// its expiring user–group tags expires (zero: none, or it keeps untimed
// ones, which only an untag removes).
func (h *Hub) busy(now time.Time) (bool, time.Time) {
	if h.conns.len() > 0 {
		return true, time.Time{}
	}
	for i := range h.seq.shards {
		sh := &h.seq.shards[i]
		sh.mu.Lock()
		turns := len(sh.tails)
		sh.mu.Unlock()
		if turns > 0 {
			return true, time.Time{}
		}
	}
	var next time.Time
	untimed := false
	for i := range h.tags.shards {
		sh := &h.tags.shards[i]
		sh.mu.Lock()
		for user := range sh.users {
			for _, t := range sh.live(user, now) {
				switch {
				case t.expires.IsZero():
					untimed = true
				case next.IsZero() || t.expires.Before(next):
					next = t.expires
				}
			}
		}
		sh.mu.Unlock()
	}
	if untimed {
		return true, time.Time{}
	}
	return !next.IsZero(), next
}

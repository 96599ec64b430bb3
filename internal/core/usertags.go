package core

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MaxUntimedUserTags is how many user–group tags without expiry a user keeps:
// adding one more drops the least recently updated (SignalR: "only the latest
// updated 100 groups will be reserved among all groups the user joined
// without TTL").
const MaxUntimedUserTags = 100

// User–group tags are the SignalR meaning of "add a user to a group": the
// user's current conns join the group, and so does every conn of the user
// that connects before the tag expires. Web PubSub's AddUserToGroup has no
// such memory and does not use them.
//
// Lock order: tag shard → Conn.memberMu → group shard → Conn.mu. Joins and
// leaves done because of a tag happen under the user's tag shard lock, so a
// conn connecting while its user is untagged cannot rejoin the group after
// the untag's leave.

// userTags maps user → group → tag, in shards by user. The zero value is
// ready to use.
type userTags struct {
	used   atomic.Bool // set by the first tag; lets Connect skip the lock
	shards [numShards]tagShard
}

type tagShard struct {
	mu    sync.Mutex
	users map[string]map[string]tag // user → group → tag
	seq   uint64                    // update counter, orders untimed tags
	_     [40]byte                  // keep shards on separate cache lines
}

// tag is one user–group tag.
type tag struct {
	expires time.Time // zero: never
	updated uint64    // shard sequence of the last add, for the untimed cap
}

func (t tag) live(now time.Time) bool { return t.expires.IsZero() || now.Before(t.expires) }

// shard picks the user's shard with FNV-1a (no seed, so the zero value works).
func (u *userTags) shard(user string) *tagShard {
	h := uint32(2166136261)
	for i := 0; i < len(user); i++ {
		h ^= uint32(user[i])
		h *= 16777619
	}
	return &u.shards[h%numShards]
}

// live returns the user's tag set with expired tags dropped; nil when none.
// The caller holds sh.mu.
func (sh *tagShard) live(user string, now time.Time) map[string]tag {
	tags := sh.users[user]
	for g, t := range tags {
		if !t.live(now) {
			delete(tags, g)
		}
	}
	if tags != nil && len(tags) == 0 {
		delete(sh.users, user)
		return nil
	}
	return tags
}

// put records the tag user–group and enforces the untimed cap. The caller
// holds sh.mu.
func (sh *tagShard) put(user, group string, expires time.Time, now time.Time) {
	tags := sh.live(user, now)
	if tags == nil {
		if sh.users == nil {
			sh.users = make(map[string]map[string]tag)
		}
		tags = make(map[string]tag)
		sh.users[user] = tags
	}
	sh.seq++
	tags[group] = tag{expires: expires, updated: sh.seq}
	if !expires.IsZero() {
		return
	}
	untimed, oldest, oldestSeq := 0, "", uint64(0)
	for g, t := range tags {
		if !t.expires.IsZero() {
			continue
		}
		untimed++
		if oldest == "" || t.updated < oldestSeq {
			oldest, oldestSeq = g, t.updated
		}
	}
	if untimed > MaxUntimedUserTags {
		delete(tags, oldest)
	}
}

// TagUserGroup adds user to group the SignalR way: the user's current conns
// join group and, when persist is set, so does every conn of the user that
// connects within ttl (0 = no expiry; only the newest MaxUntimedUserTags
// untimed tags are kept). Adding again replaces the expiry. With persist
// unset (SignalR's ttl=0) only the current conns join and an earlier tag is
// dropped. It fails with ErrInvalidGroup, or ErrGroupLimit when a current
// conn is in too many groups (the tag is kept). A tag is hub state: on a
// ViewHub stand-in it is kept by the hub of its name, made then (which can
// fail with ErrHubLimit); without persist nothing is made.
func (h *Hub) TagUserGroup(user, group string, ttl time.Duration, persist bool) error {
	if !ValidGroupName(group) {
		return fmt.Errorf("%w: %q", ErrInvalidGroup, group)
	}
	if ttl < 0 {
		return fmt.Errorf("core: tag user %q with group %q: negative ttl %v", user, group, ttl)
	}
	if persist {
		var err error
		if h, err = h.held(); err != nil {
			return err
		}
	} else if !h.hold() {
		return nil // a hub the node does not hold has no conns and no tag to drop
	}
	defer h.release() // arms the reclaim timer, which keeps a tagged hub
	sh := h.tags.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := time.Now()
	if persist {
		var expires time.Time
		if ttl > 0 {
			expires = now.Add(ttl)
		}
		h.tags.used.Store(true)
		sh.put(user, group, expires, now)
	} else if tags := sh.live(user, now); tags != nil {
		delete(tags, group)
		if len(tags) == 0 {
			delete(sh.users, user)
		}
	}
	var firstErr error
	for _, c := range h.users.snapshot(user) {
		if err := h.join(c, group); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("core: add conn %q of user %q to group %q: %w", c.id, user, group, err)
		}
	}
	return firstErr
}

// UntagUserGroup removes the tag user–group and takes the user's current
// conns out of group; with group "" it removes every tag of the user and
// takes its conns out of every group.
func (h *Hub) UntagUserGroup(user, group string) {
	if !h.hold() {
		return // not the node's hub: it has neither tags nor conns
	}
	defer h.release() // a hub left without tags can be reclaimed
	sh := h.tags.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if group == "" {
		delete(sh.users, user)
	} else if tags := sh.users[user]; tags != nil {
		delete(tags, group)
		if len(tags) == 0 {
			delete(sh.users, user)
		}
	}
	for _, c := range h.users.snapshot(user) {
		if group == "" {
			h.LeaveAllGroups(c)
		} else {
			h.leave(c, group)
		}
	}
}

// UserInGroup reports whether user holds an unexpired tag for group or has
// a current conn in it.
func (h *Hub) UserInGroup(user, group string) bool {
	sh := h.tags.shard(user)
	sh.mu.Lock()
	_, tagged := sh.live(user, time.Now())[group]
	sh.mu.Unlock()
	if tagged {
		return true
	}
	for _, c := range h.users.snapshot(user) {
		if c.InGroup(group) {
			return true
		}
	}
	return false
}

// UserTags returns the groups user is tagged with and not expired, in no
// particular order.
func (h *Hub) UserTags(user string) []string {
	sh := h.tags.shard(user)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tags := sh.live(user, time.Now())
	groups := make([]string, 0, len(tags))
	for g := range tags {
		groups = append(groups, g)
	}
	return groups
}

// joinTagged joins the new conn c to its user's unexpired tagged groups;
// Connect calls it once c is in the user index. A group the conn has no room
// for is skipped.
func (h *Hub) joinTagged(c *Conn) {
	if c.userID == "" || !h.tags.used.Load() {
		return
	}
	sh := h.tags.shard(c.userID)
	sh.mu.Lock()
	var added []string
	for g := range sh.live(c.userID, time.Now()) {
		ok, err := h.addMember(c, g)
		if err != nil {
			h.node.log.Debug("tagged group not joined", "hub", h.name, "conn_id", c.id,
				"user_id", c.userID, "group", g, "err", err)
		}
		if ok {
			added = append(added, g)
		}
	}
	sh.mu.Unlock()
	h.awaitGroups(added) // outside the lock: a NATS round trip in a cluster
	h.joinedGroups(c, added)
}

package core

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Presence: who is online in a hub or a group, cluster-wide. A node answers
// for its own conns (ListUsers, Presence); Hub.Do asks every node and merges
// (mergeUsers, mergePresence), as it does for a group's connection listing.

// UserPresence is one entry of a users listing: a user and how many of its
// connections are online (in the group listed, or in the hub).
type UserPresence struct {
	UserID string
	Conns  int
}

// SketchSize is how many hashes a presence count carries per kind (users,
// groups). Up to that many distinct names a merged count is exact; beyond
// it, it is estimated from the smallest hashes (k minimum values), with a
// relative error of about 1/sqrt(SketchSize), 1.6%.
const SketchSize = 4096

// Presence is a hub's counts: a node's own (Hub.Presence) or, merged, the
// cluster's (Hub.Do with ReqPresence).
type Presence struct {
	Conns  int // connections
	Users  int // distinct user ids of connections that have one
	Groups int // distinct groups with a member
	// UserHashes and GroupHashes are the SketchSize smallest 64-bit
	// hashes of the user ids and group names, ascending: what lets the
	// nodes' counts be merged without double counting a user (or group)
	// present on several nodes.
	UserHashes, GroupHashes []uint64
	// Approximate is set when Users or Groups is an estimate (more than
	// SketchSize distinct names in the cluster).
	Approximate bool
}

// ListUsers returns up to limit users with connections online in group
// (every connection of the hub when group is ""), whose ids sort after
// after, in user-id order with their connection counts, and whether more
// follow. Connections without a user id are not listed.
func (h *Hub) ListUsers(group, after string, limit int) (page []UserPresence, more bool) {
	// The limit+1 smallest user ids after the cursor, kept in a bounded
	// max-heap: a page of a big hub holds limit+1 entries, not the hub.
	top := userHeap{max: limit + 1}
	if group == "" {
		h.users.eachSet(func(user string, n int) {
			if user > after {
				top.offer(UserPresence{UserID: user, Conns: n})
			}
		})
	} else {
		// A group's members are counted per user first (the group's conns
		// are what a connection listing copies too).
		counts := make(map[string]int)
		h.groups.each(group, func(c *Conn) {
			if c.userID != "" && c.userID > after {
				counts[c.userID]++
			}
		})
		for u, n := range counts {
			top.offer(UserPresence{UserID: u, Conns: n})
		}
	}
	page = top.h
	slices.SortFunc(page, func(a, b UserPresence) int { return strings.Compare(a.UserID, b.UserID) })
	if len(page) > limit {
		page, more = page[:limit], true
	}
	return page, more
}

// userHeap keeps the max entries of smallest user id offered (a max-heap
// on the id).
type userHeap struct {
	h   []UserPresence
	max int
}

func (u *userHeap) offer(p UserPresence) {
	if len(u.h) < u.max {
		u.h = append(u.h, p)
		for i := len(u.h) - 1; i > 0; {
			parent := (i - 1) / 2
			if u.h[parent].UserID >= u.h[i].UserID {
				break
			}
			u.h[parent], u.h[i] = u.h[i], u.h[parent]
			i = parent
		}
		return
	}
	if p.UserID >= u.h[0].UserID {
		return
	}
	u.h[0] = p
	for i := 0; ; {
		l, big := 2*i+1, i
		if l < len(u.h) && u.h[l].UserID > u.h[big].UserID {
			big = l
		}
		if r := l + 1; r < len(u.h) && u.h[r].UserID > u.h[big].UserID {
			big = r
		}
		if big == i {
			return
		}
		u.h[i], u.h[big] = u.h[big], u.h[i]
		i = big
	}
}

// Presence returns this node's counts of h.
func (h *Hub) Presence() Presence {
	p := Presence{Conns: h.conns.len()}
	var users, groups sketch
	h.users.eachSet(func(name string, _ int) { users.add(name); p.Users++ })
	h.groups.eachSet(func(name string, _ int) { groups.add(name); p.Groups++ })
	p.UserHashes, p.GroupHashes = users.sorted(), groups.sorted()
	return p
}

// sketch keeps the SketchSize smallest distinct hashes of the names added
// (a max-heap of them, so that a larger hash is dropped in O(log k)).
type sketch struct{ h []uint64 }

func hashName(s string) uint64 { return xxhash.Sum64String(s) }

func (s *sketch) add(name string) {
	v := hashName(name)
	if len(s.h) < SketchSize {
		s.h = append(s.h, v)
		s.up(len(s.h) - 1)
		return
	}
	if v >= s.h[0] {
		return
	}
	s.h[0] = v
	s.down(0)
}

func (s *sketch) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if s.h[p] >= s.h[i] {
			return
		}
		s.h[p], s.h[i] = s.h[i], s.h[p]
		i = p
	}
}

func (s *sketch) down(i int) {
	for {
		l, big := 2*i+1, i
		if l < len(s.h) && s.h[l] > s.h[big] {
			big = l
		}
		if r := l + 1; r < len(s.h) && s.h[r] > s.h[big] {
			big = r
		}
		if big == i {
			return
		}
		s.h[i], s.h[big] = s.h[big], s.h[i]
		i = big
	}
}

// sorted returns the hashes ascending, without duplicates (two names of
// one hash, 2^-64 apart, count once).
func (s *sketch) sorted() []uint64 {
	slices.Sort(s.h)
	return slices.Compact(s.h)
}

// mergeUsers merges the nodes' pages of a users listing: each has a node's
// first limit users after one cursor, in user-id order, with its local
// counts. A user among the cluster's first limit is among the first limit
// of every node that has it, so the union's first limit users, their
// counts summed, are the cluster's page; more follow if any node had more
// or the union is longer.
func mergeUsers(rs []Reply, limit int) Reply {
	var out Reply
	sum := make(map[string]int)
	for _, r := range rs {
		out.More = out.More || r.More
		if r.Err != nil && out.Err == nil {
			out.Err = r.Err
		}
		for _, u := range r.Users {
			sum[u.UserID] += u.Conns
		}
	}
	out.Users = make([]UserPresence, 0, len(sum))
	for u, n := range sum {
		out.Users = append(out.Users, UserPresence{UserID: u, Conns: n})
	}
	slices.SortFunc(out.Users, func(a, b UserPresence) int { return strings.Compare(a.UserID, b.UserID) })
	if len(out.Users) > limit {
		out.Users, out.More = out.Users[:limit], true
	}
	return out
}

// mergePresence merges the nodes' counts: connections add up; users and
// groups are the distinct hashes of the union, exact while there are at
// most SketchSize of them and every node sent all of its own, else
// estimated from the SketchSize-th smallest hash (k minimum values) and
// kept between the largest node's count and the sum of the nodes'.
func mergePresence(rs []Reply) Reply {
	var out Reply
	var users, groups [][]uint64
	var userCounts, groupCounts []int
	for _, r := range rs {
		if r.Err != nil && out.Err == nil {
			out.Err = r.Err
		}
		if r.Presence == nil {
			continue
		}
		p := r.Presence
		users, groups = append(users, p.UserHashes), append(groups, p.GroupHashes)
		userCounts, groupCounts = append(userCounts, p.Users), append(groupCounts, p.Groups)
	}
	m := &Presence{}
	for _, r := range rs {
		if r.Presence != nil {
			m.Conns += r.Presence.Conns
		}
	}
	var approxU, approxG bool
	m.UserHashes, m.Users, approxU = mergeSketches(users, userCounts)
	m.GroupHashes, m.Groups, approxG = mergeSketches(groups, groupCounts)
	m.Approximate = approxU || approxG
	out.Presence = m
	return out
}

// mergeSketches returns the SketchSize smallest distinct hashes of the
// union, its distinct count (estimated or exact), and whether it is
// estimated.
func mergeSketches(sk [][]uint64, counts []int) (hashes []uint64, n int, approx bool) {
	complete := true
	largest, total := 0, 0
	for i, s := range sk {
		hashes = append(hashes, s...)
		if counts[i] > len(s) {
			complete = false
		}
		largest, total = max(largest, counts[i]), total+counts[i]
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	if len(hashes) > SketchSize {
		hashes = hashes[:SketchSize]
		complete = false
	}
	if complete {
		return hashes, len(hashes), false
	}
	// k minimum values: the k-th smallest of n uniform hashes is near
	// k/n of the range, so n ≈ (k-1) / (h_k / 2^64).
	kth := float64(hashes[len(hashes)-1]) / math.Exp2(64)
	est := int(math.Round(float64(len(hashes)-1) / kth))
	return hashes, cmp.Or(min(max(est, largest), total), len(hashes)), true
}

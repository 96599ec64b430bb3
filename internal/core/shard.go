package core

import (
	"hash/maphash"
	"sync"
)

const numShards = 64

// setShards maps names (groups or users) to conn sets, split over 64 shards
// so that sends to different names never share a lock.
type setShards struct {
	seed   maphash.Seed
	shards [numShards]setShard
	// first and last, if set, are called under the shard's lock when the
	// set called name is made (its first member joined) and dropped (its
	// last left), so that the calls for one name never cross (see
	// Interest).
	first, last func(name string)
	// counted, if set, is called with +1 when a set is made and -1 when
	// it is dropped (the presence gauges).
	counted func(delta float64)
}

type setShard struct {
	mu   sync.RWMutex
	sets map[string]*connSet
	_    [40]byte // keep shards on separate cache lines
}

// init seeds the shards; their maps are made on first add, so an empty
// hub (a ViewHub stand-in, a hub of one conn) costs little.
func (s *setShards) init() { s.seed = maphash.MakeSeed() }

func (s *setShards) shard(name string) *setShard {
	return &s.shards[maphash.String(s.seed, name)%numShards]
}

// add puts c in the set called name; it reports whether c was new there.
func (s *setShards) add(name string, c *Conn) bool {
	sh := s.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	set := sh.sets[name]
	if set == nil {
		if sh.sets == nil {
			sh.sets = make(map[string]*connSet)
		}
		set = &connSet{}
		sh.sets[name] = set
		if s.first != nil {
			s.first(name)
		}
		if s.counted != nil {
			s.counted(1)
		}
	}
	return set.add(c)
}

// remove takes c out of the set called name, dropping empty sets.
func (s *setShards) remove(name string, c *Conn) bool {
	sh := s.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	set := sh.sets[name]
	if set == nil || !set.remove(c) {
		return false
	}
	if set.len() == 0 {
		delete(sh.sets, name)
		if s.last != nil {
			s.last(name)
		}
		if s.counted != nil {
			s.counted(-1)
		}
	}
	return true
}

// each calls fn for every conn in the set called name, under the shard's
// read lock; fn must not block nor take shard locks.
func (s *setShards) each(name string, fn func(*Conn)) {
	sh := s.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if set := sh.sets[name]; set != nil {
		for _, c := range set.list {
			fn(c)
		}
	}
}

// snapshot returns a copy of the set called name.
func (s *setShards) snapshot(name string) []*Conn {
	sh := s.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if set := sh.sets[name]; set != nil {
		return append([]*Conn(nil), set.list...)
	}
	return nil
}

// has reports whether the set called name has members.
func (s *setShards) has(name string) bool {
	sh := s.shard(name)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.sets[name] != nil
}

// connShards maps conn ids to conns, sharded like setShards.
type connShards struct {
	seed   maphash.Seed
	shards [numShards]connShard
}

type connShard struct {
	mu    sync.RWMutex
	byID  map[string]*Conn
	conns connSet
	_     [16]byte
}

// init seeds the shards; their maps are made on first add.
func (s *connShards) init() { s.seed = maphash.MakeSeed() }

func (s *connShards) shard(id string) *connShard {
	return &s.shards[maphash.String(s.seed, id)%numShards]
}

func (s *connShards) add(c *Conn) {
	sh := s.shard(c.id)
	sh.mu.Lock()
	if sh.byID == nil {
		sh.byID = make(map[string]*Conn)
	}
	sh.byID[c.id] = c
	sh.conns.add(c)
	sh.mu.Unlock()
}

func (s *connShards) remove(c *Conn) bool {
	sh := s.shard(c.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.byID[c.id] != c {
		return false
	}
	delete(sh.byID, c.id)
	sh.conns.remove(c)
	return true
}

func (s *connShards) get(id string) *Conn {
	sh := s.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.byID[id]
}

// each calls fn for every conn, one shard at a time under its read lock.
func (s *connShards) each(fn func(*Conn)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, c := range sh.conns.list {
			fn(c)
		}
		sh.mu.RUnlock()
	}
}

func (s *connShards) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += sh.conns.len()
		sh.mu.RUnlock()
	}
	return n
}

// eachSet calls fn with the name and size of every set, one shard at a
// time under its read lock; fn must not block nor take shard locks.
func (s *setShards) eachSet(fn func(name string, n int)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for name, set := range sh.sets {
			fn(name, set.len())
		}
		sh.mu.RUnlock()
	}
}

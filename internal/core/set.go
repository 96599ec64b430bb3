package core

// connSet is an ordered set of conns: a slice for fast iteration during
// fan-out and an index for O(1) removal.
type connSet struct {
	list  []*Conn
	index map[*Conn]int
}

func (s *connSet) add(c *Conn) bool {
	if _, ok := s.index[c]; ok {
		return false
	}
	if s.index == nil {
		s.index = make(map[*Conn]int)
	}
	s.index[c] = len(s.list)
	s.list = append(s.list, c)
	return true
}

func (s *connSet) remove(c *Conn) bool {
	i, ok := s.index[c]
	if !ok {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		s.index[s.list[i]] = i
	}
	s.list[last] = nil
	s.list = s.list[:last]
	delete(s.index, c)
	return true
}

func (s *connSet) len() int { return len(s.list) }

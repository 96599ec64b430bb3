package core

import (
	"slices"

	"github.com/switchboardhq/switchboard/internal/odata"
)

// TargetKind says whom a send or close addresses.
type TargetKind uint8

// Target kinds.
const (
	ToAll TargetKind = iota
	ToGroup
	ToUser
	ToConn
)

func (k TargetKind) String() string {
	return [...]string{"all", "group", "user", "conn"}[k]
}

// Target selects conns of a hub.
type Target struct {
	Kind     TargetKind
	Name     string        // group, user or conn id
	Excluded []string      // conn ids left out
	Filter   *odata.Filter // nil: everyone the kind selects
}

// OpKind is what an Op does to the conns it targets.
type OpKind uint8

// Operation kinds.
const (
	OpSend       OpKind = iota // queue Message
	OpClose                    // close with Reason
	OpPresence                 // a node's change of User's presence in the Target group (member notifications)
	OpGroupState               // a conn's group state change (Message of type GroupState) for the group's subscribers
)

// Op is one operation carried by the Broker.
type Op struct {
	Hub     string
	Kind    OpKind
	Target  Target
	Message *Message
	Reason  string
	// SkipConn leaves out the sending conn (noEcho); "" when unused.
	SkipConn string
	// OpPresence: the user, whether the node Origin has it in the group
	// now (true) or no longer (false), and that node's id.
	User    string
	Present bool
	Origin  string
}

// matcher decides, for one op, whether a conn is a recipient.
type matcher struct {
	excluded []string
	skip     string
	filter   *odata.Filter
}

func newMatcher(op *Op) matcher {
	return matcher{excluded: op.Target.Excluded, skip: op.SkipConn, filter: op.Target.Filter}
}

func (m *matcher) match(c *Conn) bool {
	if m.skip != "" && c.id == m.skip {
		return false
	}
	if len(m.excluded) > 0 && slices.Contains(m.excluded, c.id) {
		return false
	}
	if m.filter != nil {
		c.mu.Lock()
		ok := m.filter.Match(c)
		c.mu.Unlock()
		return ok
	}
	return true
}

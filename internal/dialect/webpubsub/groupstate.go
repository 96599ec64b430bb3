package webpubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

// Group state (setGroupState, subscribeGroupState, unsubscribeGroupState;
// groupStateSnapshot and groupStateUpdate frames), as the JSON protocol
// models of @azure/web-pubsub-client 1.1.0 carry them. The service does not
// document its rules; Switchboard's (README "Group state"):
//
//   - setGroupState: the connection must be in the group and may send to it
//     (a state is seen by the group's subscribers, as a message would be);
//     state is an object of string values, at most maxStateKeys keys of
//     1 to maxStateKey bytes, at most maxStateBytes bytes once compacted;
//     no state (or null) clears the entry. At most core.MaxStateGroups
//     groups with an entry per connection.
//   - subscribeGroupState: the connection must be in the group. The ack,
//     then a groupStateSnapshot of every entry, then groupStateUpdate frames
//     as entries change or go (cleared: an item without state).
//   - An entry and a subscription end when the connection leaves the group
//     or ends (a reliable session only when its recovery window ends).
//   - State frames are not sequenced: the 1.1.0 client neither acknowledges
//     nor deduplicates them, so they are not replayed after a recovery.
const (
	maxStateKeys  = 16
	maxStateKey   = 128
	maxStateBytes = 1024
)

// parseState validates a setGroupState's state: nil for a clear, else the
// compacted object (keys sorted).
func parseState(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var vals map[string]*string // a null value decodes to nil, not ""
	if err := json.Unmarshal(raw, &vals); err != nil || vals == nil {
		return nil, errors.New("state must be an object of string values")
	}
	m := make(map[string]string, len(vals))
	for k, v := range vals {
		if v == nil {
			return nil, errors.New("state must be an object of string values")
		}
		m[k] = *v
	}
	if len(m) > maxStateKeys {
		return nil, fmt.Errorf("state has %d keys; at most %d", len(m), maxStateKeys)
	}
	for k := range m {
		if k == "" || len(k) > maxStateKey || !utf8.ValidString(k) {
			return nil, fmt.Errorf("state key %s must be 1 to %d bytes", excerpt.Quote(k), maxStateKey)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateBytes {
		return nil, fmt.Errorf("state is %d bytes; at most %d", len(b), maxStateBytes)
	}
	return b, nil
}

// groupState serves setGroupState, subscribeGroupState and
// unsubscribeGroupState.
func (s *session) groupState(r *request) error {
	if !core.ValidGroupName(r.Group) {
		return s.reject(r, "bad_group", ackBadRequest, "invalid group name: it must be 1 to 1024 characters and not only whitespace")
	}
	ctx := context.Background()
	switch r.Type {
	case "setGroupState":
		state, err := parseState(r.State)
		if err != nil {
			return s.reject(r, "bad_state", ackBadRequest, excerpt.Error(err))
		}
		if !s.conn.Can(core.PermSend, r.Group) {
			return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection has no permission to send to group %s, so it may not set its state there", excerpt.Quote(r.Group)))
		}
		err = s.hub.SetGroupState(ctx, s.conn, r.Group, state)
		switch {
		case errors.Is(err, core.ErrForbidden):
			return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection is not in group %s", excerpt.Quote(r.Group)))
		case errors.Is(err, core.ErrGroupLimit):
			return s.reject(r, "group_state_limit", ackBadRequest, fmt.Sprintf("the connection already has a state in %d groups", core.MaxStateGroups))
		case err != nil:
			return s.reject(r, "internal", ackInternal, excerpt.Error(err))
		}
	case "subscribeGroupState":
		items, release, err := s.hub.SubscribeGroupState(ctx, s.conn, r.Group)
		switch {
		case errors.Is(err, core.ErrForbidden):
			return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection is not in group %s", excerpt.Quote(r.Group)))
		case err != nil:
			return s.reject(r, "internal", ackInternal, excerpt.Error(err))
		}
		if r.AckID != nil {
			s.conn.Send(encodeAck(*r.AckID, "", ""))
		}
		s.conn.Send(encodeSnapshot(r.Group, items))
		release(s.conn.SendMessage)
		return nil
	case "unsubscribeGroupState":
		s.hub.UnsubscribeGroupState(s.conn, r.Group)
	}
	if r.AckID != nil {
		s.conn.Send(encodeAck(*r.AckID, "", ""))
	}
	return nil
}

// encodeSnapshot is a groupStateSnapshot frame.
func encodeSnapshot(group string, items []core.StateItem) core.Frame {
	b := append([]byte(nil), `{"type":"groupStateSnapshot","group":`...)
	b = jsonstring.Append(b, group)
	b = append(b, `,"items":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendStateItem(b, it.ConnID, it.UserID, it.State, it.At)
	}
	return core.Frame{Data: append(b, "]}"...)}
}

// encodeStateUpdate is the groupStateUpdate frame of a core.GroupState
// message.
func encodeStateUpdate(m *core.Message) []byte {
	b := append([]byte(nil), `{"type":"groupStateUpdate","group":`...)
	b = jsonstring.Append(b, m.Group)
	b = append(b, `,"items":[`...)
	b = appendStateItem(b, m.StateConn, m.FromUserID, m.Data, m.StateAt)
	return append(b, "]}"...)
}

// appendStateItem appends a GroupStateItem: connectionId, userId (absent
// when anonymous), state (absent when cleared), updatedAt.
func appendStateItem(b []byte, conn, user string, state []byte, at int64) []byte {
	b = append(b, `{"connectionId":`...)
	b = jsonstring.Append(b, conn)
	if user != "" {
		b = append(b, `,"userId":`...)
		b = jsonstring.Append(b, user)
	}
	if len(state) > 0 {
		b = append(b, `,"state":`...)
		b = append(b, state...)
	}
	b = append(b, `,"updatedAt":`...)
	b = strconv.AppendInt(b, at, 10)
	return append(b, '}')
}

package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// Requests: what reads or changes the state of conns held by another node
// (core.Request) goes to that node by NATS request/reply on
// sb.<ns>.node.<node id>.req, which each node serves for its own conns on a
// subscription of its own (see core/remote.go for what a request does).
//
// Request envelope:
//
//	version  byte (requestV1)
//	kind     byte (core.ReqKind)
//	perm     byte (core.Permission)
//	flags    byte (reqPersist)
//	hub, conn, user, group, filter   string each
//	groups   uvarint count, then that many strings
//	ttl      uvarint, nanoseconds
//	after    string (a listing's cursor)
//	limit    uvarint (a listing's page size, at most maxListLimit)
//	id       string (an invocation's id)
//	wait     uvarint, nanoseconds (an invocation's wait for the client's answer)
//	data     bytes (frames to deliver; an invocation)
//
// Reply envelope:
//
//	version  byte (requestV1)
//	flags    byte (replyOK)
//	error    byte (one of replyErrors' codes; 0: none)
//	message  string (the error's text, when error is not 0)
//	members  uvarint count, then conn id and user id strings each
//	         (a listing's page; flag replyMore: more follow)
//	protocol string (the conn's protocol, for a conn existence check)
//	result   bytes, then the client's error string (an invocation's
//	         answer; flag replyHasResult: the client returned a value)
//
// and, only with flag replyPresence (a node of an older version sends
// neither the flag nor the section):
//
//	users    uvarint count, then user id string and uvarint connection
//	         count each (a users listing's page; flag replyMore as above)
//	node     string (the id of the node whose users they are)
//	counts   uvarint connections, users, groups (a hub's presence)
//	hashes   uvarint count, then that many 8-byte big-endian hashes, for
//	         the users and then for the groups (ascending, at most
//	         core.SketchSize each)
//	states   uvarint count (at most core.MaxSnapshotItems), then conn id
//	         and user id strings, state bytes and uvarint time (Unix ms)
//	         each (a group's state entries)
//	state    with flag replyHasState only (an inspection): user string,
//	         groups uvarint count then strings, protocol and dialect
//	         strings, created uvarint (Unix nanoseconds), queued items and
//	         bytes uvarints
const requestV1 = 1

const (
	replyOK        = 1 << 0
	replyMore      = 1 << 1
	replyHasResult = 1 << 2
	replyPresence  = 1 << 3
	replyHasState  = 1 << 4
)

// maxListLimit bounds the page a listing request may ask a node for (the
// REST APIs ask at most 200).
const maxListLimit = 1000

const reqPersist = 1 << 0

// maxAwaiting bounds the invocations (SignalR :invoke) a node runs at once
// for other nodes' REST calls, each waiting for its client's answer; beyond
// it the request fails at once (an error the asking node reports as the
// other node's failure) rather than holding more goroutines.
const maxAwaiting = 4096

// maxRequestGroups bounds the groups a decoded request may carry.
const maxRequestGroups = 1 << 16

// replyErrors are the core errors a reply carries as themselves, so that
// the asking node's REST layer maps them as it maps a local one; any other
// error crosses as errRemote with its text. Code i+1 is replyErrors[i];
// codes are part of the envelope: append only.
var replyErrors = [...]error{core.ErrConnNotFound, core.ErrUserNotFound, core.ErrGroupLimit, core.ErrInvalidGroup, core.ErrInvalidHub, core.ErrForbidden, core.ErrHubLimit,
	core.ErrInvocationTimeout, core.ErrInvocationClosed, core.ErrInvocationID}

const codeRemote = 255

// errRemote is an error a node answered that is none of replyErrors.
var errRemote = errors.New("cluster: the node holding the connection failed")

// errRequest is the cause of every request or reply decoding failure.
var errRequest = errors.New("cluster: bad request envelope")

func encodeRequest(dst []byte, r *core.Request) []byte {
	flags := byte(0)
	if r.Persist {
		flags |= reqPersist
	}
	dst = append(dst, requestV1, byte(r.Kind), byte(r.Perm), flags)
	filter := ""
	if r.Filter != nil {
		filter = r.Filter.String()
	}
	for _, s := range [...]string{r.Hub, r.Conn, r.User, r.Group, filter} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Groups)))
	for _, g := range r.Groups {
		dst = appendString(dst, g)
	}
	dst = binary.AppendUvarint(dst, uint64(max(r.TTL, 0)))
	dst = appendString(dst, r.After)
	dst = binary.AppendUvarint(dst, uint64(max(r.Limit, 0)))
	dst = appendString(dst, r.ID)
	dst = binary.AppendUvarint(dst, uint64(max(r.Wait, 0)))
	return appendString(dst, string(r.Data))
}

func decodeRequest(b []byte) (*core.Request, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != requestV1 {
		return nil, fmt.Errorf("%w: version %d", errRequest, v)
	}
	r := &core.Request{Kind: core.ReqKind(d.byte()), Perm: core.Permission(d.byte())}
	flags := d.byte()
	r.Persist = flags&reqPersist != 0
	r.Hub, r.Conn, r.User, r.Group = d.string(), d.string(), d.string(), d.string()
	filter := d.string()
	n := d.uvarint()
	if d.err == nil && (n > maxRequestGroups || n > uint64(len(d.b))) {
		return nil, fmt.Errorf("%w: %d groups", errRequest, n)
	}
	if n > 0 {
		r.Groups = make([]string, 0, n)
	}
	for range n {
		r.Groups = append(r.Groups, d.string())
	}
	ttl := d.uvarint()
	r.After = d.string()
	limit := d.uvarint()
	r.ID = d.string()
	wait := d.uvarint()
	if data := d.bytes(); len(data) > 0 {
		r.Data = append([]byte(nil), data...)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", errRequest, d.err)
	}
	if wait > uint64(core.MaxInvocationWait) {
		return nil, fmt.Errorf("%w: wait %d", errRequest, wait)
	}
	r.Wait = time.Duration(wait)
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the end", errRequest, len(d.b))
	}
	if !r.Kind.Valid() {
		return nil, fmt.Errorf("%w: kind %d", errRequest, r.Kind)
	}
	if flags&^reqPersist != 0 {
		return nil, fmt.Errorf("%w: flags %#x", errRequest, flags)
	}
	if ttl > math.MaxInt64 {
		return nil, fmt.Errorf("%w: ttl %d", errRequest, ttl)
	}
	r.TTL = time.Duration(ttl)
	if limit > maxListLimit {
		return nil, fmt.Errorf("%w: limit %d", errRequest, limit)
	}
	r.Limit = int(limit)
	if _, ok := core.ParsePermission(permName(r.Perm)); !ok {
		return nil, fmt.Errorf("%w: permission %d", errRequest, r.Perm)
	}
	if filter != "" {
		f, err := odata.Parse(filter)
		if err != nil {
			return nil, fmt.Errorf("%w: filter: %w", errRequest, err)
		}
		r.Filter = f
	}
	return r, nil
}

// permName is the REST name of p, "" if it has none.
func permName(p core.Permission) string {
	switch p {
	case core.PermJoinLeave:
		return "joinLeaveGroup"
	case core.PermSend:
		return "sendToGroup"
	}
	return ""
}

func encodeReply(dst []byte, r core.Reply) []byte {
	flags := byte(0)
	if r.OK {
		flags |= replyOK
	}
	if r.More {
		flags |= replyMore
	}
	if r.Result.HasResult {
		flags |= replyHasResult
	}
	if len(r.Users) > 0 || r.Presence != nil || r.Node != "" || len(r.States) > 0 {
		flags |= replyPresence
	}
	if r.State != nil {
		flags |= replyHasState
	}
	code, msg := byte(0), ""
	if r.Err != nil {
		code, msg = codeRemote, r.Err.Error()
		for i, e := range replyErrors {
			if errors.Is(r.Err, e) {
				code = byte(i + 1)
				break
			}
		}
	}
	dst = append(dst, requestV1, flags, code)
	dst = appendString(dst, msg)
	dst = binary.AppendUvarint(dst, uint64(len(r.Members)))
	for _, m := range r.Members {
		dst = appendString(dst, m.ConnID)
		dst = appendString(dst, m.UserID)
	}
	dst = appendString(dst, r.Protocol)
	dst = appendString(dst, string(r.Result.Result))
	dst = appendString(dst, r.Result.Error)
	if flags&replyPresence != 0 {
		dst = appendPresence(dst, r)
	}
	if st := r.State; st != nil {
		dst = appendString(dst, st.UserID)
		dst = binary.AppendUvarint(dst, uint64(len(st.Groups)))
		for _, g := range st.Groups {
			dst = appendString(dst, g)
		}
		dst = appendString(dst, st.Protocol)
		dst = appendString(dst, st.Dialect)
		dst = binary.AppendUvarint(dst, uint64(max(st.Created.UnixNano(), 0)))
		dst = binary.AppendUvarint(dst, uint64(st.QueuedItems))
		dst = binary.AppendUvarint(dst, uint64(st.QueuedBytes))
	}
	// The members' connect times (a user's conns, core.ReqUserConns) follow
	// only when there are some, so that every other reply is as before and a
	// node of an earlier version reads it.
	if slices.ContainsFunc(r.Members, func(m core.GroupMember) bool { return !m.Connected.IsZero() }) {
		for _, m := range r.Members {
			dst = binary.AppendVarint(dst, m.Connected.UnixNano())
		}
	}
	return dst
}

// appendPresence appends a reply's presence section (users, node, counts,
// sketches, group state entries).
func appendPresence(dst []byte, r core.Reply) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(r.Users)))
	for _, u := range r.Users {
		dst = appendString(dst, u.UserID)
		dst = binary.AppendUvarint(dst, uint64(max(u.Conns, 0)))
	}
	dst = appendString(dst, r.Node)
	p := r.Presence
	if p == nil {
		p = &core.Presence{}
	}
	for _, n := range [...]int{p.Conns, p.Users, p.Groups} {
		dst = binary.AppendUvarint(dst, uint64(max(n, 0)))
	}
	for _, hs := range [...][]uint64{p.UserHashes, p.GroupHashes} {
		dst = binary.AppendUvarint(dst, uint64(len(hs)))
		for _, h := range hs {
			dst = binary.BigEndian.AppendUint64(dst, h)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.States)))
	for _, it := range r.States {
		dst = appendString(dst, it.ConnID)
		dst = appendString(dst, it.UserID)
		dst = appendString(dst, string(it.State))
		dst = binary.AppendUvarint(dst, uint64(max(it.At, 0)))
	}
	return dst
}

// maxPresenceCount bounds a count a reply's presence section may carry.
const maxPresenceCount = 1 << 40

// decodePresence reads a reply's presence section into r.
func decodePresence(d *decoder, r *core.Reply) error {
	n := d.uvarint()
	if d.err == nil && (n > maxListLimit || n > uint64(len(d.b))) {
		return fmt.Errorf("%w: %d users", errRequest, n)
	}
	if n > 0 {
		r.Users = make([]core.UserPresence, 0, n)
	}
	for range n {
		u := core.UserPresence{UserID: d.string()}
		c := d.uvarint()
		if c > maxPresenceCount {
			return fmt.Errorf("%w: user count %d", errRequest, c)
		}
		u.Conns = int(c)
		r.Users = append(r.Users, u)
	}
	r.Node = d.string()
	p := &core.Presence{}
	for _, dst := range [...]*int{&p.Conns, &p.Users, &p.Groups} {
		c := d.uvarint()
		if c > maxPresenceCount {
			return fmt.Errorf("%w: presence count %d", errRequest, c)
		}
		*dst = int(c)
	}
	for _, dst := range [...]*[]uint64{&p.UserHashes, &p.GroupHashes} {
		k := d.uvarint()
		if d.err == nil && (k > core.SketchSize || k*8 > uint64(len(d.b))) {
			return fmt.Errorf("%w: %d hashes", errRequest, k)
		}
		if k > 0 {
			*dst = make([]uint64, k)
			for i := range *dst {
				(*dst)[i] = binary.BigEndian.Uint64(d.b[:8])
				d.b = d.b[8:]
			}
		}
	}
	n = d.uvarint()
	if d.err == nil && (n > core.MaxSnapshotItems || n > uint64(len(d.b))) {
		return fmt.Errorf("%w: %d state entries", errRequest, n)
	}
	if n > 0 {
		r.States = make([]core.StateItem, 0, n)
	}
	for range n {
		it := core.StateItem{ConnID: d.string(), UserID: d.string()}
		if st := d.bytes(); len(st) > 0 {
			it.State = append([]byte(nil), st...)
		}
		at := d.uvarint()
		if at > math.MaxInt64 {
			return fmt.Errorf("%w: state time %d", errRequest, at)
		}
		it.At = int64(at)
		r.States = append(r.States, it)
	}
	if d.err != nil {
		return fmt.Errorf("%w: %w", errRequest, d.err)
	}
	r.Presence = p
	return nil
}

// decodeState reads the state of an inspection's reply.
func decodeState(d *decoder) *core.ConnState {
	st := &core.ConnState{UserID: d.string()}
	if n := d.uvarint(); d.err == nil {
		if n > uint64(len(d.b)) {
			d.err = fmt.Errorf("%d groups", n)
			return nil
		}
		for range n {
			st.Groups = append(st.Groups, d.string())
		}
	}
	st.Protocol, st.Dialect = d.string(), d.string()
	created := d.uvarint()
	if created > math.MaxInt64 {
		d.err = fmt.Errorf("created %d", created)
		return nil
	}
	st.Created = time.Unix(0, int64(created))
	items, bytes := d.uvarint(), d.uvarint()
	if items > math.MaxInt32 || bytes > math.MaxInt64 {
		d.err = fmt.Errorf("queue %d items, %d bytes", items, bytes)
		return nil
	}
	st.QueuedItems, st.QueuedBytes = int(items), int(bytes)
	return st
}

func decodeReply(b []byte) (core.Reply, error) {
	d := decoder{b: b}
	v, flags, code := d.byte(), d.byte(), d.byte()
	msg := d.string()
	var members []core.GroupMember
	if n := d.uvarint(); d.err == nil {
		if n > maxListLimit || n > uint64(len(d.b)) {
			return core.Reply{}, fmt.Errorf("%w: %d members", errRequest, n)
		}
		if n > 0 {
			members = make([]core.GroupMember, 0, n)
		}
		for range n {
			members = append(members, core.GroupMember{ConnID: d.string(), UserID: d.string()})
		}
	}
	protocol := d.string()
	result := d.bytes()
	clientErr := d.string()
	var pres core.Reply
	if flags&replyPresence != 0 && d.err == nil {
		if err := decodePresence(&d, &pres); err != nil {
			return core.Reply{}, err
		}
	}
	var state *core.ConnState
	if flags&replyHasState != 0 && d.err == nil {
		state = decodeState(&d)
	}
	if d.err == nil && len(d.b) > 0 && len(members) > 0 { // connect times
		for i := range members {
			ns := d.varint()
			members[i].Connected = time.Unix(0, ns)
		}
	}
	switch {
	case d.err != nil:
		return core.Reply{}, fmt.Errorf("%w: %w", errRequest, d.err)
	case v != requestV1:
		return core.Reply{}, fmt.Errorf("%w: reply version %d", errRequest, v)
	case flags&^(replyOK|replyMore|replyHasResult|replyPresence|replyHasState) != 0:
		return core.Reply{}, fmt.Errorf("%w: reply flags %#x", errRequest, flags)
	case len(d.b) != 0:
		return core.Reply{}, fmt.Errorf("%w: %d bytes after the reply", errRequest, len(d.b))
	}
	r := core.Reply{OK: flags&replyOK != 0, More: flags&replyMore != 0, Members: members, Protocol: protocol, State: state,
		Result: core.ClientResult{HasResult: flags&replyHasResult != 0, Error: clientErr},
		Users:  pres.Users, Presence: pres.Presence, Node: pres.Node, States: pres.States}
	if len(result) > 0 {
		r.Result.Result = append([]byte(nil), result...)
	}
	switch {
	case code == 0:
	case int(code) <= len(replyErrors):
		r.Err = fmt.Errorf("%w (%s)", replyErrors[code-1], msg)
	case code == codeRemote:
		r.Err = fmt.Errorf("%w: %s", errRemote, msg)
	default:
		return core.Reply{}, fmt.Errorf("%w: reply error code %d", errRequest, code)
	}
	return r, nil
}

var _ core.Router = (*Broker)(nil)

// requestSubject is the subject node serves requests of this namespace on.
func (b *Broker) requestSubject(node string) string {
	return "sb." + b.ns + ".node." + node + ".req"
}

// Headers of a request (see order.go): the asking node and the seq of the
// marker it published just before.
const (
	headerOrigin = "Sb-Origin"
	headerMarker = "Sb-Marker"
)

// Ask runs req on node by request/reply: found is false when nobody serves
// that node's subject (no live node has the id). NATS down, a timeout
// (Config.RequestTimeout) or a bad reply fail with
// core.ErrBrokerUnavailable. The node runs it after the ops this node
// published before the call (see order.go).
func (b *Broker) Ask(ctx context.Context, node string, req *core.Request) (core.Reply, bool, error) {
	if !ValidNodeID(node) {
		return core.Reply{}, false, nil // no node can have that id
	}
	return b.ask(ctx, node, req, b.mark())
}

// ask is Ask after the marker seq was published.
func (b *Broker) ask(ctx context.Context, node string, req *core.Request, seq uint64) (core.Reply, bool, error) {
	nc := b.c.nc
	if !nc.IsConnected() {
		return core.Reply{}, false, fmt.Errorf("%w: NATS connection %s", core.ErrBrokerUnavailable, strings.ToLower(nc.Status().String()))
	}
	ctx, cancel := context.WithTimeout(ctx, b.c.cfg.RequestTimeout+req.Wait) // an invocation waits for its client too
	defer cancel()
	msg := nats.NewMsg(b.requestSubject(node))
	msg.Data = encodeRequest(nil, req)
	if seq != 0 {
		msg.Header.Set(headerOrigin, b.c.cfg.NodeID)
		msg.Header.Set(headerMarker, strconv.FormatUint(seq, 10))
	}
	b.reqSent.Inc()
	m, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return core.Reply{}, false, nil
	case err != nil:
		b.reqErrs.Inc()
		return core.Reply{}, false, fmt.Errorf("%w: node %q did not answer within %s: %w", core.ErrBrokerUnavailable, node, b.c.cfg.RequestTimeout, err)
	}
	r, err := decodeReply(m.Data)
	if err != nil {
		b.reqErrs.Inc()
		return core.Reply{}, false, fmt.Errorf("%w: node %q: %w", core.ErrBrokerUnavailable, node, err)
	}
	return r, true, nil
}

// AskOthers asks every other live node (from heartbeats) at once and waits
// for all of them: one that did not answer fails the whole request. A node
// that left (nobody serves its subject) is skipped.
func (b *Broker) AskOthers(ctx context.Context, req *core.Request) ([]core.Reply, error) {
	nodes := b.c.liveNodes()
	seq := b.mark() // one for every node
	replies := make([]core.Reply, 0, len(nodes))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for _, id := range nodes {
		if id == b.c.cfg.NodeID {
			continue
		}
		wg.Go(func() {
			if !ValidNodeID(id) {
				return
			}
			r, found, err := b.ask(ctx, id, req, seq)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
			case found:
				replies = append(replies, r)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if !b.c.nc.IsConnected() { // no other node: still refuse what may have missed one
		return nil, fmt.Errorf("%w: NATS connection %s", core.ErrBrokerUnavailable, strings.ToLower(b.c.nc.Status().String()))
	}
	return replies, nil
}

// serve answers one request for this node's conns, after the ops its node
// published before it (see order.go); NATS calls it on the request
// subscription's goroutine.
func (b *Broker) serve(m *nats.Msg) {
	b.reqRecv.Inc()
	if origin := m.Header.Get(headerOrigin); origin != "" {
		if seq, err := strconv.ParseUint(m.Header.Get(headerMarker), 10, 64); err == nil {
			b.awaitMarker(context.Background(), origin, seq)
		}
	}
	req, err := decodeRequest(m.Data)
	var r core.Reply
	switch {
	case err != nil:
		b.decErrs.Inc()
		b.c.log.Error("refused a request from NATS", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		r.Err = err
	default:
		d := b.d.Load()
		a, ok := core.Answerer(nil), false
		if d != nil {
			a, ok = d.Deliverer.(core.Answerer)
		}
		if !ok {
			r.Err = errors.New("cluster: this node does not answer requests")
			break
		}
		r = a.Answer(req)
	}
	if r.Await != nil { // an invocation: wait for the client off the subscription's goroutine
		select {
		case b.awaiting <- struct{}{}:
			go func() {
				defer func() { <-b.awaiting }()
				b.respond(m, r.Await(context.Background())) // bounded by the request's wait
			}()
			return
		default:
			r = core.Reply{Err: fmt.Errorf("cluster: %d invocations wait on this node already", cap(b.awaiting))}
		}
	}
	b.respond(m, r)
}

// respond sends a request's reply.
func (b *Broker) respond(m *nats.Msg, r core.Reply) {
	if err := m.Respond(encodeReply(nil, r)); err != nil {
		b.reqErrs.Inc()
	}
}

// liveNodes returns the ids of the nodes whose heartbeats are recent.
func (c *Cluster) liveNodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	return ids
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

func newSoakRequest(ctx context.Context, u string, body []byte, contentType, token string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// soakConn is one client of the soak over its life: one connection, or for a reliable
// client that recovers, two in turn.
type soakConn struct {
	s     *soak
	kind  soakKind
	spec  ConnSpec
	group int
	user  int

	c    *client       // the current connection
	done chan struct{} // closed when c's reader ends

	connID, reconnToken string // reliable sessions

	mu      sync.Mutex // guards the fields below
	tracks  map[uint32]*seqTrack
	lastSeq uint64 // highest sequenceId received (reliable)
	endErr  error  // why the reader ended, when the soak did not end it

	acks    chan soakAck
	nextAck uint64

	// What the client is owed: the streams it receives and the first sequence number of
	// each that was sent after it joined; client streams registered after joinSerial
	// are owed from 0.
	lo         map[uint32]uint64
	streams    map[uint32]*soakStream
	joinSerial uint64
}

type soakAck struct {
	id  uint64
	ok  bool
	err string
}

// leave plans.
const (
	leaveGraceful = iota
	leaveAbrupt
	leaveRecover // reliable only: drop, recover, then leave gracefully
)

// client runs one client from dial to leave.
func (s *soak) client(ctx context.Context, n uint64, rnd *rand.Rand) {
	sc := &soakConn{s: s, kind: soakKind(rnd.IntN(s.kinds())), group: rnd.IntN(s.o.Groups), user: rnd.IntN(s.o.Users),
		tracks: map[uint32]*seqTrack{}, acks: make(chan soakAck, 4), lo: map[uint32]uint64{}, streams: map[uint32]*soakStream{}}
	sc.spec = ConnSpec{ID: int(n), User: s.userName(sc.user), Groups: []string{s.groupName(sc.group)}}
	if sc.kind == kindJSON || sc.kind == kindReliable {
		sc.spec.Roles = []string{"webpubsub.sendToGroup." + s.groupName(sc.group)}
	}
	life := s.o.MinLife + time.Duration(rnd.Int64N(int64(s.o.MaxLife-s.o.MinLife)+1))
	plan := leaveGraceful
	switch p := rnd.IntN(10); {
	case p < 2:
		plan = leaveAbrupt
	case p < 5 && sc.kind == kindReliable:
		plan = leaveRecover
	}
	talker := (sc.kind == kindJSON || sc.kind == kindReliable) && rnd.IntN(2) == 0

	s.attempts.Add(1)
	if err := sc.dial(ctx, ""); err != nil {
		if ctx.Err() == nil {
			s.count(s.connectErrors, sc.kind.String()+": "+reason(err))
		}
		return
	}
	s.opened.Add(1)
	s.count(s.byKind, sc.kind.String())
	sc.owe()
	var own *soakStream
	if talker {
		own = s.registerTalker(sc.group)
		st := own
		defer func() { st.ended.CompareAndSwap(0, time.Now().UnixNano()) }()
	}

	lifeT := time.NewTimer(life)
	defer lifeT.Stop()
	var recoverC <-chan time.Time
	if plan == leaveRecover {
		t := time.NewTimer(time.Duration(float64(life) * (0.2 + 0.6*rnd.Float64())))
		defer t.Stop()
		recoverC = t.C
	}
	var talkC <-chan time.Time
	if talker {
		t := time.NewTicker(time.Duration(float64(time.Second) / s.o.ClientRate * (0.75 + 0.5*rnd.Float64())))
		defer t.Stop()
		talkC = t.C
	}
	every := time.NewTicker(time.Second) // sequenceAck of reliable clients, Ping of SignalR ones
	defer every.Stop()
	turn, talks := 0, 0
	for {
		select {
		case <-ctx.Done():
			sc.leave(leaveGraceful)
			return
		case <-lifeT.C:
			sc.leave(plan)
			return
		case <-sc.done:
			sc.serverEnded()
			return
		case <-recoverC:
			if !sc.recoverSession(ctx) {
				return
			}
		case <-talkC:
			talks++
			if own != nil && talks%2 == 1 {
				if !sc.sendToGroup(ctx, own) {
					own.ended.CompareAndSwap(0, time.Now().UnixNano())
					own, talkC = nil, nil // stop talking; receivers stop expecting more
				}
			} else {
				sc.userEvent(ctx)
			}
		case <-every.C:
			sc.tick(turn)
			turn++
		}
	}
}

// dial opens the connection: a new one (query ""), or a reliable session's recovery. It
// returns once the client is registered (the connected message; the SignalR handshake
// and group join; for raw clients the 101) and starts the reader.
func (sc *soakConn) dial(ctx context.Context, query string) error {
	s := sc.s
	var c *client
	if sc.kind == kindSignalR {
		var err error
		if c, err = s.srw.dialSignalR(ctx, sc.spec, true); err != nil {
			return err
		}
	} else {
		w := s.wps
		if query == "" {
			token, err := w.token(sc.spec, true)
			if err != nil {
				return err
			}
			query = "?access_token=" + token
		}
		d := w.wsDialer(sc.spec)
		if p := sc.kind.subprotocol(); p != "" {
			d.Protocols = []string{p}
		}
		conn, br, _, err := d.Dial(ctx, w.wsBase+query)
		if err != nil {
			return err
		}
		if br == nil {
			br = bufio.NewReaderSize(conn, readBufferSize)
		}
		c = &client{spec: sc.spec, conn: conn, br: br, done: make(chan struct{})}
		if sc.kind != kindRaw && sc.connID == "" {
			conn.SetReadDeadline(time.Now().Add(15 * time.Second))
			var buf []byte
			for {
				op, p, err := c.readFrame(&buf)
				if err != nil {
					conn.Close()
					return fmt.Errorf("waiting for connected: %w", err)
				}
				if op == ws.OpText && bytes.Contains(p, connectedKey) {
					sc.connID, sc.reconnToken = jsonField(p, "connectionId"), jsonField(p, "reconnectionToken")
					break
				}
			}
			conn.SetReadDeadline(time.Time{})
		}
	}
	sc.c, sc.done = c, make(chan struct{})
	go sc.read(c, sc.done)
	return nil
}

// owe records what the client is owed from now on: every stream it receives, from the
// first message sent after this moment (the one in flight now may have been sent before).
func (sc *soakConn) owe() {
	s := sc.s
	add := func(st *soakStream) {
		sc.streams[st.id] = st
		sc.lo[st.id] = st.accepted.Load() + 1
	}
	if sc.kind == kindSignalR {
		add(s.rest[s.signalRStream(sc.group)])
		return
	}
	add(s.rest[s.allStream()])
	add(s.rest[s.groupStream(sc.group)])
	add(s.rest[s.userStream(sc.user)])
	gs := &s.talk[sc.group]
	gs.mu.Lock()
	sc.joinSerial = s.serial.Load()
	for _, st := range gs.streams {
		if st.ended.Load() == 0 {
			add(st)
		}
	}
	gs.mu.Unlock()
}

// read reads c until it ends, accounting every soak message.
func (sc *soakConn) read(c *client, done chan struct{}) {
	defer close(done)
	var buf []byte
	for {
		op, p, err := c.readFrame(&buf)
		if err != nil {
			if !c.closing.Load() {
				sc.mu.Lock()
				sc.endErr = err
				sc.mu.Unlock()
			}
			c.conn.Close()
			return
		}
		switch {
		case sc.kind == kindSignalR:
			sc.onHub(c.proto, p)
		case op != ws.OpText:
		case sc.kind == kindRaw:
			sc.onPayload(p)
		default:
			sc.onJSON(p)
		}
	}
}

var (
	ackTypeKey    = []byte(`"type":"ack"`)
	sequenceIDKey = []byte(`"sequenceId":`)
)

func (sc *soakConn) onJSON(p []byte) {
	if bytes.Contains(p, ackTypeKey) {
		a := soakAck{ok: bytes.Contains(p, []byte(`"success":true`))}
		a.id, _ = jsonUint(p, []byte(`"ackId":`))
		if !a.ok {
			a.err = jsonField(p, "name")
		}
		select {
		case sc.acks <- a:
		default:
		}
		return
	}
	if seq, ok := jsonUint(p, sequenceIDKey); ok {
		sc.mu.Lock()
		sc.lastSeq = max(sc.lastSeq, seq)
		sc.mu.Unlock()
	}
	if i := bytes.Index(p, dataKey); i >= 0 {
		sc.onPayload(p[i+len(dataKey):])
	}
}

func (sc *soakConn) onHub(proto hubproto.Protocol, p []byte) {
	for len(p) > 0 {
		msg, rest, err := proto.Next(p, 0)
		if err != nil {
			return
		}
		p = rest
		m, err := proto.Decode(msg)
		if err != nil || m.Kind != hubproto.Invocation || m.Target != SignalRTarget {
			continue
		}
		if arg, err := firstStringArg(proto, m.Raw); err == nil {
			sc.onPayload(arg)
		}
	}
}

func (sc *soakConn) onPayload(p []byte) {
	stream, seq, _, err := parsePayload(p)
	if err != nil {
		return // an event handler's answer or another foreign message
	}
	sc.mu.Lock()
	t := sc.tracks[stream]
	if t == nil {
		t = newSeqTrack()
		sc.tracks[stream] = t
	}
	t.add(seq)
	sc.mu.Unlock()
	sc.s.delivered.Add(1)
}

// tick is the client's once-a-second chore: a reliable client acknowledges what it
// received, a SignalR client pings (the server drops a silent one).
func (sc *soakConn) tick(turn int) {
	switch sc.kind {
	case kindReliable:
		sc.mu.Lock()
		seq := sc.lastSeq
		sc.mu.Unlock()
		if seq > 0 {
			sc.c.write(ws.OpText, []byte(`{"type":"sequenceAck","sequenceId":`+strconv.FormatUint(seq, 10)+`}`))
		}
	case kindSignalR:
		if turn%10 == 0 {
			sc.c.write(ws.OpText, sc.c.proto.AppendPing(nil))
		}
	}
}

// request writes one ack-requesting JSON request and waits for its ack.
func (sc *soakConn) request(ctx context.Context, frame func(ackID uint64) []byte) (soakAck, error) {
	for { // drop acks of requests given up on
		select {
		case <-sc.acks:
			continue
		default:
		}
		break
	}
	sc.nextAck++
	id := sc.nextAck
	if err := sc.c.write(ws.OpText, frame(id)); err != nil {
		return soakAck{}, err
	}
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case a := <-sc.acks:
			if a.id == id {
				return a, nil
			}
		case <-t.C:
			return soakAck{}, errors.New("no ack within 15s")
		case <-sc.done:
			return soakAck{}, errors.New("connection ended")
		case <-ctx.Done():
			return soakAck{}, errSoakStopped
		}
	}
}

// sendToGroup publishes the next message of the client's stream to its group. It reports
// false when the message may or may not have been sent (the stream stops there).
func (sc *soakConn) sendToGroup(ctx context.Context, st *soakStream) bool {
	s := sc.s
	seq := st.accepted.Load()
	a, err := sc.request(ctx, func(id uint64) []byte {
		b := append([]byte(nil), `{"type":"sendToGroup","group":`...)
		b = appendJSONString(b, s.groupName(sc.group))
		b = append(b, `,"dataType":"text","data":"`...)
		b = appendPayload(b, st.id, seq, time.Now().UnixNano(), s.o.Size)
		b = append(b, `","ackId":`...)
		b = strconv.AppendUint(b, id, 10)
		return append(b, '}')
	})
	switch {
	case errors.Is(err, errSoakStopped):
		return false
	case err != nil:
		s.count(s.sendErrors, "sendToGroup: "+err.Error())
		return false
	case !a.ok:
		s.count(s.sendErrors, "sendToGroup: error ack "+a.err)
		return false
	}
	st.accepted.Add(1)
	s.clientSent.Add(1)
	return true
}

// userEvent sends an event request, which the server hands to the soak's event handler:
// acknowledged while it is healthy, an error ack while it fails.
func (sc *soakConn) userEvent(ctx context.Context) {
	if sc.kind != kindJSON && sc.kind != kindReliable {
		return
	}
	s := sc.s
	a, err := sc.request(ctx, func(id uint64) []byte {
		return []byte(`{"type":"event","event":"soak","dataType":"text","data":"soak","ackId":` + strconv.FormatUint(id, 10) + `}`)
	})
	switch {
	case errors.Is(err, errSoakStopped):
	case err != nil:
		s.count(s.eventErrors, err.Error())
	case !a.ok:
		s.count(s.eventErrors, "error ack "+a.err)
	default:
		s.userEvents.Add(1)
	}
}

// recoverSession drops a reliable client's connection without a close frame and
// recovers its session on a new one. It reports whether the client goes on.
func (sc *soakConn) recoverSession(ctx context.Context) bool {
	s := sc.s
	sc.drop()
	// Let the server see the drop before the client comes back, as a real one would.
	select {
	case <-time.After(200 * time.Millisecond):
	case <-ctx.Done():
		return false
	}
	q := "?awps_connection_id=" + url.QueryEscape(sc.connID) + "&awps_reconnection_token=" + url.QueryEscape(sc.reconnToken)
	if err := sc.dial(ctx, q); err != nil {
		if ctx.Err() == nil {
			s.recoverFail.Add(1)
			s.count(s.connectErrors, "recover: "+reason(err))
		}
		return false
	}
	// An unrecoverable session is closed at once (1008); a recovered one stays.
	select {
	case <-sc.done:
		s.recoverFail.Add(1)
		sc.mu.Lock()
		err := sc.endErr
		sc.mu.Unlock()
		s.count(s.connectErrors, "recover: "+reason(err))
		return false
	case <-time.After(500 * time.Millisecond):
	}
	s.recovered.Add(1)
	return true
}

// drop ends the connection without a close frame: a TCP reset.
func (sc *soakConn) drop() {
	sc.c.closing.Store(true)
	if tc, ok := sc.c.conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	sc.c.conn.Close()
	<-sc.done
}

// leave ends the client: gracefully (its deliveries are accounted first, then a close
// frame) or abruptly (a reset; not accounted).
func (sc *soakConn) leave(plan int) {
	s := sc.s
	if plan == leaveAbrupt {
		sc.drop()
		s.abrupt.Add(1)
		return
	}
	if !sc.account() {
		sc.serverEnded()
		return
	}
	sc.c.close()
	<-sc.done
	s.graceful.Add(1)
}

// serverEnded counts a connection the server ended.
func (sc *soakConn) serverEnded() {
	<-sc.done
	sc.mu.Lock()
	err := sc.endErr
	sc.mu.Unlock()
	r := "ended"
	if err != nil {
		r = reason(err)
	}
	sc.s.count(sc.s.serverClosed, sc.kind.String()+": "+r)
}

// account waits until the client received everything it is owed, or nothing more came
// for Drain, and counts what it was owed, what it lost and what it got twice. It reports
// false if the connection ended meanwhile (then nothing is counted).
func (sc *soakConn) account() bool {
	s := sc.s
	type owed struct {
		st     *soakStream
		lo, hi uint64
	}
	var want []owed
	for id, st := range sc.streams {
		want = append(want, owed{st, sc.lo[id], st.accepted.Load()})
	}
	if sc.kind != kindSignalR {
		gs := &s.talk[sc.group]
		gs.mu.Lock()
		for id, st := range gs.streams {
			if _, ok := sc.streams[id]; !ok && st.serial > sc.joinSerial {
				want = append(want, owed{st, 0, st.accepted.Load()})
			}
		}
		gs.mu.Unlock()
	}
	missing := func() (n int64) {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		for _, w := range want {
			n += sc.missingOf(w.st, w.lo, w.hi)
		}
		return n
	}
	last, lastChange := missing(), time.Now()
	for last > 0 && time.Since(lastChange) < s.o.Drain {
		select {
		case <-sc.done:
			return false
		case <-time.After(10 * time.Millisecond):
		}
		if m := missing(); m != last {
			last, lastChange = m, time.Now()
		}
	}
	select {
	case <-sc.done:
		return false
	default:
	}
	var exp, dup int64
	for _, w := range want {
		if w.hi > w.lo {
			exp += int64(w.hi - w.lo)
		}
	}
	sc.mu.Lock()
	for _, t := range sc.tracks {
		dup += t.dup
	}
	sc.mu.Unlock()
	if last > 0 {
		sc.mu.Lock()
		for _, w := range want {
			if n := sc.missingOf(w.st, w.lo, w.hi); n > 0 {
				s.mu.Lock()
				s.lostBy[sc.kind.String()+" from "+s.streamClass(w.st.id)] += n
				s.mu.Unlock()
			}
		}
		sc.mu.Unlock()
	}
	if dup > 0 {
		s.mu.Lock()
		s.dupBy[sc.kind.String()] += dup
		s.mu.Unlock()
	}
	s.expected.Add(exp)
	s.lost.Add(last)
	s.dup.Add(dup)
	s.accounted.Add(1)
	return true
}

// missingOf counts the messages lo..hi-1 of st not received, but for the uncertain ones
// (sc.mu held).
func (sc *soakConn) missingOf(st *soakStream, lo, hi uint64) (n int64) {
	t := sc.tracks[st.id]
	for q := lo; q < hi; q++ {
		if (t == nil || int(q/64) >= len(t.seen) || t.seen[q/64]&(1<<(q%64)) == 0) && !st.isUncertain(q) {
			n++
		}
	}
	return n
}

// jsonField returns the string value of "name":"…" in p (no escapes expected), or "".
func jsonField(p []byte, name string) string {
	k := []byte(`"` + name + `":"`)
	i := bytes.Index(p, k)
	if i < 0 {
		return ""
	}
	v := p[i+len(k):]
	j := bytes.IndexByte(v, '"')
	if j < 0 {
		return ""
	}
	return string(v[:j])
}

// jsonUint returns the number after key in p.
func jsonUint(p, key []byte) (uint64, bool) {
	i := bytes.Index(p, key)
	if i < 0 {
		return 0, false
	}
	v := p[i+len(key):]
	j := 0
	for j < len(v) && v[j] >= '0' && v[j] <= '9' {
		j++
	}
	n, err := strconv.ParseUint(string(v[:j]), 10, 64)
	return n, err == nil
}

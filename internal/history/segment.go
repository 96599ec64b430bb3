package history

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

// FsyncPolicy says when appended records reach the disk.
type FsyncPolicy uint8

// Fsync policies.
const (
	// FsyncGroupCommit writes every record appended while the previous
	// write was in progress in one write and one fsync (the default).
	FsyncGroupCommit FsyncPolicy = iota
	// FsyncAlways writes and fsyncs each record on its own.
	FsyncAlways
	// FsyncNone writes records before acknowledging them but leaves
	// flushing to the OS: safe against a killed process, not against a
	// power cut.
	FsyncNone
)

// ParseFsyncPolicy parses "group_commit", "always" or "none".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "group_commit", "":
		return FsyncGroupCommit, nil
	case "always":
		return FsyncAlways, nil
	case "none":
		return FsyncNone, nil
	}
	return 0, fmt.Errorf("history: fsync policy %q is not group_commit, always or none", s)
}

// Errors callers branch on.
var (
	ErrNotKept      = errors.New("history: the group keeps no history")
	ErrOffsetGone   = errors.New("history: offset older than the retained history")
	ErrEpochChanged = errors.New("history: the stream's epoch changed")
	ErrOffsetAhead  = errors.New("history: offset beyond the stream's last offset")
	ErrClosed       = errors.New("history: log closed")
	// ErrClusterStore is the cause of core.ErrHistoryUnavailable on a
	// cluster node whose stream store (NATS JetStream) did not take or
	// answer a write; Reason names it.
	ErrClusterStore = errors.New("the cluster's message store (NATS JetStream) is unreachable or did not confirm the write")
	// ErrLogFailed marks a failure the log does not recover from while
	// the process runs (a failed fsync: the page cache cannot be trusted).
	// The errors that carry it also carry core.ErrHistoryUnavailable.
	ErrLogFailed     = errors.New("history: log failed")
	ErrCorruptSealed = errors.New("history: corrupt record in a sealed segment")
)

// Position describes a stream.
type Position struct {
	Epoch  uint64 // 0: the stream does not exist
	Offset uint64 // last offset given out (Top) or made durable (Read pages); 0: none
	Oldest uint64 // first retained offset; Offset+1 when nothing is retained
}

// Page is the result of a read.
type Page struct {
	Records []Record
	Position
	More bool // records after the last returned one are retained
}

// Ack reports when an appended record is durable.
type Ack struct{ b *batch }

// Wait blocks until the record is written (and fsynced, per policy), and
// returns the write's error. It does not take a context: a record that was
// given an offset either reaches the log or fails it.
func (a *Ack) Wait() error {
	<-a.b.done
	return a.b.err
}

// WaitFunc returns Wait as a func value without making one per record: the records of a
// batch share their Ack.
func (a *Ack) WaitFunc() func() error { return a.b.wait }

// Log stores the streams of history-keeping groups. SegmentLog implements
// it; a NATS JetStream store will too.
type Log interface {
	// Append gives r the next offset of its stream (and its epoch) and
	// queues it; Ack.Wait says when it is durable. It fails with
	// ErrNotKept when the group keeps no history.
	Append(ctx context.Context, r *Record) (*Ack, error)
	// Top returns the stream's epoch and the last offset given out.
	Top(hub, group string) Position
	// Read returns up to limit durable records with offsets in
	// (after, upTo] (upTo 0: no bound), oldest first.
	Read(hub, group string, after, upTo uint64, limit int) (Page, error)
	// Close stops the log after writing what was appended.
	Close() error
}

// Options configure a SegmentLog.
type Options struct {
	Dir             string
	Fsync           FsyncPolicy
	SegmentBytes    int64         // a segment is sealed once it reaches this size; default 64 MiB
	MaxPendingBytes int           // appended bytes not yet written before Append waits; default 64 MiB
	TrimInterval    time.Duration // age-retention sweep period; default 5s
	// ProbeInterval is how often, after a write failed for want of space,
	// a small write and fsync checks whether the disk takes writes again;
	// default 1s.
	ProbeInterval time.Duration
	Policies      Policies
	Logger        *slog.Logger
	// OnOpen, if set, is called with every valid record found when the
	// log opens, oldest first (the idempotency index is rebuilt from it).
	OnOpen func(*Record)
	// Observe, if set, receives counts for metrics.
	Observe Observer
	now     func() time.Time
}

// Observer receives the log's events for metrics. Methods may be called
// concurrently and must not block.
type Observer interface {
	Appended(hub string, bytes int)
	Synced()
	Trimmed(hub string, records, bytes int)
	// WriteFailed counts a failed write, fsync or open by cause (see
	// FailureCause).
	WriteFailed(cause string)
}

type nopObserver struct{}

func (nopObserver) Appended(string, int)     {}
func (nopObserver) Synced()                  {}
func (nopObserver) Trimmed(string, int, int) {}
func (nopObserver) WriteFailed(string)       {}

const (
	segmentMagic = "SBHLOG01"
	segmentExt   = ".seg"
)

// SegmentLog is the embedded Log: a directory of append-only segment
// files shared by every stream, an in-memory index of each stream's
// retained records, one writer goroutine doing group commit and one
// trimmer goroutine applying age retention. See ARCHITECTURE.md.
type SegmentLog struct {
	opts Options
	log  *slog.Logger
	obs  Observer

	// segMu guards segs; a reader holds it shared while it reads files,
	// so a segment is deleted only when nobody reads it. Lock order:
	// segMu → mu.
	segMu sync.RWMutex
	segs  map[uint32]*segment

	// mu guards everything below.
	mu       sync.Mutex
	space    *sync.Cond // signalled when pending bytes fall
	streams  map[streamKey]*stream
	pending  []byte            // frames appended, not yet taken by the writer
	pendRecs []pendRec         // their index data
	batch    *batch            // what the next write completes
	inflight int               // bytes appended and not yet written
	failed   *UnavailableError // non-nil: appends are refused (see fail)
	closed   bool              // Close was called
	lastSeg  uint32            // id of the newest segment
	active   *segment          // writer-owned once running
	hubBytes map[string]int64

	// rollbacks counts the failures that took back offsets given out
	// (see fail); a recovering join retries when it changed meanwhile.
	rollbacks atomic.Uint64

	wake     chan struct{}
	probe    chan struct{} // kicks the prober after a recoverable failure
	stop     chan struct{}
	done     sync.WaitGroup
	closeErr error
	once     sync.Once
}

type streamKey struct{ hub, group string }

type stream struct {
	ret       Retention
	epoch     uint64
	epochText string  // FormatEpoch(epoch), made once per epoch rather than per append
	next      uint64  // next offset to give out
	top       uint64  // last durable offset
	entries   []entry // retained durable records, offsets top-len+1 … top
	bytes     int64   // the sum of the entries' sizes
}

func (s *stream) setEpoch(e uint64) { s.epoch, s.epochText = e, FormatEpoch(e) }

func (s *stream) oldest() uint64 { return s.top - uint64(len(s.entries)) + 1 }

// entry locates one record.
type entry struct {
	seg  uint32
	pos  uint32
	size uint32
	time int64
}

type pendRec struct {
	key  streamKey
	off  uint64
	time int64
	pos  int // in pending
	size int
}

type batch struct {
	done chan struct{}
	err  error
	ack  Ack          // every record of the batch shares it
	wait func() error // ack.Wait, bound once per batch rather than once per record
}

func newBatch() *batch {
	b := &batch{done: make(chan struct{})}
	b.ack.b = b
	b.wait = b.ack.Wait
	return b
}

type segment struct {
	id   uint32
	f    *os.File
	size int64
	live int // indexed entries in this segment; guarded by SegmentLog.mu
}

// OpenSegmentLog opens (or creates) the log in opts.Dir, recovering its index from the
// segments: a torn or corrupt tail of the newest segment is cut off, a
// corrupt record in an older one is an error.
func OpenSegmentLog(opts Options) (*SegmentLog, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 64 << 20
	}
	if opts.TrimInterval <= 0 {
		opts.TrimInterval = 5 * time.Second
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	l := &SegmentLog{
		opts:     opts,
		log:      opts.Logger,
		obs:      opts.Observe,
		segs:     map[uint32]*segment{},
		streams:  map[streamKey]*stream{},
		hubBytes: map[string]int64{},
		batch:    newBatch(),
		wake:     make(chan struct{}, 1),
		probe:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if l.obs == nil {
		l.obs = nopObserver{}
	}
	l.space = sync.NewCond(&l.mu)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, err
	}
	if err := l.rotate(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.done.Add(3)
	go l.writer()
	go l.trimmer()
	go l.prober()
	return l, nil
}

func segmentName(id uint32) string { return fmt.Sprintf("%010d%s", id, segmentExt) }

// recover reads every segment, oldest first, and rebuilds the index.
func (l *SegmentLog) recover() error {
	names, err := filepath.Glob(filepath.Join(l.opts.Dir, "*"+segmentExt))
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	var ids []uint32
	for _, n := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(n), segmentExt), 10, 32)
		if err != nil {
			return fmt.Errorf("history: unexpected file %s in %s", filepath.Base(n), l.opts.Dir)
		}
		ids = append(ids, uint32(id))
	}
	slices.Sort(ids)
	now := l.opts.now().UnixNano()
	for i, id := range ids {
		last := i == len(ids)-1
		if err := l.recoverSegment(id, last); err != nil {
			return err
		}
		l.lastSeg = id
	}
	// Age retention, then drop segments nobody references.
	for k, s := range l.streams {
		l.trimAge(k, s, now)
	}
	l.dropDeadSegments(0)
	return nil
}

func (l *SegmentLog) recoverSegment(id uint32, last bool) error {
	path := filepath.Join(l.opts.Dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	seg := &segment{id: id, f: f}
	l.segs[id] = seg
	r := bufio.NewReaderSize(f, 1<<20)
	head := make([]byte, len(segmentMagic))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != segmentMagic {
		if !last {
			return fmt.Errorf("%w: %s has no valid header", ErrCorruptSealed, path)
		}
		// A segment torn while being created: start it again.
		l.log.Warn("history: torn segment header, truncating", "file", path)
		return l.cut(seg, 0, true)
	}
	pos := int64(len(segmentMagic))
	buf := make([]byte, 0, 4096)
	for {
		var hdr [frameHeader]byte
		n, err := io.ReadFull(r, hdr[:])
		if err == io.EOF {
			break
		}
		var size int
		if err == nil {
			size, err = frameLen(hdr[:])
		} else if n > 0 {
			err = ErrShortFrame
		}
		if err == nil {
			buf = slices.Grow(buf[:0], size)[:size]
			copy(buf, hdr[:])
			if _, rerr := io.ReadFull(r, buf[frameHeader:]); rerr != nil {
				err = ErrShortFrame
			}
		}
		var rec Record
		if err == nil {
			rec, _, err = decodeFrame(buf, true)
		}
		if err != nil {
			if !last {
				return fmt.Errorf("%w: %s at byte %d: %v", ErrCorruptSealed, path, pos, err)
			}
			l.log.Warn("history: torn tail cut", "file", path, "at", pos, "err", err)
			return l.cut(seg, pos, false)
		}
		if l.opts.OnOpen != nil {
			l.opts.OnOpen(&rec)
		}
		l.indexRecovered(&rec, id, pos, size)
		pos += int64(size)
	}
	seg.size = pos
	return nil
}

// cut truncates a segment at pos (0: rewrite its header) and syncs it.
func (l *SegmentLog) cut(seg *segment, pos int64, header bool) error {
	if err := seg.f.Truncate(pos); err != nil {
		return fmt.Errorf("history: truncate %s: %w", seg.f.Name(), err)
	}
	if header {
		if _, err := seg.f.WriteAt([]byte(segmentMagic), 0); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		pos = int64(len(segmentMagic))
	}
	seg.size = pos
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return nil
}

// indexRecovered adds a record read at open to its stream's index.
func (l *SegmentLog) indexRecovered(r *Record, seg uint32, pos int64, size int) {
	k := streamKey{r.Hub, r.Group}
	s := l.streams[k]
	if s == nil {
		ret, ok := l.opts.Policies.Lookup(r.Hub, r.Group)
		if !ok {
			return // no longer keeps history
		}
		s = &stream{ret: ret}
		s.setEpoch(r.Epoch)
		l.streams[k] = s
	}
	switch {
	case r.Epoch != s.epoch || r.Offset > s.top+1:
		// A reset or a hole: what came before is not this stream's past.
		l.dropEntries(k, s, len(s.entries))
		s.setEpoch(r.Epoch)
	case r.Offset <= s.top:
		return // already indexed
	}
	s.top, s.next = r.Offset, r.Offset+1
	l.addEntry(k, s, entry{seg: seg, pos: uint32(pos), size: uint32(size), time: r.Time})
}

// addEntry indexes a durable record and applies count retention. l.mu held
// (or the log not yet running).
func (l *SegmentLog) addEntry(k streamKey, s *stream, e entry) {
	s.entries = append(s.entries, e)
	if seg := l.segs[e.seg]; seg != nil {
		seg.live++
	}
	l.hubBytes[k.hub] += int64(e.size)
	s.bytes += int64(e.size)
	if over := len(s.entries) - s.ret.MaxMessages; over > 0 {
		l.dropEntries(k, s, over)
	}
}

// dropEntries forgets the n oldest entries of s.
func (l *SegmentLog) dropEntries(k streamKey, s *stream, n int) {
	if n <= 0 {
		return
	}
	bytes := 0
	for _, e := range s.entries[:n] {
		if seg := l.segs[e.seg]; seg != nil {
			seg.live--
		}
		bytes += int(e.size)
	}
	l.hubBytes[k.hub] -= int64(bytes)
	s.bytes -= int64(bytes)
	// Reslice: O(1). The dropped prefix is freed when append next grows
	// the array (it copies only the retained entries), so a stream's index
	// stays within a small multiple of its retained records.
	s.entries = s.entries[n:]
	if len(s.entries) == 0 {
		s.entries = nil
	}
	l.obs.Trimmed(k.hub, n, bytes)
}

// trimAge drops the entries of s older than its max age.
func (l *SegmentLog) trimAge(k streamKey, s *stream, now int64) {
	cut := now - int64(s.ret.MaxAge)
	n, _ := slices.BinarySearchFunc(s.entries, cut, func(e entry, t int64) int {
		if e.time < t {
			return -1
		}
		return 1
	})
	l.dropEntries(k, s, n)
}

// dropDeadSegments closes and removes sealed segments without live entries
// (all but keep). Called with neither lock held, or during open.
func (l *SegmentLog) dropDeadSegments(keep uint32) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	var dead []*segment
	for id, s := range l.segs {
		if s.live == 0 && id != keep && id != l.lastSeg {
			dead = append(dead, s)
			delete(l.segs, id)
		}
	}
	l.mu.Unlock()
	for _, s := range dead {
		s.f.Close()
		if err := os.Remove(s.f.Name()); err != nil {
			l.log.Warn("history: removing segment", "file", s.f.Name(), "err", err)
		}
	}
}

// rotate seals the active segment and starts a new one.
func (l *SegmentLog) rotate() error {
	id := l.lastSeg + 1
	path := filepath.Join(l.opts.Dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		// Nothing was written: out of space (or inodes), it is recoverable.
		return &writeError{fmt.Errorf("history: new segment: %w", err)}
	}
	if _, err := f.Write([]byte(segmentMagic)); err != nil {
		// Out of space, typically: remove the half-made file, so that the
		// next rotation can create it again.
		f.Close()
		os.Remove(path)
		return &writeError{fmt.Errorf("history: new segment: %w", err)}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("history: new segment: fsync: %w", err)
	}
	if err := syncDir(l.opts.Dir); err != nil {
		f.Close()
		return err
	}
	seg := &segment{id: id, f: f, size: int64(len(segmentMagic))}
	l.segMu.Lock()
	l.mu.Lock()
	prev := l.lastSeg
	l.segs[id] = seg
	l.lastSeg = id
	l.active = seg
	l.mu.Unlock()
	l.segMu.Unlock()
	if prev != 0 {
		l.dropDeadSegments(id)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("history: sync %s: %w", dir, err)
	}
	return nil
}

func newEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// Append implements Log.
func (l *SegmentLog) Append(ctx context.Context, r *Record) (*Ack, error) {
	k := streamKey{r.Hub, r.Group}
	size := frameHeader + r.payloadSize()
	if size > maxRecordBytes {
		return nil, fmt.Errorf("history: record of %d bytes is too large", size)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.inflight > 0 && l.inflight+size > l.opts.MaxPendingBytes && l.failed == nil && !l.closed {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l.space.Wait()
	}
	if l.closed {
		return nil, ErrClosed
	}
	if l.failed != nil {
		return nil, l.failed
	}
	s := l.streams[k]
	if s == nil {
		ret, ok := l.opts.Policies.Lookup(r.Hub, r.Group)
		if !ok {
			return nil, ErrNotKept
		}
		s = &stream{ret: ret, next: 1}
		s.setEpoch(newEpoch())
		l.streams[k] = s
	}
	r.Offset, r.Epoch, r.epochText = s.next, s.epoch, s.epochText
	if r.Time == 0 {
		r.Time = l.opts.now().UnixNano()
	}
	s.next++
	pos := len(l.pending)
	l.pending = appendFrame(l.pending, r)
	l.pendRecs = append(l.pendRecs, pendRec{key: k, off: r.Offset, time: r.Time, pos: pos, size: len(l.pending) - pos})
	l.inflight += size
	b := l.batch
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return &b.ack, nil
}

// writer takes what was appended, writes it in one write (rotating first
// when the segment is full), fsyncs per policy, indexes it and completes the
// batch. While it writes, new appends gather in the next batch.
func (l *SegmentLog) writer() {
	defer l.done.Done()
	var spare []byte
	var spareRecs []pendRec
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			// Drain what is left, then stop.
			for l.writeBatch(&spare, &spareRecs) {
			}
			return
		}
		for l.writeBatch(&spare, &spareRecs) {
		}
	}
}

// writeBatch writes one batch; it reports whether it found one.
func (l *SegmentLog) writeBatch(spare *[]byte, spareRecs *[]pendRec) bool {
	l.mu.Lock()
	if len(l.pendRecs) == 0 {
		l.mu.Unlock()
		return false
	}
	buf, recs, b := l.pending, l.pendRecs, l.batch
	l.pending, l.pendRecs = (*spare)[:0], (*spareRecs)[:0]
	l.batch = newBatch()
	var err error
	if l.failed != nil {
		err = l.failed // appended just before the failure was recorded
	}
	l.mu.Unlock()

	hard := false
	if err == nil {
		if err = l.write(buf, recs); err != nil {
			hard = !noSpace(err)
			if !hard {
				// Nothing of the batch is acknowledged: cut it off, so that
				// the segment is again exactly what was made durable.
				seg := l.active
				if cerr := l.cut(seg, seg.size, false); cerr != nil {
					hard = true
					err = errors.Join(err, cerr)
				}
			} else if cerr := l.cut(l.active, l.active.size, false); cerr != nil {
				// Best effort, so that a restart does not find refused
				// records that did reach the disk.
				l.log.Warn("history: cutting the refused batch off the segment", "err", cerr)
			}
		}
	}
	l.mu.Lock()
	l.inflight -= len(buf)
	if err != nil {
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			ue = l.fail(err, hard)
		}
		b.err = ue
	}
	l.space.Broadcast()
	l.mu.Unlock()
	close(b.done)
	*spare, *spareRecs = buf, recs
	if cap(*spare) > 4<<20 {
		*spare = nil
	}
	return true
}

// fail records a failed write; l.mu held. Appends are refused from now on,
// with the error it returns. What was appended meanwhile is refused too
// (its offsets follow the failed ones), and every stream's next offset goes
// back to one past its last durable one.
//
// The invariant: the offsets of a stream that were ever acknowledged or
// broadcast are exactly 1 … top, with no gap. A refused record was neither
// (core broadcasts only after Ack.Wait returns nil), so its offset is given
// to the next record appended, and subscribers see no gap. A recovering
// join that asked for the top before the failure and starts its turn after
// it must ask again (Rollbacks changed); core.Hub.JoinGroupFrom does.
//
// After a write that failed for want of space, the batch was cut off the
// segment and synced, so the log is again exactly its durable records: the
// prober retries a small write every ProbeInterval and lifts the failure
// when it succeeds. Any other failure (a failed fsync, an I/O error) is hard:
// after a failed fsync the page cache cannot be trusted, so the log refuses
// appends until the server restarts.
func (l *SegmentLog) fail(err error, hard bool) *UnavailableError {
	ue := &UnavailableError{cause: err, hard: hard}
	l.failed = ue
	if len(l.pendRecs) > 0 {
		nb := l.batch
		l.inflight -= len(l.pending)
		l.pending, l.pendRecs = l.pending[:0], l.pendRecs[:0]
		l.batch = newBatch()
		nb.err = ue
		close(nb.done)
	}
	for _, s := range l.streams {
		s.next = s.top + 1
	}
	l.rollbacks.Add(1)
	l.obs.WriteFailed(FailureCause(err))
	if hard {
		l.log.Error("history: log failed; sends to groups that keep history are refused until restart", "err", err)
	} else {
		l.log.Error("history: out of space; sends to groups that keep history are refused until space returns", "err", err)
		select {
		case l.probe <- struct{}{}:
		default:
		}
	}
	return ue
}

// prober waits for a recoverable failure, then checks every ProbeInterval
// whether the disk takes a small write and fsync again; when it does, the
// log accepts appends again.
func (l *SegmentLog) prober() {
	defer l.done.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.probe:
		}
		if !l.probeUntilWritable() {
			return
		}
	}
}

// probeUntilWritable probes until a probe succeeds (true) or the log stops.
func (l *SegmentLog) probeUntilWritable() bool {
	t := time.NewTicker(l.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return false
		case <-t.C:
		}
		if err := Probe(l.opts.Dir); err != nil {
			l.log.Debug("history: storage still unavailable", "err", err)
			continue
		}
		l.mu.Lock()
		recovered := l.failed != nil && !l.failed.hard
		if recovered {
			l.failed = nil
		}
		l.mu.Unlock()
		if recovered {
			l.log.Info("history: storage writable again; sends to groups that keep history are accepted")
		}
		return true
	}
}

// probeBytes is the size of a probe write.
const probeBytes = 64 << 10

// Probe checks that dir takes a write of 64 KiB and its fsync: it writes
// and syncs a file "probe" there and removes it.
func Probe(dir string) error {
	path := filepath.Join(dir, "probe")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, probeBytes))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Unavailable returns why appends are refused, nil when they are not.
func (l *SegmentLog) Unavailable() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		return nil
	}
	return l.failed
}

// Rollbacks counts the failures that took back offsets given out.
func (l *SegmentLog) Rollbacks() uint64 { return l.rollbacks.Load() }

// UnavailableError is the error of appends refused because the storage
// failed. It wraps core.ErrHistoryUnavailable, the cause (syscall.ENOSPC,
// …) and, when the failure is hard, ErrLogFailed.
type UnavailableError struct {
	cause error
	hard  bool
}

func (e *UnavailableError) Error() string {
	return core.ErrHistoryUnavailable.Error() + ": " + Reason(e.cause)
}

// Unwrap implements errors.Is and errors.As.
func (e *UnavailableError) Unwrap() []error {
	if e.hard {
		return []error{core.ErrHistoryUnavailable, e.cause, ErrLogFailed}
	}
	return []error{core.ErrHistoryUnavailable, e.cause}
}

// Cause returns the error the storage failed with.
func (e *UnavailableError) Cause() error { return e.cause }

// writeError marks a write (not an fsync) that failed: when it failed for
// want of space, nothing reached the disk that a truncation does not undo.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// noSpace reports whether err is a write that failed for want of space
// (ENOSPC, EDQUOT), which the log recovers from.
func noSpace(err error) bool {
	var we *writeError
	return errors.As(err, &we) && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}

// FailureCause names the cause of a storage failure for metrics: no_space,
// quota or io.
func FailureCause(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "no_space"
	case errors.Is(err, syscall.EDQUOT):
		return "quota"
	}
	return "io"
}

// Reason says in a few words, for clients, why the storage failed: "no space
// left on device", "disk quota exceeded" or "I/O error" (no file names).
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrClusterStore):
		return ErrClusterStore.Error()
	case errors.Is(err, syscall.ENOSPC):
		return syscall.ENOSPC.Error()
	case errors.Is(err, syscall.EDQUOT):
		return syscall.EDQUOT.Error()
	}
	return "I/O error"
}

func (l *SegmentLog) write(buf []byte, recs []pendRec) error {
	seg := l.active
	if seg.size > int64(len(segmentMagic)) && seg.size+int64(len(buf)) > l.opts.SegmentBytes {
		if err := seg.f.Sync(); err != nil {
			return fmt.Errorf("history: fsync: %w", err)
		}
		if err := l.rotate(); err != nil {
			return err
		}
		seg = l.active
	}
	base := seg.size
	if l.opts.Fsync == FsyncAlways {
		for _, r := range recs {
			if _, err := seg.f.WriteAt(buf[r.pos:r.pos+r.size], base+int64(r.pos)); err != nil {
				return &writeError{fmt.Errorf("history: write: %w", err)}
			}
			if err := seg.f.Sync(); err != nil {
				return fmt.Errorf("history: fsync: %w", err)
			}
			l.obs.Synced()
		}
	} else {
		if _, err := seg.f.WriteAt(buf, base); err != nil {
			return &writeError{fmt.Errorf("history: write: %w", err)}
		}
		if l.opts.Fsync == FsyncGroupCommit {
			if err := seg.f.Sync(); err != nil {
				return fmt.Errorf("history: fsync: %w", err)
			}
			l.obs.Synced()
		}
	}
	seg.size += int64(len(buf))
	l.mu.Lock()
	for _, r := range recs {
		s := l.streams[r.key]
		if s == nil {
			continue
		}
		s.top = r.off
		l.addEntry(r.key, s, entry{seg: seg.id, pos: uint32(base + int64(r.pos)), size: uint32(r.size), time: r.time})
		l.obs.Appended(r.key.hub, r.size)
	}
	l.mu.Unlock()
	return nil
}

// trimmer applies age retention every TrimInterval and removes segments
// that no longer hold a retained record.
func (l *SegmentLog) trimmer() {
	defer l.done.Done()
	t := time.NewTicker(l.opts.TrimInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.TrimNow()
	}
}

// TrimNow applies age retention at once (the trimmer does it periodically).
func (l *SegmentLog) TrimNow() {
	now := l.opts.now().UnixNano()
	l.mu.Lock()
	for k, s := range l.streams {
		l.trimAge(k, s, now)
	}
	active := l.lastSeg
	l.mu.Unlock()
	l.dropDeadSegments(active)
}

// Top implements Log.
func (l *SegmentLog) Top(hub, group string) Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[streamKey{hub, group}]
	if s == nil {
		return Position{}
	}
	return Position{Epoch: s.epoch, Offset: s.next - 1, Oldest: s.oldest()}
}

// Read implements Log. Offsets older than the retained history give
// ErrOffsetGone (with the position, so the caller can say what is left).
func (l *SegmentLog) Read(hub, group string, after, upTo uint64, limit int) (Page, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	l.mu.Lock()
	s := l.streams[streamKey{hub, group}]
	if s == nil {
		l.mu.Unlock()
		if _, ok := l.opts.Policies.Lookup(hub, group); !ok {
			return Page{}, ErrNotKept
		}
		if after > 0 {
			return Page{}, ErrOffsetAhead
		}
		return Page{Position: Position{Oldest: 1}}, nil
	}
	l.trimAge(streamKey{hub, group}, s, l.opts.now().UnixNano())
	p := Page{Position: Position{Epoch: s.epoch, Offset: s.top, Oldest: s.oldest()}}
	if upTo == 0 || upTo > s.top {
		upTo = s.top
	}
	switch {
	case after+1 < p.Oldest:
		l.mu.Unlock()
		return p, ErrOffsetGone
	case after > s.next-1:
		l.mu.Unlock()
		return p, ErrOffsetAhead
	}
	var picked []entry
	if after < upTo {
		i := int(after + 1 - p.Oldest)
		j := int(upTo + 1 - p.Oldest)
		if limit > 0 && j-i > limit {
			j = i + limit
		}
		picked = append(picked, s.entries[i:j]...)
		p.More = after+uint64(len(picked)) < s.top
	}
	l.mu.Unlock()
	p.Records = make([]Record, 0, len(picked))
	total := 0
	for _, e := range picked {
		total += int(e.size)
	}
	// One buffer for the page; records adjacent in a segment (the usual
	// case for one group) are read with one ReadAt.
	buf := make([]byte, total)
	for i := 0; i < len(picked); {
		e := picked[i]
		seg := l.segs[e.seg]
		if seg == nil {
			return p, fmt.Errorf("history: segment %d of %s/%s is missing", e.seg, hub, group)
		}
		j, n := i+1, int(e.size)
		for j < len(picked) && picked[j].seg == e.seg && picked[j].pos == e.pos+uint32(n) {
			n += int(picked[j].size)
			j++
		}
		run := buf[:n]
		buf = buf[n:]
		if _, err := seg.f.ReadAt(run, int64(e.pos)); err != nil {
			return p, fmt.Errorf("history: read %s: %w", seg.f.Name(), err)
		}
		for ; i < j; i++ {
			r, size, err := decodeFrame(run, false)
			if err != nil {
				return p, fmt.Errorf("history: read %s at %d: %w", seg.f.Name(), picked[i].pos, err)
			}
			p.Records = append(p.Records, r)
			run = run[size:]
		}
	}
	return p, nil
}

// HubBytes returns the bytes of retained records per hub.
func (l *SegmentLog) HubBytes() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]int64, len(l.hubBytes))
	for k, v := range l.hubBytes {
		m[k] = v
	}
	return m
}

// Stats describes the log for the admin endpoint.
type Stats struct {
	Streams  int              `json:"streams"`
	Segments int              `json:"segments"`
	Records  int              `json:"records"`
	HubBytes map[string]int64 `json:"hubBytes"`
}

// Stats returns the log's current size.
func (l *SegmentLog) Stats() Stats {
	l.segMu.RLock()
	segs := len(l.segs)
	l.segMu.RUnlock()
	l.mu.Lock()
	st := Stats{Streams: len(l.streams), Segments: segs, HubBytes: map[string]int64{}}
	for _, s := range l.streams {
		st.Records += len(s.entries)
	}
	for k, v := range l.hubBytes {
		st.HubBytes[k] = v
	}
	l.mu.Unlock()
	return st
}

// StreamStat is one group's stream as the dashboard shows it.
type StreamStat struct {
	// Namespace is the hub's namespace ("" for the default one).
	Namespace string `json:"ns"`
	Hub       string `json:"hub"`
	Group     string `json:"group"`
	Bytes     int64  `json:"bytes"`    // of its retained records, headers included; -1: unknown
	Messages  int    `json:"messages"` // retained
	// First and Last are the offsets of its oldest and newest retained
	// messages (0 when it has none); Epoch is its epoch.
	First uint64 `json:"first_offset"`
	Last  uint64 `json:"last_offset"`
	Epoch string `json:"epoch"`
	// MaxMessages and MaxAge are its retention limits.
	MaxMessages int    `json:"max_messages"`
	MaxAge      string `json:"max_age"`
}

// TopStreams returns the n streams with the most retained bytes, biggest
// first (ties by hub and group). It scans the streams' counters once under
// the log's lock (no record is read) and keeps at most n entries.
func (l *SegmentLog) TopStreams(n int) []StreamStat {
	if n <= 0 {
		return nil
	}
	type cand struct {
		k streamKey
		s StreamStat
	}
	less := func(a, b cand) int {
		return cmp.Or(cmp.Compare(b.s.Bytes, a.s.Bytes), cmp.Compare(a.k.hub, b.k.hub), cmp.Compare(a.k.group, b.k.group))
	}
	top := make([]cand, 0, n)
	l.mu.Lock()
	for k, s := range l.streams {
		c := cand{k: k, s: StreamStat{Bytes: s.bytes}}
		if len(top) == n && less(c, top[n-1]) >= 0 {
			continue
		}
		c.s = StreamStat{Hub: k.hub, Group: k.group, Bytes: s.bytes, Messages: len(s.entries), Epoch: FormatEpoch(s.epoch),
			MaxMessages: s.ret.MaxMessages, MaxAge: s.ret.MaxAge.String()}
		if len(s.entries) > 0 {
			c.s.First, c.s.Last = s.oldest(), s.top
		}
		if len(top) == n {
			top = top[:n-1]
		}
		i, _ := slices.BinarySearchFunc(top, c, less)
		top = slices.Insert(top, i, c)
	}
	l.mu.Unlock()
	out := make([]StreamStat, len(top))
	for i, c := range top {
		out[i] = c.s
	}
	return out
}

// Close writes what was appended, stops the goroutines and closes the
// files. Later calls return the same result.
func (l *SegmentLog) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.space.Broadcast()
		l.mu.Unlock()
		close(l.stop)
		l.done.Wait()
		l.closeErr = l.closeFiles()
	})
	return l.closeErr
}

func (l *SegmentLog) closeFiles() error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	var errs []error
	for _, s := range l.segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

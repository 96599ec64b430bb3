package history

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

var testPolicies = Policies{
	"chat":     {{Pattern: "room:*", Retention: Retention{MaxMessages: 1000, MaxAge: time.Hour}}},
	"_default": {{Pattern: "small:*", Retention: Retention{MaxMessages: 3, MaxAge: time.Hour}}},
}

func openLog(t *testing.T, dir string, mod func(*Options)) *SegmentLog {
	t.Helper()
	o := Options{Dir: dir, Policies: testPolicies, TrimInterval: time.Hour}
	if mod != nil {
		mod(&o)
	}
	l, err := OpenSegmentLog(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendWait(t *testing.T, l *SegmentLog, hub, group, data string) Record {
	t.Helper()
	r, err := tryAppendWait(l, hub, group, data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryAppendWait is appendWait for goroutines other than the test's, which
// must not call t.Fatal.
func tryAppendWait(l *SegmentLog, hub, group, data string) (Record, error) {
	r := Record{Hub: hub, Group: group, Data: []byte(data)}
	ack, err := l.Append(context.Background(), &r)
	if err != nil {
		return r, err
	}
	return r, ack.Wait()
}

func readAll(t *testing.T, l *SegmentLog, hub, group string, after uint64) []string {
	t.Helper()
	p, err := l.Read(hub, group, after, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range p.Records {
		out = append(out, fmt.Sprintf("%d:%s", r.Offset, r.Data))
	}
	return out
}

func TestAppendReadRestart(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	if _, err := l.Append(context.Background(), &Record{Hub: "chat", Group: "lobby"}); !errors.Is(err, ErrNotKept) {
		t.Fatalf("append to a group without history: %v", err)
	}
	first := appendWait(t, l, "chat", "room:1", "a")
	appendWait(t, l, "chat", "room:2", "x")
	appendWait(t, l, "chat", "room:1", "b")
	appendWait(t, l, "chat", "room:1", "c")
	if first.Offset != 1 || first.Epoch == 0 {
		t.Fatalf("first record %+v", first)
	}
	if got := fmt.Sprint(readAll(t, l, "chat", "room:1", 1)); got != "[2:b 3:c]" {
		t.Errorf("read after 1 = %s", got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, dir, nil)
	if got := fmt.Sprint(readAll(t, l2, "chat", "room:1", 0)); got != "[1:a 2:b 3:c]" {
		t.Errorf("after restart = %s", got)
	}
	next := appendWait(t, l2, "chat", "room:1", "d")
	if next.Offset != 4 || next.Epoch != first.Epoch {
		t.Errorf("after restart the next record is %d in epoch %x, want 4 in %x", next.Offset, next.Epoch, first.Epoch)
	}
	if p := l2.Top("chat", "room:2"); p.Offset != 1 || p.Oldest != 1 {
		t.Errorf("room:2 position %+v", p)
	}
}

func TestTornTailIsCut(t *testing.T) {
	for _, cut := range []int{1, 5, 9, 20} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, nil)
			for i := range 3 {
				appendWait(t, l, "chat", "room:1", fmt.Sprint("m", i))
			}
			l.Close()
			// Tear the last record: drop its last cut bytes.
			seg := newestSegment(t, dir)
			st, _ := os.Stat(seg)
			if err := os.Truncate(seg, st.Size()-int64(cut)); err != nil {
				t.Fatal(err)
			}
			l2 := openLog(t, dir, nil)
			if got := fmt.Sprint(readAll(t, l2, "chat", "room:1", 0)); got != "[1:m0 2:m1]" {
				t.Errorf("after a torn tail: %s", got)
			}
			// The torn offset is given out again, and the new record is served.
			r := appendWait(t, l2, "chat", "room:1", "new")
			if r.Offset != 3 {
				t.Errorf("next offset %d, want 3", r.Offset)
			}
			l2.Close()
			l3 := openLog(t, dir, nil)
			if got := fmt.Sprint(readAll(t, l3, "chat", "room:1", 0)); got != "[1:m0 2:m1 3:new]" {
				t.Errorf("after a second restart: %s", got)
			}
		})
	}
}

func TestCorruptTailIsCut(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	for i := range 3 {
		appendWait(t, l, "chat", "room:1", fmt.Sprint("m", i))
	}
	l.Close()
	seg := newestSegment(t, dir)
	b, _ := os.ReadFile(seg)
	b[len(b)-2] ^= 0x40 // a flipped bit in the last record's data
	os.WriteFile(seg, b, 0o600)
	l2 := openLog(t, dir, nil)
	if got := fmt.Sprint(readAll(t, l2, "chat", "room:1", 0)); got != "[1:m0 2:m1]" {
		t.Errorf("after a corrupt tail: %s", got)
	}
}

func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	// The newest non-empty one: a clean open starts an empty segment.
	for i := len(names) - 1; i >= 0; i-- {
		if st, _ := os.Stat(names[i]); st.Size() > int64(len(segmentMagic)) {
			return names[i]
		}
	}
	t.Fatal("no segment with records")
	return ""
}

func TestCountRetention(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	for i := range 5 {
		appendWait(t, l, "other", "small:1", fmt.Sprint(i))
	}
	if got := fmt.Sprint(readAll(t, l, "other", "small:1", 2)); got != "[3:2 4:3 5:4]" {
		t.Errorf("kept %s", got)
	}
	p, err := l.Read("other", "small:1", 1, 0, 0)
	if !errors.Is(err, ErrOffsetGone) || p.Oldest != 3 || p.Offset != 5 {
		t.Errorf("read after a trimmed offset: %v %+v", err, p)
	}
	if _, err := l.Read("other", "small:1", 9, 0, 0); !errors.Is(err, ErrOffsetAhead) {
		t.Errorf("read beyond the top: %v", err)
	}
}

func TestAgeRetentionAndSegmentRemoval(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l := openLog(t, dir, func(o *Options) { o.now = clock; o.SegmentBytes = 200 })
	for i := range 10 {
		appendWait(t, l, "chat", "room:old", fmt.Sprintf("old-%02d-padding-padding-padding", i))
	}
	advance(30 * time.Minute)
	appendWait(t, l, "chat", "room:new", "new")
	before := segments(t, dir)
	advance(31 * time.Minute) // room:old is now 61 minutes old, room:new 31
	l.TrimNow()
	if got := readAll(t, l, "chat", "room:old", 10); len(got) != 0 {
		t.Errorf("expired records served: %v", got)
	}
	p, err := l.Read("chat", "room:old", 0, 0, 0)
	if !errors.Is(err, ErrOffsetGone) || p.Oldest != 11 || p.Offset != 10 {
		t.Errorf("read of an expired stream: %v %+v", err, p)
	}
	if got := fmt.Sprint(readAll(t, l, "chat", "room:new", 0)); got != "[1:new]" {
		t.Errorf("room:new = %s", got)
	}
	if after := segments(t, dir); after >= before {
		t.Errorf("segments before trimming %d, after %d: expired segments not removed", before, after)
	}
	// Offsets go on after expiry, in the same epoch.
	e := l.Top("chat", "room:old").Epoch
	r := appendWait(t, l, "chat", "room:old", "again")
	if r.Offset != 11 || r.Epoch != e {
		t.Errorf("after expiry: offset %d epoch %x, want 11 %x", r.Offset, r.Epoch, e)
	}
}

func segments(t *testing.T, dir string) int {
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestNewEpochWhenDataLost(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	a := appendWait(t, l, "chat", "room:1", "a")
	l.Close()
	os.RemoveAll(dir)
	l2 := openLog(t, dir, nil)
	b := appendWait(t, l2, "chat", "room:1", "b")
	if b.Offset != 1 || b.Epoch == a.Epoch {
		t.Errorf("after losing the data: offset %d epoch %x (was %x)", b.Offset, b.Epoch, a.Epoch)
	}
}

func TestGroupCommitConcurrent(t *testing.T) {
	dir := t.TempDir()
	var syncs countingObserver
	l := openLog(t, dir, func(o *Options) { o.Observe = &syncs })
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := tryAppendWait(l, "chat", fmt.Sprint("room:", w%3), fmt.Sprint(w, "-", i)); err != nil {
					t.Errorf("writer %d, record %d: %v", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for g := range 3 {
		recs := readAll(t, l, "chat", fmt.Sprint("room:", g), 0)
		for i, r := range recs {
			var off int
			fmt.Sscanf(r, "%d:", &off)
			if off != i+1 {
				t.Fatalf("room:%d record %d has offset %d", g, i, off)
			}
		}
		total += len(recs)
	}
	if total != writers*each {
		t.Errorf("%d records, want %d", total, writers*each)
	}
	if n := syncs.synced(); n == 0 || n > writers*each {
		t.Errorf("%d fsyncs for %d appends", n, writers*each)
	}
}

type countingObserver struct {
	mu sync.Mutex
	n  int
}

func (c *countingObserver) Appended(string, int)     {}
func (c *countingObserver) Trimmed(string, int, int) {}
func (c *countingObserver) WriteFailed(string)       {}
func (c *countingObserver) Synced()                  { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *countingObserver) synced() int              { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func TestPolicies(t *testing.T) {
	p := Policies{
		"chat":     {{Pattern: "conversation:*", Retention: Retention{MaxMessages: 1000, MaxAge: 720 * time.Hour}}, {Pattern: "*:archive", Retention: Retention{MaxMessages: 1, MaxAge: time.Hour}}},
		"_default": {{Pattern: "notifications:user:*", Retention: Retention{MaxMessages: 100, MaxAge: 168 * time.Hour}}},
	}
	tests := []struct {
		hub, group string
		want       int // MaxMessages, 0: none
	}{
		{"chat", "conversation:1", 1000},
		{"Chat", "conversation:", 1000},
		{"chat", "conversation", 0},
		{"chat", "x:archive", 1},
		{"chat", "notifications:user:1", 0}, // chat has its own rules
		{"other", "notifications:user:1", 100},
		{"other", "notifications:users", 0},
	}
	for _, tt := range tests {
		r, ok := p.Lookup(tt.hub, tt.group)
		if got := map[bool]int{true: r.MaxMessages}[ok]; got != tt.want {
			t.Errorf("Lookup(%s, %s) = %d, want %d", tt.hub, tt.group, got, tt.want)
		}
	}
	bad := Policies{"h": {{Pattern: "", Retention: Retention{MaxMessages: 0, MaxAge: -1}}}}
	if err := bad.Validate(); err == nil {
		t.Error("invalid rules accepted")
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "a", true}, {"a*b", "axxb", true}, {"a*b", "axxbc", false},
		{"*:*:x", "a:b:x", true}, {"**", "zz", true}, {"abc", "abd", false}, {"a*a*a", "aaaa", true},
	}
	for _, tt := range tests {
		if got := matchGlob(tt.p, tt.s); got != tt.want {
			t.Errorf("matchGlob(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

// TestWriteFailureFailsTheLog: after a failed write nothing more is
// accepted (the page cache cannot be trusted), and the failed record is
// neither acknowledged nor served.
func TestWriteFailureFailsTheLog(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	appendWait(t, l, "chat", "room:1", "ok")
	l.active.f.Close() // the next write fails
	r := Record{Hub: "chat", Group: "room:1", Data: []byte("lost")}
	ack, err := l.Append(context.Background(), &r)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(); !errors.Is(err, ErrLogFailed) {
		t.Fatalf("wait after a failed write: %v", err)
	}
	if _, err := l.Append(context.Background(), &Record{Hub: "chat", Group: "room:1"}); !errors.Is(err, ErrLogFailed) || !errors.Is(err, core.ErrHistoryUnavailable) {
		t.Errorf("append to a failed log: %v", err)
	}
	if err := l.Unavailable(); err == nil || err.Error() != "history storage unavailable: I/O error" {
		t.Errorf("Unavailable() = %v", err)
	}
	// The failed record was never indexed: the durable top is still 1 (the
	// read itself fails here, on the closed file).
	if p, _ := l.Read("chat", "room:1", 0, 0, 0); p.Offset != 1 {
		t.Errorf("durable top %d after a failed write, want 1", p.Offset)
	}
}

// TopStreams: the biggest streams by retained bytes, with their offsets,
// epoch and retention; the bytes follow count retention and a restart's
// recovery.
func TestTopStreams(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	for i := range 5 {
		appendWait(t, l, "other", "small:1", strings.Repeat("s", 100+i)) // 3 kept of 5
	}
	first := appendWait(t, l, "chat", "room:big", strings.Repeat("b", 1000))
	appendWait(t, l, "chat", "room:big", strings.Repeat("b", 1000))
	appendWait(t, l, "chat", "room:tiny", "t")
	check := func(l *SegmentLog, when string) {
		t.Helper()
		top := l.TopStreams(2)
		if len(top) != 2 || top[0].Group != "room:big" || top[1].Group != "small:1" {
			t.Fatalf("%s: top 2 = %+v, want room:big then small:1", when, top)
		}
		big, small := top[0], top[1]
		if big.Hub != "chat" || big.Messages != 2 || big.First != 1 || big.Last != 2 || big.Epoch != FormatEpoch(first.Epoch) ||
			big.MaxMessages != 1000 || big.MaxAge != "1h0m0s" || big.Bytes < 2000 || big.Bytes > 2200 {
			t.Errorf("%s: room:big %+v", when, big)
		}
		if small.Messages != 3 || small.First != 3 || small.Last != 5 || small.MaxMessages != 3 || small.Bytes < 102+103+104 || small.Bytes > big.Bytes {
			t.Errorf("%s: small:1 %+v (the 2 trimmed records' bytes must be gone)", when, small)
		}
		if all := l.TopStreams(10); len(all) != 3 || all[2].Group != "room:tiny" {
			t.Errorf("%s: top 10 = %+v, want the 3 streams", when, all)
		}
		var sum int64
		for _, s := range l.TopStreams(10) {
			sum += s.Bytes
		}
		var hubs int64
		for _, b := range l.Stats().HubBytes {
			hubs += b
		}
		if sum != hubs {
			t.Errorf("%s: the streams' bytes add up to %d, the hubs' to %d", when, sum, hubs)
		}
	}
	check(l, "running")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(openLog(t, dir, nil), "after a restart")
	if l.TopStreams(0) != nil {
		t.Error("TopStreams(0) returned streams")
	}
}

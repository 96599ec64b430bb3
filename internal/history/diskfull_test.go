//go:build linux

package history_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/history"
)

// These tests fill a real file system: a small tmpfs mounted on a temporary
// directory (root only; CI runs as root), filled with a ballast file.

// mountTmpfs mounts a tmpfs of size (e.g. "4m") on a new temporary
// directory, unmounted when the test ends (after what the test started
// later has stopped).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to mount a small tmpfs as a disk that fills up (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fill writes a ballast file into dir until its file system is full, down
// to the last byte; free removes it.
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for _, n := range []int{len(buf), 4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	if err := f.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

var diskPolicies = history.Policies{"chat": {{Pattern: "*", Retention: history.Retention{MaxMessages: 1 << 20, MaxAge: time.Hour}}}}

// TestSegmentLogNoSpace: a write that fails for want of space refuses its
// record (never acknowledged, never served), takes its offset back, leaves
// the segment as it was, and the log accepts appends again once space
// returns, without reopening; the stream stays gapless. On main the log
// failed for good (ErrLogFailed) and kept the refused offset given out.
func TestSegmentLogNoSpace(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	l, err := history.OpenSegmentLog(history.Options{Dir: filepath.Join(dir, "history"), Policies: diskPolicies,
		TrimInterval: time.Hour, ProbeInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	send := func(data string) (history.Record, error) {
		r := history.Record{Hub: "chat", Group: "g", Data: []byte(data)}
		ack, err := l.Append(ctx, &r)
		if err == nil {
			err = ack.Wait()
		}
		return r, err
	}
	var kept []string
	for i := range 3 {
		d := strings.Repeat("k", 1000) + string(rune('a'+i))
		if _, err := send(d); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, d)
	}
	free := fill(t, dir)
	// Records fit in the segment's last page until it is full.
	var refused error
	for i := 0; refused == nil; i++ {
		if i > 100 {
			t.Fatal("no append failed on a full disk")
		}
		d := strings.Repeat("x", 1000) + string(rune('a'+i%26))
		if _, err := send(d); err != nil {
			refused = err
		} else {
			kept = append(kept, d)
		}
	}
	if !errors.Is(refused, core.ErrHistoryUnavailable) || !errors.Is(refused, syscall.ENOSPC) || errors.Is(refused, history.ErrLogFailed) {
		t.Fatalf("append on a full disk: %v; want core.ErrHistoryUnavailable wrapping ENOSPC, not ErrLogFailed", refused)
	}
	if got := refused.Error(); got != "history storage unavailable: no space left on device" {
		t.Errorf("error text %q", got)
	}
	if p := l.Top("chat", "g"); p.Offset != uint64(len(kept)) {
		t.Errorf("top after the refused append = %d, want the last durable offset %d (the refused one taken back)", p.Offset, len(kept))
	}
	if _, err := send("while full"); !errors.Is(err, core.ErrHistoryUnavailable) {
		t.Errorf("append while full: %v", err)
	}
	if l.Unavailable() == nil {
		t.Error("Unavailable() = nil while the disk is full")
	}
	free()
	eventually.True(t, "appends accepted again after space returned", 30*time.Second, func() bool { return l.Unavailable() == nil })
	r, err := send("after")
	if err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	kept = append(kept, "after")
	if r.Offset != uint64(len(kept)) {
		t.Errorf("offset after recovery %d, want %d (gapless)", r.Offset, len(kept))
	}
	p, err := l.Read("chat", "g", 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != len(kept) {
		t.Fatalf("read %d records, want %d", len(p.Records), len(kept))
	}
	for i, rec := range p.Records {
		if rec.Offset != uint64(i+1) || string(rec.Data) != kept[i] {
			t.Errorf("record %d: offset %d data %.8q…, want offset %d data %.8q…", i, rec.Offset, rec.Data, i+1, kept[i])
		}
	}
	// And the segment holds exactly those records: a reopen finds them all.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := history.OpenSegmentLog(history.Options{Dir: filepath.Join(dir, "history"), Policies: diskPolicies, TrimInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if p := l2.Top("chat", "g"); p.Offset != uint64(len(kept)) || p.Epoch != r.Epoch {
		t.Errorf("after reopen: top %d epoch %x, want %d %x", p.Offset, p.Epoch, len(kept), r.Epoch)
	}
}

// TestUnavailableServiceCloses: a service whose log could not open on a
// full disk is unavailable with the cause, and Close stops its opener; a
// log whose prober is retrying stops on Close too.
func TestUnavailableServiceCloses(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	free := fill(t, dir)
	defer free()
	s, err := history.New(history.Config{Dir: filepath.Join(dir, "history"), Policies: diskPolicies, ProbeInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatalf("New on a full disk: %v (want an unavailable service)", err)
	}
	if err := s.Unavailable(); !errors.Is(err, core.ErrHistoryUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Unavailable() = %v", err)
	}
	if _, err := s.Append(context.Background(), "chat", "g", &core.Message{Data: []byte("x")}); !errors.Is(err, core.ErrHistoryUnavailable) {
		t.Errorf("Append with the log not open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

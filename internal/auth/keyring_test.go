package auth_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
)

func TestNewKeyRing(t *testing.T) {
	t.Parallel()
	if _, err := auth.NewKeyRing(); !errors.Is(err, auth.ErrNoKey) {
		t.Errorf("NewKeyRing() error = %v, want ErrNoKey", err)
	}
	for _, keys := range [][]string{{""}, {"a", ""}, {"a", " \t"}} {
		if _, err := auth.NewKeyRing(keys...); !errors.Is(err, auth.ErrEmptyKey) {
			t.Errorf("NewKeyRing(%q) error = %v, want ErrEmptyKey", keys, err)
		}
	}

	in := []string{"primary", "secondary"}
	k, err := auth.NewKeyRing(in...)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = "changed"
	if got := k.Primary(); got != "primary" {
		t.Errorf("Primary() = %q, want the key as passed", got)
	}
	keys := k.Keys()
	if len(keys) != 2 || keys[0] != "primary" || keys[1] != "secondary" {
		t.Errorf("Keys() = %q", keys)
	}
	keys[0] = "mutated"
	if k.Primary() != "primary" {
		t.Error("Keys() exposes the ring's slice")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "data")

	key, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != 32 {
		t.Fatalf("key %q is not base64 of 32 bytes (err %v, %d bytes)", key, err, len(raw))
	}
	fi, err := os.Stat(filepath.Join(dir, "access-key"))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only access-key", len(entries))
	}

	again, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != key {
		t.Errorf("second call = %q, want stable key %q", again, key)
	}
	if _, err := auth.NewKeyRing(key); err != nil {
		t.Errorf("generated key rejected by NewKeyRing: %v", err)
	}
}

func TestLoadOrCreateKeyExisting(t *testing.T) {
	t.Parallel()
	if _, err := auth.LoadOrCreateKey(""); err == nil {
		t.Error("empty data dir: want error")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "access-key"), []byte("  my-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := auth.LoadOrCreateKey(dir)
	if err != nil || key != "my-key" {
		t.Fatalf("LoadOrCreateKey = %q, %v; want my-key", key, err)
	}

	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "access-key"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateKey(empty); !errors.Is(err, auth.ErrEmptyKey) {
		t.Fatalf("empty key file: error = %v, want ErrEmptyKey", err)
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 16
	keys := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = auth.LoadOrCreateKey(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("call %d got %q, call 0 got %q", i, keys[i], keys[0])
		}
	}
}

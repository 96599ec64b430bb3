package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cristalhq/jwt/v4"
)

// KeyRing holds the access keys, primary first. Tokens are signed with the primary key and
// verified against every key (rotation). A KeyRing is immutable and safe for concurrent use.
type KeyRing struct {
	keys     []string
	keyBytes [][]byte // UTF-8 bytes of keys, same order

	// builder signs tokens with the primary key (HS256); verifiers holds, for each
	// accepted alg, one verifier per key in ring order.
	builder   *jwt.Builder
	verifiers map[jwt.Algorithm][]jwt.Verifier

	verified tokenCache // server tokens that verified
}

// NewKeyRing returns a KeyRing holding keys, the first being the primary. It returns an
// error wrapping [ErrNoKey] when keys is empty and [ErrEmptyKey] when any key is empty or
// only white space. Keys are used exactly as given (not trimmed, not base64-decoded).
func NewKeyRing(keys ...string) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, ErrNoKey
	}
	k := &KeyRing{
		keys:     make([]string, len(keys)),
		keyBytes: make([][]byte, len(keys)),
	}
	k.verifiers = make(map[jwt.Algorithm][]jwt.Verifier, len(hmacAlgorithms))
	for i, key := range keys {
		if strings.TrimSpace(key) == "" {
			return nil, fmt.Errorf("auth: key %d: %w", i, ErrEmptyKey)
		}
		k.keys[i] = key
		k.keyBytes[i] = []byte(key)
		for _, alg := range hmacAlgorithms {
			v, err := jwt.NewVerifierHS(alg, k.keyBytes[i])
			if err != nil {
				return nil, fmt.Errorf("auth: key %d: %w", i, err)
			}
			k.verifiers[alg] = append(k.verifiers[alg], v)
		}
	}
	signer, err := jwt.NewSignerHS(jwt.HS256, k.keyBytes[0])
	if err != nil {
		return nil, fmt.Errorf("auth: primary key: %w", err)
	}
	k.builder = jwt.NewBuilder(signer)
	return k, nil
}

// Primary returns the key tokens are signed with.
func (k *KeyRing) Primary() string { return k.keys[0] }

// Keys returns a copy of all keys, primary first.
func (k *KeyRing) Keys() []string {
	out := make([]string, len(k.keys))
	copy(out, k.keys)
	return out
}

// keyFileName is the name of the generated key file inside the data directory.
const keyFileName = "access-key"

// LoadOrCreateKey returns the key stored in dataDir/access-key. If the file does not exist it
// creates dataDir (0700) and the file (0600) holding a new random key: 32 bytes from
// crypto/rand, standard base64. The key is therefore stable across restarts. Surrounding
// white space in the file is ignored; an empty file is an error rather than being replaced.
// Concurrent callers on the same directory all get the same key.
func LoadOrCreateKey(dataDir string) (string, error) {
	if dataDir == "" {
		return "", errors.New("auth: load key: empty data dir")
	}
	path := filepath.Join(dataDir, keyFileName)
	key, err := readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}

	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("auth: create data dir %q: %w", dataDir, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("auth: generate key: %w", err)
	}
	key = base64.StdEncoding.EncodeToString(raw[:])

	created, err := createKeyFile(dataDir, path, key)
	if err != nil {
		return "", err
	}
	if !created {
		// Another process won the race; use its key.
		return readKeyFile(path)
	}
	return key, nil
}

func readKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("auth: read key %q: %w", path, err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("auth: read key %q: %w", path, ErrEmptyKey)
	}
	return key, nil
}

// createKeyFile writes key to path without ever replacing an existing file and without
// exposing a partly written one: it writes a temporary file and hard-links it into place.
// It reports false when path already exists. Where hard links are unsupported it falls back
// to an exclusive create.
func createKeyFile(dir, path, key string) (created bool, err error) {
	data := []byte(key + "\n")
	tmp, err := os.CreateTemp(dir, ".access-key-*") // mode 0600
	if err != nil {
		return false, fmt.Errorf("auth: write key: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("auth: write key: %w", err)
	}

	err = os.Link(tmpName, path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}

	// Fallback: exclusive create and write in place.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("auth: write key %q: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("auth: write key %q: %w", path, err)
	}
	return true, nil
}

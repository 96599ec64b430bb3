package listener

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func writePair(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
}

func serial(t *testing.T, c *Certificate) int64 {
	t.Helper()
	got, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(got.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.SerialNumber.Int64()
}

// TestCertificateReload: a changed pair is served; a broken one keeps the one in use;
// a fixed one is served again.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(t, cf, kf, 1)
	c, err := LoadCertificate(cf, kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.interval = 0 // look at the files on every hello
	if got := serial(t, c); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	writePair(t, cf, kf, 2)
	if got := serial(t, c); got != 2 {
		t.Fatalf("after the files changed: serial %d, want 2", got)
	}
	os.WriteFile(cf, []byte("not a certificate"), 0o600)
	if got := serial(t, c); got != 2 {
		t.Fatalf("after a broken file: serial %d, want the previous 2", got)
	}
	writePair(t, cf, kf, 3)
	if got := serial(t, c); got != 3 {
		t.Fatalf("after a fixed pair: serial %d, want 3", got)
	}
	if _, err := LoadCertificate(filepath.Join(dir, "none.pem"), kf, nil); err == nil {
		t.Fatal("a missing certificate file loaded")
	}
}

// TestCertificateReloadConcurrent: hellos on many connections while the files change
// (run with -race): every hello gets a whole certificate, and the last pair is served.
func TestCertificateReloadConcurrent(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writePair(t, cf, kf, 1)
	c, err := LoadCertificate(cf, kf, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.interval = 0
	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				got, err := c.GetCertificate(nil)
				if err == nil && (got == nil || len(got.Certificate) == 0 || got.PrivateKey == nil) {
					err = errors.New("an incomplete certificate")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := int64(2); i < 12; i++ {
		writePair(t, cf, kf, i)
	}
	close(stop)
	wg.Wait()
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := serial(t, c); got != 11 {
		t.Fatalf("serial %d after the last change, want 11", got)
	}
}

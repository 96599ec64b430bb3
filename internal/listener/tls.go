package listener

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// CheckInterval is how often, at most, the certificate files are looked at for a change.
const CheckInterval = 2 * time.Second

// Certificate is a TLS certificate read from a pair of PEM files and read again when
// either file changes (its size or modification time), looked at no more often than
// every CheckInterval, when a client says hello. A pair that fails to load keeps the
// previous certificate in use and is logged; the files are tried again at the next
// change.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration

	mu      sync.Mutex // guards the fields below
	cert    *tls.Certificate
	stamp   [2]fileStamp // of the pair cert was read from, or last failed to load
	checked time.Time
}

type fileStamp struct {
	size int64
	mod  time.Time
}

// LoadCertificate reads the pair; an error here means the server cannot start.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, interval: CheckInterval}
	stamp, err := c.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	return c, nil
}

func (c *Certificate) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		s[i] = fileStamp{size: fi.Size(), mod: fi.ModTime()}
	}
	return s, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= c.interval {
		c.checked = now
		c.reloadLocked()
	}
	return c.cert, nil
}

// reloadLocked reads the pair again if either file changed since it was last read.
func (c *Certificate) reloadLocked() {
	stamp, err := c.stamps()
	if err != nil {
		c.log.Error("tls: cannot read the certificate files; keeping the current certificate", "err", err)
		return
	}
	if stamp == c.stamp {
		return
	}
	c.stamp = stamp // a bad pair is logged once, not at every check
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.log.Error("tls: the changed certificate does not load; keeping the current one", "cert_file", c.certFile, "key_file", c.keyFile, "err", err)
		return
	}
	c.cert = &cert
	c.log.Info("tls: certificate reloaded", "cert_file", c.certFile)
}

// Config returns the server TLS configuration: TLS 1.2 or later, Go's default cipher
// suites, HTTP/1.1 only (WebSockets upgrade HTTP/1.1 requests), this certificate.
func (c *Certificate) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: c.GetCertificate,
	}
}

// TLS returns a listener serving TLS with c on ln. The handshake runs on a connection's
// first read or write, on the goroutine that serves it, within that reader's deadline.
func (c *Certificate) TLS(ln net.Listener) net.Listener {
	return tls.NewListener(ln, c.Config())
}

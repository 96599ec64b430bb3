package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial to certFile and
// keyFile and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "switchboard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as a certificate manager does.
	for _, f := range []struct {
		name string
		data []byte
	}{{keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}, {certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}} {
		if err := os.WriteFile(f.name+".new", f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f.name+".new", f.name); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestTLS: with tls.cert_file and tls.key_file both listeners serve TLS: the printed
// endpoints say https, a WebSocket client on wss:// (through the front door) gets a REST
// message sent over https, SignalR negotiates over https; a replaced certificate is
// served without a restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	srv := servertest.Start(t, servertest.Options{Settings: []string{"tls.cert_file=" + certFile, "tls.key_file=" + keyFile}})
	wps, sr := srv.Endpoint(), srv.SignalREndpoint()
	if !strings.HasPrefix(wps, "https://") || !strings.HasPrefix(sr, "https://") || !strings.Contains(srv.ConnectionString(), "Endpoint=https://") {
		t.Fatalf("endpoints %q and %q, connection string %q: want https", wps, sr, srv.ConnectionString())
	}
	roots := x509.NewCertPool()
	roots.AddCert(first)
	tlsCfg := &tls.Config{RootCAs: roots}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}

	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(wps, "chat"), auth.MintOptions{UserID: "ann", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d := ws.Dialer{TLSConfig: tlsCfg, Protocols: []string{"json.webpubsub.azure.v1"}, Timeout: 10 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "wss"+strings.TrimPrefix(wps, "https")+"/client/hubs/chat?access_token="+tok)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(p)
	}
	if hello := read(); !strings.Contains(hello, `"event":"connected"`) {
		t.Fatalf("hello = %s", hello)
	}
	url := wps + "/api/hubs/chat/users/ann/:send?api-version=2024-01-01"
	stok, _ := srv.Keys().MintServerToken(url, time.Minute)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("over tls"))
	req.Header.Set("Authorization", "Bearer "+stok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("REST over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("REST send: %d", resp.StatusCode)
	}
	if got := read(); !strings.Contains(got, `"data":"over tls"`) {
		t.Fatalf("message over wss: %s", got)
	}

	srTok, _ := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, "chat"), "ann", time.Minute)
	req, _ = http.NewRequest(http.MethodPost, sr+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+srTok)
	if resp, err = client.Do(req); err != nil {
		t.Fatalf("SignalR negotiate over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("negotiate: %d", resp.StatusCode)
	}

	// A new certificate in the files is served within seconds, on both listeners.
	second := writeCert(t, certFile, keyFile, 2)
	for _, ep := range []string{wps, sr} {
		eventually.Nil(t, 15*time.Second, func() error {
			c, err := tls.Dial("tcp", strings.TrimPrefix(ep, "https://"), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			serial := c.ConnectionState().PeerCertificates[0].SerialNumber
			c.Close()
			if serial.Cmp(second.SerialNumber) != 0 {
				return fmt.Errorf("%s still serves certificate %v after the files changed", ep, serial)
			}
			return nil
		})
	}
}

// TestTLSRESTLinksSayHTTPS: a REST call over TLS on the main listener builds its links and
// token audiences with https. The front door hands REST connections to net/http wrapped
// (a *tls.Conn no longer), so net/http left the request's TLS unset and every link said
// http:// to a port that speaks only TLS: a generated client token's audience, a group
// listing's and a catch-up read's nextLink.
func TestTLSRESTLinksSayHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeCert(t, certFile, keyFile, 1)
	srv := servertest.Start(t, servertest.Options{Settings: []string{"tls.cert_file=" + certFile, "tls.key_file=" + keyFile}})
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: 10 * time.Second}

	url := srv.Endpoint() + "/api/hubs/chat/:generateToken?api-version=2024-01-01"
	stok, _ := srv.Keys().MintServerToken(url, time.Minute)
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+stok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("generateToken over https: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("generateToken: %d %s", resp.StatusCode, body)
	}
	var tr struct{ Token string }
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tr.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tr.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Aud string }
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(claims.Aud, "https://") {
		t.Fatalf("client token audience %q from a request over TLS: want https://", claims.Aud)
	}
}

// TestTLSPortsHoldNoStalledClient: on both TLS listeners, a client that connects and
// stalls before or in the middle of its ClientHello is dropped within the header timeout
// (server.read_timeout, at most 10 s), and a plain-HTTP request is answered 400 naming
// the mistake, not met with a silent close.
func TestTLSPortsHoldNoStalledClient(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	srv := servertest.Start(t, servertest.Options{Settings: []string{"tls.cert_file=" + certFile, "tls.key_file=" + keyFile, "server.read_timeout=1s"}})
	// The first bytes of a TLS 1.2 ClientHello record: a handshake record of 512 bytes of
	// which only 5 come.
	partialHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03}
	for _, ep := range []string{srv.Endpoint(), srv.SignalREndpoint()} {
		addr := strings.TrimPrefix(ep, "https://")
		for _, first := range [][]byte{nil, partialHello} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write(first)
			c.SetReadDeadline(time.Now().Add(20 * time.Second)) // "never", for the test
			_, err = io.ReadAll(c)
			c.Close()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: a client stalled after %d bytes of its ClientHello is still held after 20 s", ep, len(first))
			}
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /client/hubs/chat HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(got), "HTTP/1.0 400") || !strings.Contains(string(got), "HTTPS") {
			t.Fatalf("%s: plain HTTP to the TLS port answered %q, want a 400 that names HTTPS", ep, got)
		}
	}
}

package kafka_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// selfSigned returns a TLS certificate for 127.0.0.1 and the path of its PEM file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// The Event Hubs configuration (SASL PLAIN with user $ConnectionString and the connection
// string as password, over TLS verified by a CA), and SCRAM-SHA-256 and -512, against a kfake
// that requires them: records arrive. A wrong password is reported in /admin/connectors.
func TestKafkaSASLOverTLS(t *testing.T) {
	cert, caFile := selfSigned(t)
	const eventHubsCS = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0"
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "account-updates"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "$ConnectionString", eventHubsCS),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pw-256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pw-512"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	brokers := kf.ListenAddrs()[0]
	roots := x509.NewCertPool()
	roots.AddCert(func() *x509.Certificate { c, _ := x509.ParseCertificate(cert.Certificate[0]); return c }())
	p, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DialTLSConfig(&tls.Config{RootCAs: roots}), kgo.SASL(scram.Auth{User: "scram256", Pass: "pw-256"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	connectors := ""
	for i, c := range []struct{ mech, user, pass string }{
		{"PLAIN", "$ConnectionString", eventHubsCS},
		{"SCRAM-SHA-256", "scram256", "pw-256"},
		{"SCRAM-SHA-512", "scram512", "pw-512"},
		{"PLAIN", "$ConnectionString", "wrong"},
	} {
		connectors += kafkaConnector(fmt.Sprintf("c%d", i), brokers, "account-updates", fmt.Sprintf("g%d", i),
			`group: "customer:{key}"`,
			fmt.Sprintf(`idempotency_key: "{topic}/{partition}/{offset}/%d"`, i),
			fmt.Sprintf("sasl: {mechanism: %s, user: %q, password: %q}", c.mech, c.user, c.pass),
			fmt.Sprintf("tls: {enabled: true, ca_file: %q}", caFile))
	}
	srv := startServer(t, configFile(t, connectors))
	produce(t, p, record("account-updates", 0, "c-1", `{"n":1}`))
	waitHistory(t, srv.Endpoint(), "customer:c-1", 3) // one per connector that authenticates
	var status struct {
		Connectors []struct {
			Name      string
			State     string
			LastError string `json:"last_error"`
		}
	}
	eventuallyStatus := func() bool {
		adminJSON(t, srv.Endpoint(), &status)
		return status.Connectors[3].LastError != ""
	}
	waitFor(t, "the connector with a wrong password reports its error", eventuallyStatus)
	if got := len(history(t, srv.Endpoint(), "customer:c-1")); got != 3 {
		t.Errorf("%d records in the history, want 3 (the wrong password must deliver nothing)", got)
	}
	for _, c := range status.Connectors[:3] {
		if c.State != "running" {
			t.Errorf("connector %s is %s", c.Name, c.State)
		}
	}
	t.Logf("wrong password: %s", status.Connectors[3].LastError)
}

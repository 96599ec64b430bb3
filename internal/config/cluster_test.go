package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestClusterSettings(t *testing.T) {
	env := []string{"SWITCHBOARD_CLUSTER_NATS_URL=nats://a:4222, nats://alice:s3cret@b:4222", "SWITCHBOARD_CLUSTER_NATS_USER=sb",
		"SWITCHBOARD_CLUSTER_NATS_PASSWORD=hunter2", "SWITCHBOARD_SERVER_NODE_ID=node-1"}
	c, err := Load("", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Cluster.NATSURL; len(got) != 2 || got[0] != "nats://a:4222" || got[1] != "nats://alice:s3cret@b:4222" {
		t.Fatalf("nats_url %q", got)
	}
	b, _ := json.Marshal(c.Redacted())
	for _, secret := range []string{"hunter2", "s3cret", "alice"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("redacted config shows %q: %s", secret, b)
		}
	}
	if c.Cluster.NATSPassword != "hunter2" {
		t.Error("Redacted changed the original")
	}
}

func TestClusterValidation(t *testing.T) {
	for _, tc := range []struct {
		settings []string
		want     string // "" valid
	}{
		{nil, ""},
		{[]string{"cluster.nats_token=x"}, "cluster.nats_token: is set but cluster.nats_url is empty"},
		{[]string{"cluster.nats_url=http://a:4222"}, "is not a nats://"},
		{[]string{"cluster.nats_url=nats://a:4222", "server.node_id=a.b"}, "server.node_id"},
		{[]string{"cluster.nats_url=nats://a:4222", "cluster.nats_user=u", "cluster.nats_token=t"}, "alternatives"},
		{[]string{"cluster.nats_url=nats://a:4222", "cluster.nats_password=p"}, "needs cluster.nats_user"},
		{[]string{"cluster.nats_url=nats://a:4222", "cluster.nats_cert_file=c.pem"}, "go together"},
		{[]string{"cluster.nats_url=tls://a:4222,nats://b", "server.node_id=n-1", "cluster.nats_creds_file=x.creds"}, ""},
	} {
		_, err := Load("", nil, tc.settings)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.settings, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error with %q", tc.settings, err, tc.want)
		}
	}
}

package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

const (
	key0 = "dashboard-test-key-0-0123456789abcdef"
	key1 = "dashboard-test-key-1-0123456789abcdef"
)

type fixture struct {
	t   *testing.T
	d   *Dashboard
	reg *prometheus.Registry
	mux *http.ServeMux
	now time.Time
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	ring, err := auth.NewKeyRing(key0, key1)
	if err != nil {
		t.Fatal(err)
	}
	node, err := core.NewNode(core.Config{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tr, err := NewTracer(TraceConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Keys: ring, Namespaces: []Namespace{{Name: "webpubsub", Node: node}}, Tracer: tr, Gatherer: reg,
		Registerer: reg, Endpoint: func() string { return "http://example.test:8080" },
		SignalREndpoint: func() string { return "http://example.test:8081" }}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, d: d, reg: reg, mux: http.NewServeMux(), now: time.Now()}
	d.now = func() time.Time { return f.now }
	d.Register(f.mux)
	return f
}

// do serves one request from 192.0.2.1 (not loopback) to Host example.test.
func (f *fixture) do(method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://example.test"+path, strings.NewReader(body))
	r.RemoteAddr = "192.0.2.1:1234"
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

func (f *fixture) login(k string) *httptest.ResponseRecorder {
	return f.do("POST", "/dashboard/login", url.Values{"key": {k}}.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
}

// session logs in and returns the cookie header.
func (f *fixture) session() string {
	f.t.Helper()
	w := f.login(key1) // any key of the ring
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != CookieName || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Path != "/dashboard/" {
		f.t.Fatalf("session cookie %+v", c)
	}
	return CookieName + "=" + c[0].Value
}

func (f *fixture) count(vec string, label string) float64 {
	f.t.Helper()
	fams, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != vec {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error", w.Body)
	}
	return e.Error
}

func TestRootRedirectsOnlyExactSlash(t *testing.T) {
	f := newFixture(t, nil)
	w := f.do("GET", "/", "", nil)
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/dashboard/" {
		t.Fatalf("GET / = %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := f.do("GET", "/other", "", nil); w.Code != http.StatusNotFound {
		t.Fatalf("GET /other = %d, want 404 (only / redirects)", w.Code)
	}
}

func TestNoSessionIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	if w := f.do("GET", "/dashboard/", "", nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/dashboard/login" {
		t.Fatalf("GET /dashboard/ without a session = %d %q, want a redirect to the login", w.Code, w.Header().Get("Location"))
	}
	for _, p := range []string{"/dashboard/api/overview", "/dashboard/api/conn?hub=h&id=x", "/dashboard/api/trace"} {
		w := f.do("GET", p, "", nil)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("GET %s = %d, want 401", p, w.Code)
		}
		errorOf(t, w)
	}
	if w := f.do("POST", "/dashboard/api/send", `{}`, map[string]string{CSRFHeader: "1"}); w.Code != http.StatusUnauthorized {
		t.Fatalf("POST send without a session = %d", w.Code)
	}
	if got := f.count("switchboard_dashboard_refused_total", "no_session"); got != 4 {
		t.Fatalf("no_session refusals = %v, want 4", got)
	}
	if w := f.do("GET", "/dashboard/login", "", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="key"`) {
		t.Fatalf("login page %d", w.Code)
	}
}

func TestBadKeyIsRefusedAndCounted(t *testing.T) {
	f := newFixture(t, nil)
	w := f.login("not-the-key")
	if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Fatalf("bad key: %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if !strings.Contains(w.Body.String(), "That key is not valid.") {
		t.Fatalf("bad key page does not say why: %s", w.Body)
	}
	if got := f.count("switchboard_dashboard_logins_total", "bad_key"); got != 1 {
		t.Fatalf("bad_key logins = %v, want 1", got)
	}
	cookie := f.session()
	if w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": cookie}); w.Code != http.StatusOK {
		t.Fatalf("overview with a session = %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/dashboard/", "", map[string]string{"Cookie": cookie}); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Live trace") {
		t.Fatalf("page with a session = %d", w.Code)
	}
}

func TestSecretReplacesTheAccessKeys(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Secret = "the-dashboard-secret" })
	if w := f.login(key0); w.Code != http.StatusUnauthorized {
		t.Fatalf("access key with dashboard.secret set: %d, want 401", w.Code)
	}
	if w := f.login("the-dashboard-secret"); w.Code != http.StatusSeeOther {
		t.Fatalf("secret: %d", w.Code)
	}
}

func TestLoginAttemptsAreRateLimited(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LoginRate, c.LoginBurst = 0.001, 3 })
	for i := range 3 {
		if w := f.login("wrong"); w.Code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, w.Code)
		}
	}
	w := f.login(key0) // even the right key waits
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d, want 429 with Retry-After", w.Code)
	}
	if got := f.count("switchboard_dashboard_logins_total", "rate_limited"); got != 1 {
		t.Fatalf("rate_limited = %v", got)
	}
}

func TestForgedAndExpiredSessions(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.SessionTTL = time.Hour })
	cookie := f.session()
	get := func(c string) int {
		return f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": c}).Code
	}
	// A session signed with another key (another server's, or a guess).
	other := newSessions("another-secret", time.Hour).mint(f.now)
	// The right signature over a changed expiry.
	v := strings.TrimPrefix(cookie, CookieName+"=")
	exp, rest, _ := strings.Cut(v, ".")
	tampered := exp + "9" + "." + rest
	for name, c := range map[string]string{"other key": other, "tampered": tampered, "garbage": "x.y.z", "empty": ""} {
		if code := get(CookieName + "=" + c); code != http.StatusUnauthorized {
			t.Errorf("%s session: %d, want 401", name, code)
		}
	}
	if got := f.count("switchboard_dashboard_refused_total", "forged_session"); got != 4 {
		t.Errorf("forged_session = %v, want 4", got)
	}
	if code := get(cookie); code != http.StatusOK {
		t.Fatalf("valid session: %d", code)
	}
	f.now = f.now.Add(time.Hour + time.Second)
	if code := get(cookie); code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d, want 401", code)
	}
	if got := f.count("switchboard_dashboard_refused_total", "expired_session"); got != 1 {
		t.Errorf("expired_session = %v, want 1", got)
	}
}

func TestStateChangesNeedTheCSRFHeaderAndSameOrigin(t *testing.T) {
	f := newFixture(t, nil)
	cookie := f.session()
	body := `{"hub":"h","target":"all","content_type":"text/plain","data":"hi"}`
	w := f.do("POST", "/dashboard/api/send", body, map[string]string{"Cookie": cookie})
	if w.Code != http.StatusForbidden || !strings.Contains(errorOf(t, w), CSRFHeader) {
		t.Fatalf("send without the header: %d %s", w.Code, w.Body)
	}
	w = f.do("POST", "/dashboard/api/send", body, map[string]string{"Cookie": cookie, CSRFHeader: "1",
		"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	if w.Code != http.StatusForbidden {
		t.Fatalf("cross-site send: %d %s", w.Code, w.Body)
	}
	if got := f.count("switchboard_dashboard_refused_total", "csrf"); got != 2 {
		t.Fatalf("csrf refusals = %v", got)
	}
	w = f.do("POST", "/dashboard/api/send", body, map[string]string{"Cookie": cookie, CSRFHeader: "1",
		"Origin": "http://example.test", "Sec-Fetch-Site": "same-origin"})
	if w.Code != http.StatusOK {
		t.Fatalf("same-origin send: %d %s", w.Code, w.Body)
	}
	// A cross-site login form is refused too.
	w = f.do("POST", "/dashboard/login", "key="+key0, map[string]string{"Content-Type": "application/x-www-form-urlencoded",
		"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	if w.Code != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", w.Code)
	}
}

func TestAnonymousLocalhost(t *testing.T) {
	for _, allow := range []bool{false, true} {
		f := newFixture(t, func(c *Config) { c.AllowAnonymousLocalhost = allow })
		get := func(remote, host string) int {
			r := httptest.NewRequest("GET", "/dashboard/api/overview", nil)
			r.RemoteAddr, r.Host = remote, host
			w := httptest.NewRecorder()
			f.mux.ServeHTTP(w, r)
			return w.Code
		}
		want := http.StatusUnauthorized
		if allow {
			want = http.StatusOK
		}
		if code := get("127.0.0.1:5000", "localhost:8080"); code != want {
			t.Errorf("allow=%v loopback: %d, want %d", allow, code, want)
		}
		if code := get("[::1]:5000", "[::1]:8080"); code != want {
			t.Errorf("allow=%v ::1: %d, want %d", allow, code, want)
		}
		if code := get("192.0.2.7:5000", "localhost:8080"); code != http.StatusUnauthorized {
			t.Errorf("allow=%v remote peer: %d, want 401", allow, code)
		}
		// A page of another site whose name resolves to 127.0.0.1 (DNS rebinding).
		if code := get("127.0.0.1:5000", "evil.example:8080"); code != http.StatusUnauthorized {
			t.Errorf("allow=%v rebound host: %d, want 401", allow, code)
		}
	}
}

func TestCallsRefuseBadInput(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 64 })
	cookie := f.session()
	post := func(path, body string) *httptest.ResponseRecorder {
		return f.do("POST", path, body, map[string]string{"Cookie": cookie, CSRFHeader: "1"})
	}
	for _, c := range []struct {
		path, body string
		status     int
		says       string
	}{
		{"/dashboard/api/send", `not json`, 400, "JSON object"},
		{"/dashboard/api/send", `{"hub":"h","target":"all"} {}`, 400, "nothing after"},
		{"/dashboard/api/send", `{"hub":"h","target":"all","extra":1}`, 400, "unknown field"},
		{"/dashboard/api/send", `{"hub":"bad hub!","target":"all"}`, 400, "hub"},
		{"/dashboard/api/send", `{"hub":"h","target":"everyone"}`, 400, "target"},
		{"/dashboard/api/send", `{"hub":"h","target":"group","name":""}`, 400, "group"},
		{"/dashboard/api/send", `{"hub":"h","target":"all","content_type":"application/json","data":"{"}`, 400, "JSON"},
		{"/dashboard/api/send", `{"hub":"h","target":"all","base64":true,"data":"%%%"}`, 400, "base64"},
		{"/dashboard/api/send", `{"hub":"h","target":"all","data":"` + strings.Repeat("x", 70) + `"}`, 400, "more than the 64"},
		{"/dashboard/api/send", `{"hub":"h","target":"all","data":"` + strings.Repeat("x", 5000) + `"}`, 413, "larger than"},
		{"/dashboard/api/send", `{"ns":"nope","hub":"h","target":"all"}`, 400, "namespace"},
		{"/dashboard/api/close", `{"hub":"h"}`, 400, "connection id"},
		{"/dashboard/api/token", `{"hub":"h","minutes":100000}`, 400, "minutes"},
		{"/dashboard/api/token", `{"hub":"h","groups":[""]}`, 400, "group"},
		{"/dashboard/api/nothing", `{}`, 404, "no such"},
	} {
		w := post(c.path, c.body)
		if w.Code != c.status || !strings.Contains(errorOf(t, w), c.says) {
			t.Errorf("%s %s: %d %s, want %d saying %q", c.path, c.body[:min(len(c.body), 40)], w.Code, w.Body, c.status, c.says)
		}
	}
	if got := f.count("switchboard_dashboard_refused_total", "bad_request"); got != 14 {
		t.Errorf("bad_request refusals = %v, want the 13 400s and the 413", got)
	}
	w := f.do("GET", "/dashboard/api/conn?hub=h&id=n1_nobody", "", map[string]string{"Cookie": cookie})
	if w.Code != http.StatusNotFound || !strings.Contains(errorOf(t, w), "no connection") {
		t.Errorf("unknown conn: %d %s", w.Code, w.Body)
	}
}

func TestTokenTool(t *testing.T) {
	f := newFixture(t, nil)
	cookie := f.session()
	w := f.do("POST", "/dashboard/api/token", `{"hub":"Chat","user":"ann","roles":["webpubsub.joinLeaveGroup"],"groups":["g1"],"minutes":5}`,
		map[string]string{"Cookie": cookie, CSRFHeader: "1"})
	if w.Code != http.StatusOK {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	var tv TokenView
	json.Unmarshal(w.Body.Bytes(), &tv)
	u, err := url.Parse(tv.URL)
	if err != nil || u.Scheme != "ws" || u.Host != "example.test:8080" || u.Path != "/client/hubs/Chat" || u.Query().Get("access_token") != tv.Token {
		t.Fatalf("client URL %q", tv.URL)
	}
	cl, err := f.d.cfg.Keys.VerifyClientToken(tv.Token, auth.ClientPath("Chat"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if cl.UserID != "ann" || strings.Join(cl.Roles, ",") != "webpubsub.joinLeaveGroup" || strings.Join(cl.Groups, ",") != "g1" {
		t.Fatalf("claims %+v", cl)
	}
	if d := time.Until(cl.Expires); d > 5*time.Minute || d < 4*time.Minute {
		t.Fatalf("expires in %v, want 5m", d)
	}
	w = f.do("POST", "/dashboard/api/token", `{"ns":"signalr","hub":"chat","user":"bob"}`, map[string]string{"Cookie": cookie, CSRFHeader: "1"})
	json.Unmarshal(w.Body.Bytes(), &tv)
	if w.Code != http.StatusOK || tv.URL != "http://example.test:8081/client/?hub=chat" {
		t.Fatalf("negotiate answer %d %s", w.Code, w.Body)
	}
	sc, err := f.d.cfg.Keys.VerifySignalRClientToken(tv.AccessToken, "chat", time.Now())
	if err != nil || sc.UserID != "bob" {
		t.Fatalf("signalr token: %v %+v", err, sc)
	}
}

func TestOverviewShape(t *testing.T) {
	f := newFixture(t, nil)
	rest := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_rest_request_duration_seconds"}, []string{"op"})
	f.reg.MustRegister(rest)
	rest.WithLabelValues("a").Observe(0.25)
	rest.WithLabelValues("b").Observe(0.5)
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_messages_out_total"}, []string{"hub"})
	f.reg.MustRegister(sent)
	sent.WithLabelValues("x").Add(3)
	sent.WithLabelValues("y").Add(4)
	cookie := f.session()
	w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": cookie})
	var o Overview
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	if o.NodeID != "n1" || len(o.Namespaces) != 1 || o.Namespaces[0].Name != "webpubsub" {
		t.Fatalf("overview %s", w.Body)
	}
	for _, k := range []string{"messages_in", "messages_out", "bytes_in", "bytes_out", "slow_consumer_closes",
		"rest_request_seconds_sum", "rest_request_count"} {
		if _, ok := o.Counters[k]; !ok {
			t.Errorf("counter %s missing", k)
		}
	}
	if o.Counters["messages_out"] != 7 || o.Counters["rest_request_seconds_sum"] != 0.75 || o.Counters["rest_request_count"] != 2 {
		t.Errorf("counters %v, want messages_out 7 (summed over labels), rest 0.75 s over 2", o.Counters)
	}
	if testutil.CollectAndCount(f.reg, "switchboard_dashboard_logins_total") == 0 {
		t.Error("login metric not registered")
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t, nil)
	cookie := f.session()
	w := f.do("POST", "/dashboard/logout", "", map[string]string{"Cookie": cookie, CSRFHeader: "1"})
	c := w.Result().Cookies()
	if w.Code != http.StatusOK || len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("logout: %d %v", w.Code, c)
	}
	io.Copy(io.Discard, w.Body)
}

func TestAssetsAreServedWithoutASession(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"/dashboard/static/app.js", "/dashboard/static/app.css"} {
		if w := f.do("GET", p, "", nil); w.Code != http.StatusOK || w.Body.Len() < 500 {
			t.Errorf("%s: %d, %d bytes", p, w.Code, w.Body.Len())
		}
	}
}

// The overview carries the delivery latency histogram summed over its
// series (transports), for the page's p50 and p99 between two polls.
func TestOverviewDeliveryLatency(t *testing.T) {
	f := newFixture(t, nil)
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_delivery_latency_seconds", Buckets: []float64{0.001, 0.01, 0.1}}, []string{"transport"})
	f.reg.MustRegister(h)
	h.WithLabelValues("websocket").Observe(0.0005)
	h.WithLabelValues("websocket").Observe(0.05)
	h.WithLabelValues("sse").Observe(0.005)
	h.WithLabelValues("sse").Observe(3)
	w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": f.session()})
	var o Overview
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	want := []LatencyBucket{{0.001, 1}, {0.01, 2}, {0.1, 3}}
	if !slices.Equal(o.Latency.Buckets, want) || o.Latency.Count != 4 || o.Latency.Sum != 0.0005+0.05+0.005+3 {
		t.Errorf("latency %+v, want buckets %v, count 4, sum 3.0555", o.Latency, want)
	}
	// None observed: empty buckets, not null (the page reads them).
	f2 := newFixture(t, nil)
	w = f2.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": f2.session()})
	if !strings.Contains(w.Body.String(), `"latency":{"buckets":[],"count":0,"sum":0}`) {
		t.Errorf("overview without latency: %s", w.Body)
	}
}

// On a cluster the overview lists every node with its counters and
// latency, sums the hubs, groups and latency of the nodes that answered,
// names the ones that did not, and asks them at most once a second.
func TestOverviewSumsTheNodes(t *testing.T) {
	peer := NodeSummary{NodeID: "n2", Counters: map[string]float64{"messages_out": 5},
		Latency: LatencyView{Buckets: []LatencyBucket{{0.001, 2}, {0.01, 3}}, Count: 3, Sum: 0.02},
		Namespaces: []NamespaceView{{Name: "webpubsub", HubCount: 2, Connections: 7,
			Hubs:      []HubView{{Name: "chat", Connections: 4, Users: 3, Groups: 2}, {Name: "far", Connections: 3, Users: 1, Groups: 1}},
			TopGroups: []TopGroup{{Hub: "chat", Group: "room", Members: 4}, {Hub: "far", Group: "x", Members: 3}}}}}
	asked := 0
	f := newFixture(t, func(c *Config) {
		c.Peers = func(context.Context) (map[string][]byte, map[string]string) {
			asked++
			b, _ := json.Marshal(peer)
			return map[string][]byte{"n2": b, "n4": []byte(`{"node_id":"other"}`)}, map[string]string{"n3": "no answer: timeout"}
		}
	})
	node := f.d.cfg.Namespaces[0].Node
	h, err := node.Hub("chat")
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"ann", "bob"} {
		if _, err := h.Connect(core.ConnInfo{UserID: user, Groups: []string{"room"}, Codec: nopCodec{}}, nopLink{}); err != nil {
			t.Fatal(err)
		}
	}
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_delivery_latency_seconds", Buckets: []float64{0.001, 0.01}})
	f.reg.MustRegister(lat)
	lat.Observe(0.005)
	cookie := f.session()
	var o Overview
	for range 2 {
		w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": cookie})
		if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
	}
	if asked != 1 {
		t.Errorf("the peers were asked %d times for two polls within a second, want 1", asked)
	}
	var ids []string
	for _, n := range o.Nodes {
		ids = append(ids, n.NodeID)
	}
	if strings.Join(ids, ",") != "n1,n2,n3,n4" {
		t.Fatalf("nodes %v, want n1 to n4", ids)
	}
	n1, n2, n3, n4 := o.Nodes[0], o.Nodes[1], o.Nodes[2], o.Nodes[3]
	if !n1.Local || n1.Connections != 2 || n1.Error != "" || n1.Latency.Count != 1 {
		t.Errorf("this node %+v", n1)
	}
	if n2.Local || n2.Connections != 7 || n2.Counters["messages_out"] != 5 || n2.Latency.Count != 3 {
		t.Errorf("n2 %+v", n2)
	}
	if n3.Error != "no answer: timeout" || n4.Error == "" {
		t.Errorf("n3 %+v, n4 %+v: want the reasons", n3, n4)
	}
	ns := o.Namespaces[0]
	if ns.Connections != 9 || len(ns.Hubs) != 2 || ns.Hubs[0] != (HubView{Name: "chat", Connections: 6, Users: 5, Groups: 3}) ||
		ns.Hubs[1] != (HubView{Name: "far", Connections: 3, Users: 1, Groups: 1}) {
		t.Errorf("hubs summed over the nodes: %+v", ns)
	}
	if len(ns.TopGroups) != 2 || ns.TopGroups[0] != (TopGroup{Hub: "chat", Group: "room", Members: 6}) {
		t.Errorf("top groups %+v", ns.TopGroups)
	}
	want := []LatencyBucket{{0.001, 2}, {0.01, 4}}
	if !slices.Equal(o.Latency.Buckets, want) || o.Latency.Count != 4 {
		t.Errorf("latency summed over the nodes: %+v, want %v", o.Latency, want)
	}
	// What this node answers the others with.
	var s NodeSummary
	if err := json.Unmarshal(f.d.Summary(), &s); err != nil || s.NodeID != "n1" || len(s.Namespaces) != 1 ||
		s.Namespaces[0].Connections != 2 || s.Latency.Count != 1 {
		t.Errorf("summary %+v (%v)", s, err)
	}
}

type nopCodec struct{}

func (nopCodec) Key() int                                         { return 1 }
func (nopCodec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (nopCodec) Sequenced() bool                                  { return false }
func (nopCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (nopCodec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

type nopLink struct{}

func (nopLink) Wake()             {}
func (nopLink) Close(int, string) {}

// The history streams panel is read at most once per streamsCacheFor (5 s)
// however many viewers poll: the embedded log's scan holds its lock for
// every stream it keeps (about 0.3 s for a million), which viewers must not
// multiply, and JetStream's costs requests.
func TestOverviewStreamsAreReadOncePerInterval(t *testing.T) {
	reads := 0
	f := newFixture(t, func(c *Config) {
		c.Streams = func(_ context.Context, n int) []history.StreamStat {
			reads++
			return []history.StreamStat{{Hub: "chat", Group: fmt.Sprintf("room:%d", reads), Messages: 3}}
		}
	})
	cookie := f.session()
	poll := func() Overview {
		t.Helper()
		var o Overview
		w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": cookie})
		if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for range 50 { // 50 viewers within the interval
		if o := poll(); len(o.Streams) != 1 || o.Streams[0].Group != "room:1" {
			t.Fatalf("streams %+v, want the first read's", o.Streams)
		}
	}
	if reads != 1 {
		t.Fatalf("50 polls within 5 s read the streams %d times, want 1", reads)
	}
	f.now = f.now.Add(5 * time.Second) // streamsCacheFor
	if o := poll(); reads != 2 || len(o.Streams) != 1 || o.Streams[0].Group != "room:2" {
		t.Fatalf("after 5 s: %d reads, streams %+v; want a second read", reads, o.Streams)
	}
}

// The other nodes' summaries and the streams are shared by every viewer
// (cached): a viewer that goes away mid-poll must not leave its cancelled
// request's failures for the others to see.
func TestOverviewSharedReadsOutliveTheirViewer(t *testing.T) {
	peer, _ := json.Marshal(NodeSummary{NodeID: "n2"})
	f := newFixture(t, func(c *Config) {
		c.Peers = func(ctx context.Context) (map[string][]byte, map[string]string) {
			if err := ctx.Err(); err != nil { // as cluster.Summaries: each request fails
				return map[string][]byte{}, map[string]string{"n2": "no answer: " + err.Error()}
			}
			return map[string][]byte{"n2": peer}, map[string]string{}
		}
		c.Streams = func(ctx context.Context, n int) []history.StreamStat {
			if ctx.Err() != nil { // as cluster.History.TopStreams: every stream is skipped
				return []history.StreamStat{}
			}
			return []history.StreamStat{{Hub: "chat", Group: "room", Messages: 3}}
		}
	})
	cookie := f.session()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the first viewer closed its tab
	r := httptest.NewRequestWithContext(ctx, "GET", "http://example.test/dashboard/api/overview", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	r.Header.Set("Cookie", cookie)
	f.mux.ServeHTTP(httptest.NewRecorder(), r)

	var o Overview
	w := f.do("GET", "/dashboard/api/overview", "", map[string]string{"Cookie": cookie})
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Nodes) != 2 || o.Nodes[1].NodeID != "n2" || o.Nodes[1].Error != "" {
		t.Errorf("nodes %+v: the next viewer got the cancelled poll's failure", o.Nodes)
	}
	if len(o.Streams) != 1 {
		t.Errorf("streams %+v: the next viewer got the cancelled poll's empty panel", o.Streams)
	}
}

package dashboard

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// Bounds of the overview.
const (
	maxHubsShown    = 100 // per namespace, the ones with the most connections
	maxGroupsShown  = 20  // the biggest groups over every hub of a namespace
	maxStreamsShown = 20  // the biggest history streams
)

// Overview is what GET /dashboard/api/overview answers.
type Overview struct {
	NodeID     string          `json:"node_id"`
	Time       time.Time       `json:"time"`
	Cluster    any             `json:"cluster"`
	Namespaces []NamespaceView `json:"namespaces"`
	// Counters are this node's totals (Nodes has every node's); the page
	// turns two polls into rates.
	Counters map[string]float64 `json:"counters"`
	Upstream UpstreamView       `json:"upstream"`
	// Latency is the delivery latency histogram (every transport) summed
	// over the nodes that answered: the page charts p50 and p99 of the
	// sends between two polls (from Nodes, so that a node joining or
	// leaving does not make a jump).
	Latency LatencyView `json:"latency"`
	// Nodes are the cluster's live nodes (this one alone without a
	// cluster), each with its own counters and latency.
	Nodes []NodeView `json:"nodes"`
	// Streams are the biggest history streams (maxStreamsShown).
	Streams    []history.StreamStat `json:"streams"`
	History    any                  `json:"history"`
	Connectors any                  `json:"connectors"`
}

// NamespaceView is a namespace's hubs and biggest groups: of one node in a
// NodeSummary, and summed over the nodes in the Overview.
type NamespaceView struct {
	Name      string     `json:"name"`
	Hubs      []HubView  `json:"hubs"`
	HubCount  int        `json:"hub_count"`
	TopGroups []TopGroup `json:"top_groups"`
	// Connections are the namespace's connections (every hub, not only
	// the hubs listed).
	Connections int `json:"connections"`
}

// HubView is one hub: its counts on one node, or summed over the nodes
// (a user or group present on two nodes then counts twice).
type HubView struct {
	Name        string `json:"name"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Groups      int    `json:"groups"`
}

// TopGroup is one of the biggest groups.
type TopGroup struct {
	Hub     string `json:"hub"`
	Group   string `json:"group"`
	Members int    `json:"members"`
}

// UpstreamView is the event handlers' health: requests by status, retries,
// dropped events and the queue.
type UpstreamView struct {
	Requests map[string]float64 `json:"requests"` // by status ("200", "error", …)
	Retries  float64            `json:"retries"`
	Dropped  float64            `json:"dropped"`
	Queued   float64            `json:"queued"`
}

// LatencyView is switchboard_delivery_latency_seconds summed over its
// series: cumulative counts by upper bound (seconds), the total count
// (+Inf) and the sum of the latencies in seconds.
type LatencyView struct {
	Buckets []LatencyBucket `json:"buckets"`
	Count   uint64          `json:"count"`
	Sum     float64         `json:"sum"`
}

// LatencyBucket is one cumulative bucket.
type LatencyBucket struct {
	Le    float64 `json:"le"`
	Count uint64  `json:"count"`
}

// latencyName is the delivery latency histogram's name.
const latencyName = "switchboard_delivery_latency_seconds"

// add adds the histogram h (same buckets) to v.
func (v *LatencyView) add(h *dto.Histogram) {
	for i, b := range h.GetBucket() {
		if i == len(v.Buckets) {
			v.Buckets = append(v.Buckets, LatencyBucket{Le: b.GetUpperBound()})
		}
		if v.Buckets[i].Le == b.GetUpperBound() {
			v.Buckets[i].Count += b.GetCumulativeCount()
		}
	}
	v.Count += h.GetSampleCount()
	v.Sum += h.GetSampleSum()
}

// counterNames are the totals the overview reads, by the name the page uses.
var counterNames = map[string][]string{
	"messages_in":          {"switchboard_messages_in_total", "switchboard_signalr_messages_in_total"},
	"bytes_in":             {"switchboard_message_bytes_in_total"},
	"messages_out":         {"switchboard_messages_out_total"},
	"bytes_out":            {"switchboard_message_bytes_out_total"},
	"slow_consumer_closes": {"switchboard_conn_slow_consumer_closes_total"},
	"rest_requests":        {"switchboard_rest_requests_total"},
	"sends":                {"switchboard_sends_total"},
}

// histogramNames are the histograms whose sum and count the overview reads.
var histogramNames = map[string]string{
	"rest_request":     "switchboard_rest_request_duration_seconds",
	"upstream_request": "switchboard_upstream_request_duration_seconds",
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	o := Overview{NodeID: d.cfg.Namespaces[0].Node.ID(), Time: d.now().UTC(), Streams: []history.StreamStat{}}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// The peers' summaries and the streams are cached for every viewer:
	// they are read without this viewer's cancellation, so that one who
	// goes away mid-poll does not leave its failures to the others.
	shared, cancelShared := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancelShared()
	if d.cfg.Cluster != nil {
		o.Cluster = d.cfg.Cluster(ctx)
	}
	if d.cfg.History != nil {
		o.History = d.cfg.History()
	}
	if d.cfg.Streams != nil {
		o.Streams = d.streams(shared)
	}
	if d.cfg.Connectors != nil {
		o.Connectors = d.cfg.Connectors()
	}
	local := d.summarize(&o)
	sums := []NodeSummary{local}
	o.Nodes = []NodeView{local.view(true)}
	if d.cfg.Peers != nil {
		answers, missing := d.peers(shared)
		for id, b := range answers {
			var s NodeSummary
			if err := json.Unmarshal(b, &s); err != nil || s.NodeID != id {
				missing[id] = "a summary this node cannot read"
				continue
			}
			sums = append(sums, s)
			o.Nodes = append(o.Nodes, s.view(false))
		}
		for id, why := range missing {
			o.Nodes = append(o.Nodes, NodeView{NodeID: id, Error: why, Counters: map[string]float64{}, Latency: LatencyView{Buckets: []LatencyBucket{}}})
		}
	}
	slices.SortFunc(o.Nodes, func(a, b NodeView) int { return cmp.Compare(a.NodeID, b.NodeID) })
	o.Namespaces, o.Latency = merge(sums)
	writeJSON(w, http.StatusOK, o)
}

func namespaceView(ns Namespace) NamespaceView {
	v := NamespaceView{Name: ns.Name, Hubs: []HubView{}, TopGroups: []TopGroup{}}
	names := ns.Node.Hubs()
	v.HubCount = len(names)
	for _, name := range names {
		h, err := ns.Node.LookupHub(name)
		if err != nil || h == nil {
			continue
		}
		st := h.Stats()
		v.Connections += st.Conns
		v.Hubs = append(v.Hubs, HubView{Name: name, Connections: st.Conns, Users: st.Users, Groups: st.Groups})
		for _, g := range h.TopGroups(maxGroupsShown) {
			v.TopGroups = append(v.TopGroups, TopGroup{Hub: name, Group: g.Name, Members: g.Members})
		}
		v.TopGroups = topN(v.TopGroups, maxGroupsShown)
	}
	slices.SortFunc(v.Hubs, func(a, b HubView) int {
		return cmp.Or(cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.Name, b.Name))
	})
	if len(v.Hubs) > maxHubsShown {
		v.Hubs = v.Hubs[:maxHubsShown]
	}
	return v
}

func topN(gs []TopGroup, n int) []TopGroup {
	slices.SortFunc(gs, func(a, b TopGroup) int {
		return cmp.Or(cmp.Compare(b.Members, a.Members), cmp.Compare(a.Hub, b.Hub), cmp.Compare(a.Group, b.Group))
	})
	if len(gs) > n {
		gs = gs[:n]
	}
	return gs
}

// readMetrics fills the counters and the event handlers' health from the
// registry.
func (d *Dashboard) readMetrics(o *Overview) {
	fams, err := d.cfg.Gatherer.Gather()
	if err != nil {
		d.cfg.Logger.Warn("dashboard: gathering metrics", "err", err)
	}
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for key, names := range counterNames {
		total := 0.0
		for _, n := range names {
			if f := byName[n]; f != nil {
				for _, m := range f.GetMetric() {
					total += value(m)
				}
			}
		}
		o.Counters[key] = total
	}
	// Histograms' sums and counts, from which the page charts mean times
	// between polls.
	for key, name := range histogramNames {
		if f := byName[name]; f != nil {
			for _, m := range f.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					o.Counters[key+"_seconds_sum"] += h.GetSampleSum()
					o.Counters[key+"_count"] += float64(h.GetSampleCount())
				}
			}
		}
	}
	o.Latency.Buckets = []LatencyBucket{}
	if f := byName[latencyName]; f != nil {
		for _, m := range f.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				o.Latency.add(h)
			}
		}
	}
	for name, f := range byName {
		rest, ok := strings.CutPrefix(name, "switchboard_upstream_")
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			switch {
			case strings.HasSuffix(rest, "requests_total"):
				status := "?"
				for _, l := range m.GetLabel() {
					if l.GetName() == "status" {
						status = l.GetValue()
					}
				}
				o.Upstream.Requests[status] += value(m)
			case strings.HasSuffix(rest, "retries_total"):
				o.Upstream.Retries += value(m)
			case strings.HasSuffix(rest, "dropped_total"):
				o.Upstream.Dropped += value(m)
			case strings.HasSuffix(rest, "queued_events"):
				o.Upstream.Queued += value(m)
			}
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// namespace returns the node of the namespace called name ("" = the first).
func (d *Dashboard) namespace(name string) (Namespace, error) {
	if name == "" {
		return d.cfg.Namespaces[0], nil
	}
	for _, ns := range d.cfg.Namespaces {
		if ns.Name == name {
			return ns, nil
		}
	}
	return Namespace{}, fmt.Errorf("unknown namespace %q (have %s)", name, d.namespaceNames())
}

// hubOf resolves a request's namespace and checks its hub's name; on a bad
// one it answers 400 and reports false.
func (d *Dashboard) hubOf(w http.ResponseWriter, namespace, hub string) (Namespace, bool) {
	ns, err := d.namespace(namespace)
	if err != nil {
		d.badRequest(w, "%s", err)
		return Namespace{}, false
	}
	if !core.ValidHubName(hub) {
		d.badRequest(w, "hub: %q is not a valid hub name", trim(hub))
		return Namespace{}, false
	}
	return ns, true
}

func (d *Dashboard) namespaceNames() string {
	var names []string
	for _, ns := range d.cfg.Namespaces {
		names = append(names, ns.Name)
	}
	return strings.Join(names, ", ")
}

// ConnView is what the connection inspector shows.
type ConnView struct {
	ID          string    `json:"id"`
	Namespace   string    `json:"ns"`
	Hub         string    `json:"hub"`
	Node        string    `json:"node"`
	Local       bool      `json:"local"` // false: another node holds it (and answered)
	User        string    `json:"user,omitempty"`
	Groups      []string  `json:"groups,omitempty"`
	Protocol    string    `json:"protocol,omitempty"`
	Dialect     string    `json:"dialect,omitempty"`
	Connected   time.Time `json:"connected,omitzero"`
	QueuedItems int       `json:"queued_items"`
	QueuedBytes int       `json:"queued_bytes"`
}

// inspect answers GET /dashboard/api/conn?ns=&hub=&id=.
func (d *Dashboard) inspect(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	hubName, id := q.Get("hub"), q.Get("id")
	ns, ok := d.hubOf(w, q.Get("ns"), hubName)
	if !ok {
		return
	}
	if id == "" || len(id) > 256 {
		d.badRequest(w, "id: a connection id (1 to 256 characters) is required")
		return
	}
	h, err := ns.Node.ViewHub(hubName)
	if err != nil {
		d.badRequest(w, "hub: %s", err)
		return
	}
	// Asked of the node that holds the conn (Hub.Do routes it there).
	rep, err := h.Do(r.Context(), core.Request{Kind: core.ReqInspect, Conn: id})
	if err == nil {
		err = rep.Err
	}
	switch {
	case errors.Is(err, core.ErrConnNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no connection %q in hub %q", trim(id), trim(hubName)))
		return
	case err != nil || rep.State == nil:
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("inspecting %q: %v", trim(id), err))
		return
	}
	st := rep.State
	node := cmp.Or(core.ConnNode(id), ns.Node.ID())
	writeJSON(w, http.StatusOK, ConnView{ID: id, Namespace: ns.Name, Hub: h.Name(), Node: node, Local: node == ns.Node.ID(),
		User: st.UserID, Groups: st.Groups, Protocol: st.Protocol, Dialect: st.Dialect, Connected: st.Created.UTC(),
		QueuedItems: st.QueuedItems, QueuedBytes: st.QueuedBytes})
}

func trim(s string) string {
	if len(s) <= 64 {
		return s
	}
	for i := 64; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// readJSON decodes the body of a call into v, bounded.
func (d *Dashboard) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, d.cfg.MaxBodyBytes+4096)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			d.metrics.refusals.WithLabelValues("bad_request").Inc()
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", mbe.Limit))
			return false
		}
		d.badRequest(w, "the body must be one JSON object: %s", err)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		d.badRequest(w, "the body must be one JSON object, with nothing after it")
		return false
	}
	return true
}

// closeRequest is the body of POST /dashboard/api/close.
type closeRequest struct {
	Namespace string `json:"ns"`
	Hub       string `json:"hub"`
	ID        string `json:"id"`
	Reason    string `json:"reason"`
}

// closeConn closes one connection, on whichever node holds it.
func (d *Dashboard) closeConn(w http.ResponseWriter, r *http.Request) {
	var req closeRequest
	if !d.readJSON(w, r, &req) {
		return
	}
	ns, ok := d.hubOf(w, req.Namespace, req.Hub)
	if !ok {
		return
	}
	if req.ID == "" || len(req.ID) > 256 {
		d.badRequest(w, "id: a connection id (1 to 256 characters) is required")
		return
	}
	if len(req.Reason) > 512 || !utf8.ValidString(req.Reason) {
		d.badRequest(w, "reason: at most 512 bytes of UTF-8")
		return
	}
	h, err := ns.Node.ViewHub(req.Hub)
	if err != nil {
		d.badRequest(w, "hub: %s", err)
		return
	}
	if err := h.CloseConns(r.Context(), core.Target{Kind: core.ToConn, Name: req.ID}, req.Reason); err != nil {
		writeError(w, http.StatusServiceUnavailable, "closing: "+err.Error())
		return
	}
	d.metrics.actions.WithLabelValues("close").Inc()
	d.cfg.Logger.Info("dashboard closed a connection", "hub", h.Name(), "conn", req.ID, "reason", req.Reason)
	writeJSON(w, http.StatusOK, map[string]string{"status": "closing", "id": req.ID})
}

// sendRequest is the body of POST /dashboard/api/send.
type sendRequest struct {
	Namespace   string `json:"ns"`
	Hub         string `json:"hub"`
	Target      string `json:"target"` // all, group, user, conn
	Name        string `json:"name"`   // the group, user or connection id
	ContentType string `json:"content_type"`
	Data        string `json:"data"`
	// Base64 says Data is base64 (binary content).
	Base64 bool `json:"base64"`
}

// send publishes a message through core's send path, as a REST send does.
func (d *Dashboard) send(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	if !d.readJSON(w, r, &req) {
		return
	}
	ns, ok := d.hubOf(w, req.Namespace, req.Hub)
	if !ok {
		return
	}
	t, err := target(req.Target, req.Name)
	if err != nil {
		d.badRequest(w, "%s", err)
		return
	}
	m, err := message(req, d.cfg.MaxBodyBytes)
	if err != nil {
		d.badRequest(w, "%s", err)
		return
	}
	if ns.Name == "signalr" { // an invocation, read as the SignalR REST API reads its body
		p, err := hubproto.ParsePayload(req.ContentType, m.Data)
		if err != nil {
			d.badRequest(w, "data: a SignalR send is an invocation, {\"target\": …, \"arguments\": […]} as application/json: %s", excerpt.Error(err))
			return
		}
		m = &core.Message{Type: core.JSON, Data: p.Invocation}
		if p.Variants != nil {
			m = &core.Message{Type: core.Binary, Data: p.Variants}
		}
	}
	h, release, err := ns.Node.AcquireHub(req.Hub)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "hub: "+err.Error())
		return
	}
	defer release()
	if err := h.Send(r.Context(), t, m); err != nil {
		writeError(w, http.StatusServiceUnavailable, "sending: "+err.Error())
		return
	}
	d.metrics.actions.WithLabelValues("send").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"status": "sent", "bytes": len(m.Data), "offset": m.Offset})
}

func target(kind, name string) (core.Target, error) {
	switch kind {
	case "all":
		return core.Target{Kind: core.ToAll}, nil
	case "group":
		if !core.ValidGroupName(name) {
			return core.Target{}, fmt.Errorf("name: %q is not a valid group name", trim(name))
		}
		return core.Target{Kind: core.ToGroup, Name: name}, nil
	case "user", "conn":
		if name == "" || len(name) > 1024 {
			return core.Target{}, fmt.Errorf("name: a %s id (1 to 1024 bytes) is required", kind)
		}
		k := core.ToUser
		if kind == "conn" {
			k = core.ToConn
		}
		return core.Target{Kind: k, Name: name}, nil
	}
	return core.Target{}, fmt.Errorf("target: %q is not one of all, group, user, conn", trim(kind))
}

// message builds the message of req as the REST API types a body: text/*
// is text, application/json JSON, anything else binary.
func message(req sendRequest, limit int64) (*core.Message, error) {
	data := []byte(req.Data)
	if req.Base64 {
		b, err := decodeBase64(req.Data)
		if err != nil {
			return nil, fmt.Errorf("data: not base64: %w", err)
		}
		data = b
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("data: %d bytes, more than the %d allowed", len(data), limit)
	}
	ct, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(req.ContentType)), ";")
	ct = strings.TrimSpace(ct)
	m := &core.Message{Data: data}
	switch {
	case ct == "application/json":
		if !json.Valid(data) {
			return nil, errors.New("data: not valid JSON, as application/json requires")
		}
		m.Type = core.JSON
	case strings.HasPrefix(ct, "text/"), ct == "":
		if !utf8.Valid(data) {
			return nil, errors.New("data: text must be UTF-8")
		}
		m.Type = core.Text
	default:
		m.Type = core.Binary
	}
	return m, nil
}

// tokenRequest is the body of POST /dashboard/api/token.
type tokenRequest struct {
	Namespace string   `json:"ns"`
	Hub       string   `json:"hub"`
	User      string   `json:"user"`
	Roles     []string `json:"roles"`
	Groups    []string `json:"groups"`
	// Minutes is the token's lifetime; 0 means 60, at most a day.
	Minutes int `json:"minutes"`
}

// TokenView is the token tool's answer: for Web PubSub, the client URL
// with its token; for SignalR, the negotiate answer {url, accessToken}.
type TokenView struct {
	URL         string `json:"url"`
	Token       string `json:"token,omitempty"`
	AccessToken string `json:"accessToken,omitempty"`
}

func (d *Dashboard) token(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if !d.readJSON(w, r, &req) {
		return
	}
	if req.Namespace != "" && req.Namespace != "webpubsub" && req.Namespace != "signalr" {
		d.badRequest(w, "ns: %q is not webpubsub or signalr", trim(req.Namespace))
		return
	}
	if !core.ValidHubName(req.Hub) {
		d.badRequest(w, "hub: %q is not a valid hub name", trim(req.Hub))
		return
	}
	if req.Minutes < 0 || req.Minutes > 24*60 {
		d.badRequest(w, "minutes: from 1 to 1440 (0 means 60)")
		return
	}
	if len(req.Roles) > 100 || len(req.Groups) > 100 || len(req.User) > 1024 {
		d.badRequest(w, "at most 100 roles and 100 groups, and a user id of at most 1024 bytes")
		return
	}
	for _, g := range req.Groups {
		if !core.ValidGroupName(g) {
			d.badRequest(w, "groups: %q is not a valid group name", trim(g))
			return
		}
	}
	ttl := time.Duration(cmp.Or(req.Minutes, 60)) * time.Minute
	if req.Namespace == "signalr" {
		ep := d.cfg.SignalREndpoint()
		if ep == "" {
			d.badRequest(w, "ns: this server has no SignalR listener")
			return
		}
		aud := auth.SignalRClientAudience(ep, req.Hub)
		tok, err := d.cfg.Keys.MintSignalRClientToken(aud, req.User, ttl)
		if err != nil {
			d.badRequest(w, "%s", err)
			return
		}
		d.metrics.actions.WithLabelValues("negotiate").Inc()
		writeJSON(w, http.StatusOK, TokenView{URL: aud, AccessToken: tok})
		return
	}
	ep := d.cfg.Endpoint()
	aud := auth.ClientAudience(ep, req.Hub)
	tok, err := d.cfg.Keys.MintClientToken(aud, auth.MintOptions{UserID: req.User, Roles: req.Roles, Groups: req.Groups, TTL: ttl})
	if err != nil {
		d.badRequest(w, "%s", err)
		return
	}
	u, err := url.Parse(aud)
	if err != nil {
		d.badRequest(w, "endpoint: %s", err)
		return
	}
	u.Scheme = map[string]string{"https": "wss"}[u.Scheme]
	if u.Scheme == "" {
		u.Scheme = "ws"
	}
	u.RawQuery = url.Values{"access_token": {tok}}.Encode()
	d.metrics.actions.WithLabelValues("token").Inc()
	writeJSON(w, http.StatusOK, TokenView{URL: u.String(), Token: tok})
}

// trace streams the live trace as Server-Sent Events:
// GET /dashboard/api/trace?hub=&group=&user=&conn=. Every event is a
// "data:" line of JSON; "event: dropped" says how many were lost so far.
func (d *Dashboard) trace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := Filter{Hub: strings.ToLower(q.Get("hub")), Group: q.Get("group"), User: q.Get("user"), Conn: q.Get("conn")}
	for _, v := range []string{f.Hub, f.Group, f.User, f.Conn} {
		if len(v) > 1024 {
			d.badRequest(w, "a filter is at most 1024 bytes")
			return
		}
	}
	wt, err := d.cfg.Tracer.Watch(f)
	if err != nil {
		d.metrics.refusals.WithLabelValues("too_many_watchers").Inc()
		writeError(w, http.StatusServiceUnavailable, err.Error()+": close another dashboard tab")
		return
	}
	defer d.cfg.Tracer.Unwatch(wt)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, ": live trace\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	var reported uint64
	buf := make([]byte, 0, 512)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wt.Done():
			return
		case <-tick.C:
			io.WriteString(w, ": keep-alive\n\n")
		case e := <-wt.C:
			b, _ := json.Marshal(e)
			buf = append(append(append(buf[:0], "data: "...), b...), "\n\n"...)
			if n := wt.Dropped(); n != reported {
				reported = n
				buf = fmt.Appendf(buf, "event: dropped\ndata: %d\n\n", n)
			}
			rc.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a watcher that reads nothing is dropped
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimSpace(s))
}

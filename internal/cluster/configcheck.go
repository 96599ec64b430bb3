package cluster

import (
	"slices"
	"strings"
)

// Nodes of a cluster must share the configuration that decides what a
// client or a REST call gets, whichever node takes it: the access keys (a
// token signed for one node is checked by another), the hub settings (event
// handlers, history rules) and so on. Each node puts a digest of each such
// part in its heartbeats (Config.ConfigDigest, computed by the caller); a
// node that sees a peer whose digests differ from its own logs an error
// naming the parts, once per peer start and change, and lists them in
// State. It does not refuse the peer: a rolling change of the configuration
// passes through such a state.

// differingParts returns the sorted names of the parts whose digests differ
// between mine and theirs; a part one side does not have differs.
func differingParts(mine, theirs map[string]string) []string {
	var d []string
	for k, v := range mine {
		if theirs[k] != v {
			d = append(d, k)
		}
	}
	for k := range theirs {
		if _, ok := mine[k]; !ok {
			d = append(d, k)
		}
	}
	slices.Sort(d)
	return d
}

// checkConfig compares a peer's heartbeat with this node's configuration
// and reports the change, if any, since the peer's last heartbeat; c.mu
// is held.
func (c *Cluster) checkConfig(p *peer, hb heartbeat) {
	if hb.NodeID == c.cfg.NodeID {
		return
	}
	d := differingParts(c.cfg.ConfigDigest, hb.Config)
	if slices.Equal(d, p.configDiffers) && p.Instance == hb.Instance {
		return
	}
	p.configDiffers = d
	if len(d) == 0 {
		if p.Instance == hb.Instance {
			c.log.Info("node's configuration now matches this node's", "node_id", hb.NodeID)
		}
		return
	}
	c.m.errors.WithLabelValues("config_mismatch").Inc()
	c.log.Error("a node of the cluster has a different configuration: every node must share the access keys and the hub, history and SignalR settings, or clients and REST calls get different answers from different nodes",
		"node_id", hb.NodeID, "differs_in", strings.Join(d, ","))
}

// mismatchedNodes counts the live peers whose configuration differs.
func (c *Cluster) mismatchedNodes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.nodes {
		if len(p.configDiffers) > 0 {
			n++
		}
	}
	return n
}

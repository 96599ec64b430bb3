package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Node summaries: what a node's dashboard shows of every node (its hubs,
// rates, delivery latency) is each node's own summary, asked of the live
// nodes (from heartbeats) at once on sb.nodes.summary.<node id> when a
// dashboard polls; nothing crosses NATS otherwise. The summary is opaque
// here: the server sets what builds it (the dashboard's JSON).
const subjectSummary = "sb.nodes.summary." // + node id

// maxSummaryBytes bounds a summary this node sends or accepts.
const maxSummaryBytes = 256 << 10

// ServeSummaries makes this node answer summary requests with build()'s
// bytes (an empty answer when they exceed maxSummaryBytes). The cluster's
// Close ends it.
func (c *Cluster) ServeSummaries(build func() []byte) error {
	_, err := c.nc.Subscribe(subjectSummary+c.cfg.NodeID, func(m *nats.Msg) {
		b := build()
		if len(b) > maxSummaryBytes {
			c.m.errors.WithLabelValues("summary_too_big").Inc()
			b = nil
		}
		if err := m.Respond(b); err != nil {
			c.m.errors.WithLabelValues("summary").Inc()
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: serving node summaries: %w", err)
	}
	return nil
}

// Summaries asks every other live node for its summary, at once, and
// returns the answers by node id within ctx; a node that did not answer
// (or answered nothing) is in missing with the reason.
func (c *Cluster) Summaries(ctx context.Context) (answers map[string][]byte, missing map[string]string) {
	answers, missing = map[string][]byte{}, map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range c.liveNodes() {
		if id == c.cfg.NodeID || !ValidNodeID(id) {
			continue
		}
		wg.Go(func() {
			m, err := c.nc.RequestWithContext(ctx, subjectSummary+id, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				missing[id] = "no answer: the node is leaving or runs an older release"
			case err != nil:
				c.m.errors.WithLabelValues("summary").Inc()
				missing[id] = "no answer: " + err.Error()
			case len(m.Data) == 0 || len(m.Data) > maxSummaryBytes:
				missing[id] = "no summary"
			default:
				answers[id] = m.Data
			}
		})
	}
	wg.Wait()
	return answers, missing
}

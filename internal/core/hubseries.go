package core

import (
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// OtherHubs is the hub label of the per-hub metric series of the hubs beyond
// the cap of a HubSeries. It cannot be a hub's name (those start with a
// letter).
const OtherHubs = "_other"

// DefaultMaxHubSeries is the cap of a HubSeries made with a non-positive max.
const DefaultMaxHubSeries = 1000

// SeriesDeleter is a metric vector with a "hub" label
// (*prometheus.CounterVec, *prometheus.GaugeVec, …).
type SeriesDeleter interface {
	DeletePartialMatch(labels prometheus.Labels) int
}

// HubSeries bounds the "hub" label values of per-hub metrics: the first max
// hubs in use get their own name as label, later ones share OtherHubs until
// a labelled hub is reclaimed. When the last hub (of every node sharing the
// HubSeries) with a label is reclaimed, every series of the tracked vectors
// with that label is deleted, so a reclaimed hub leaves no series behind.
// Nodes that share a metrics registry should share one HubSeries, so that
// one node does not delete the series of a hub the other still has.
type HubSeries struct {
	mu   sync.Mutex
	max  int
	refs map[string]int // label → hubs using it
	vecs []SeriesDeleter
}

// NewHubSeries returns a HubSeries that labels at most max hubs by name
// (DefaultMaxHubSeries when max <= 0).
func NewHubSeries(max int) *HubSeries {
	if max <= 0 {
		max = DefaultMaxHubSeries
	}
	return &HubSeries{max: max, refs: make(map[string]int)}
}

// Track adds vectors whose series are deleted when their hub label goes out
// of use. A vector tracked twice (two nodes sharing it) is kept once.
func (s *HubSeries) Track(vecs ...SeriesDeleter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vecs {
		if !slices.Contains(s.vecs, v) {
			s.vecs = append(s.vecs, v)
		}
	}
}

// Len returns how many hub names have their own label.
func (s *HubSeries) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.refs)
}

// acquire returns the label of a new hub called name.
func (s *HubSeries) acquire(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.refs[name]; ok {
		s.refs[name] = n + 1
		return name
	}
	if len(s.refs) >= s.max {
		return OtherHubs
	}
	s.refs[name] = 1
	return name
}

// release gives back the label of a reclaimed hub; the last one out deletes
// its series.
func (s *HubSeries) release(label string) {
	if label == OtherHubs || label == "" {
		return
	}
	// The series are deleted under the lock: a hub of the same name made
	// meanwhile gets its label, and then its series, only afterwards.
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.refs[label] - 1; n > 0 {
		s.refs[label] = n
		return
	}
	delete(s.refs, label)
	for _, v := range s.vecs {
		v.DeletePartialMatch(prometheus.Labels{"hub": label})
	}
}

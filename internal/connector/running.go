package connector

import "sync"

// Running is the set of a source type's connectors that run now, for the
// metrics collectors that read their state at each scrape. The zero value
// is empty and ready.
type Running[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{}
}

// Add puts c in the set (Run does, while it runs).
func (r *Running[T]) Add(c T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[T]struct{}{}
	}
	r.m[c] = struct{}{}
}

// Remove takes c out of the set.
func (r *Running[T]) Remove(c T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, c)
}

// List returns the connectors in the set, in no order.
func (r *Running[T]) List() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]T, 0, len(r.m))
	for c := range r.m {
		out = append(out, c)
	}
	return out
}

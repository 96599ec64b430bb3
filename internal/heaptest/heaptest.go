// Package heaptest measures what a piece of code leaves on the heap, for tests
// that bound the memory a caller can make the server keep.
package heaptest

import "runtime"

// Growth runs f between two garbage collections and returns how many bytes
// the live heap grew by (negative when it shrank): what f left reachable,
// not what it allocated and dropped.
func Growth(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

package admission

import "math"

// DefaultMax is the default of limits.max_connections: the process's open-file limit
// less a reserve for everything else that needs a descriptor (the listeners, REST and
// /metrics calls, keep-alive connections, the history log's files, event-handler
// calls): a tenth of the limit, at least 64 or half the limit, whichever is smaller.
// 0 (no limit) when the open-file limit is unknown or unlimited.
func DefaultMax() int { return MaxFor(openFileLimit()) }

// MaxFor is DefaultMax for an open-file limit of files.
func MaxFor(files uint64) int {
	if files == 0 || files > math.MaxInt32 {
		return 0
	}
	n := int(files)
	reserve := max(n/10, min(64, n/2))
	return max(n-reserve, 1)
}

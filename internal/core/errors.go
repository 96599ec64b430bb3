package core

import "errors"

// Errors callers branch on. The api and dialect packages map each of them to
// a status code, error ack or close code in one place.
var (
	ErrInvalidHub     = errors.New("core: invalid hub name")
	ErrInvalidGroup   = errors.New("core: invalid group name")
	ErrConnNotFound   = errors.New("core: connection not found")
	ErrUserNotFound   = errors.New("core: user not found")
	ErrForbidden      = errors.New("core: permission denied")
	ErrGroupLimit     = errors.New("core: too many groups for this connection")
	ErrSlowConsumer   = errors.New("core: outbound queue full")
	ErrReplayOverflow = errors.New("core: unacknowledged message buffer full")
	ErrNotRecoverable = errors.New("core: connection cannot be recovered")
	ErrNodeClosed     = errors.New("core: node is shutting down")
	// ErrHistoryUnavailable refuses a send to a group that keeps history
	// while the history's storage cannot take writes (a full disk, an I/O
	// error); it wraps the cause (syscall.ENOSPC, …). Sends to other
	// targets are not affected.
	ErrHistoryUnavailable = errors.New("history storage unavailable")
	ErrHubLimit           = errors.New("core: too many hubs on this node")
	ErrHubReclaimed       = errors.New("core: hub was reclaimed while idle")
	// ErrBrokerUnavailable refuses an operation the Broker could not hand
	// to the other nodes (a clustered broker whose message bus is
	// unreachable); it wraps the cause. Nothing was delivered anywhere.
	ErrBrokerUnavailable = errors.New("core: message broker unavailable")
)

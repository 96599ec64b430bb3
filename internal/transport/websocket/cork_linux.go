package websocket

import (
	"net"
	"syscall"
)

// cork holds back the TCP segments of c until uncork, so that the upgrade's
// 101 response and the first frames leave in one segment: one transmit and
// one wake-up of the client instead of two. It reports whether c is corked.
func cork(c net.Conn) bool { return setCork(c, 1) }

// uncork sends what cork held back.
func uncork(c net.Conn) { setCork(c, 0) }

func setCork(c net.Conn, on int) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, on)
	}); err != nil {
		return false
	}
	return serr == nil
}

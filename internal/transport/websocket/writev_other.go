//go:build !linux

package websocket

import "net"

// tryWrite writes bufs with a short deadline (no raw writev off Linux).
func (w *writer) tryWrite(s *Socket, bufs net.Buffers) (n int64, rest []byte, err error) {
	return tryWriteBlocking(s, bufs)
}

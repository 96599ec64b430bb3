//go:build !linux

package websocket

// inKernel returns 0: how much input waits in the kernel is not known here.
func (s *Socket) inKernel() int { return 0 }

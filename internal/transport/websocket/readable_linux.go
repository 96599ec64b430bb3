package websocket

import "golang.org/x/sys/unix"

// inKernel returns how many input bytes wait in the socket's kernel receive
// buffer (SIOCINQ, alias FIONREAD): bytes the host has received, which a read
// returns at once. It returns 0 when that is not known (no raw descriptor, as
// under TLS). Only the socket's reader calls it.
func (s *Socket) inKernel() int {
	if s.raw == nil {
		return 0
	}
	if s.inqProbe == nil { // made once, so that a call allocates nothing
		s.inqProbe = func(fd uintptr) {
			s.inq, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		}
	}
	s.inq = 0
	if s.raw.Control(s.inqProbe) != nil {
		return 0
	}
	return max(s.inq, 0)
}

package websocket

import (
	"net"
	"syscall"
	"unsafe"
)

// maxIovecs is the kernel's IOV_MAX.
const maxIovecs = 1024

// tryWrite writes bufs to s without blocking: one writev per 1024 buffers
// on the raw descriptor, no deadline and no poller wait. Whatever the socket
// does not take at once is returned as rest. Connections without a raw
// descriptor take the portable path.
func (w *writer) tryWrite(s *Socket, bufs net.Buffers) (n int64, rest []byte, err error) {
	if s.raw == nil {
		return tryWriteBlocking(s, bufs)
	}
	for start := 0; start < len(bufs); {
		end := min(start+maxIovecs, len(bufs))
		w.iov = w.iov[:0]
		want := 0
		for _, b := range bufs[start:end] {
			if len(b) == 0 {
				continue
			}
			w.iov = append(w.iov, syscall.Iovec{Base: &b[0]})
			w.iov[len(w.iov)-1].SetLen(len(b))
			want += len(b)
		}
		var wrote int
		var errno syscall.Errno
		if len(w.iov) > 0 {
			cerr := s.raw.Write(func(fd uintptr) bool {
				for {
					r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
					if e == syscall.EINTR {
						continue
					}
					wrote, errno = int(r), e
					return true // never wait here: a full socket goes to the slow lane
				}
			})
			if cerr != nil {
				return n, nil, cerr
			}
		}
		clear(w.iov)
		switch {
		case errno == syscall.EAGAIN:
			return n, remainder(bufs[start:], 0), nil
		case errno != 0:
			return n, nil, errno
		}
		n += int64(wrote)
		if wrote < want {
			return n, remainder(bufs[start:], wrote), nil
		}
		start = end
	}
	return n, nil, nil
}

package websocket

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// poller watches idle sockets with one epoll instance, so that a socket
// with nothing to read holds no goroutine, no stack and no read buffer.
// When a socket becomes readable, its read burst runs on a new goroutine
// until the buffered input is consumed, then the socket is parked again.
type poller struct {
	epfd int

	mu      sync.Mutex
	sockets map[int32]*Socket
}

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("websocket: epoll: %w", err)
	}
	return &poller{epfd: fd, sockets: make(map[int32]*Socket)}, nil
}

// arm asks for one readiness event of s (oneshot; level-triggered, so input
// that arrived before arming fires at once).
func (p *poller) arm(s *Socket) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(s.fd)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sockets[ev.Fd] == s {
		return syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, s.fd, &ev)
	}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return err
	}
	p.sockets[ev.Fd] = s
	return nil
}

// remove forgets s; call it before its descriptor is closed.
func (p *poller) remove(s *Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sockets[int32(s.fd)] == s {
		delete(p.sockets, int32(s.fd))
		syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	}
}

// run dispatches readiness events until stop is closed.
func (p *poller) run(stop <-chan struct{}) {
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := syscall.EpollWait(p.epfd, events, 200)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			time.Sleep(10 * time.Millisecond) // should not happen; do not spin
			continue
		}
		for i := 0; i < n; i++ {
			p.mu.Lock()
			s := p.sockets[events[i].Fd]
			p.mu.Unlock()
			if s != nil {
				s.unpark()
			}
		}
	}
}

func (p *poller) close() { syscall.Close(p.epfd) }

// fdOf returns the descriptor of a socket's connection, or -1.
func fdOf(s *Socket) int {
	fd := -1
	if s.raw != nil {
		s.raw.Control(func(f uintptr) { fd = int(f) })
	}
	return fd
}

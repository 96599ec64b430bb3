//go:build !linux

package websocket

import "errors"

// poller is Linux-only; elsewhere every socket has a read goroutine.
type poller struct{}

func newPoller() (*poller, error)     { return nil, errors.New("websocket: no poller on this platform") }
func (p *poller) arm(*Socket) error   { return errors.New("websocket: no poller") }
func (p *poller) remove(*Socket)      {}
func (p *poller) run(<-chan struct{}) {}
func (p *poller) close()              {}
func fdOf(*Socket) int                { return -1 }

//go:build !linux

package websocket

import "net"

func cork(net.Conn) bool { return false }
func uncork(net.Conn)    {}

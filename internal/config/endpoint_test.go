package config

import (
	"net"
	"testing"
)

func TestEndpointFor(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}
	tests := []struct {
		public, addr string
		bound        net.Addr
		want         string
	}{
		{"https://wps.example.com/", ":8080", bound, "https://wps.example.com"},
		{"", ":8080", nil, "http://localhost:8080"},
		{"", "0.0.0.0:8080", nil, "http://localhost:8080"},
		{"", "[::]:8081", nil, "http://localhost:8081"},
		{"", "10.0.0.5:8080", nil, "http://10.0.0.5:8080"},
		{"", "127.0.0.1:0", bound, "http://127.0.0.1:41234"},
		{"", "[::1]:0", bound, "http://[::1]:41234"},
	}
	for _, tt := range tests {
		if got := EndpointFor(tt.public, "http", tt.addr, tt.bound); got != tt.want {
			t.Errorf("EndpointFor(%q, %q, %v) = %q, want %q", tt.public, tt.addr, tt.bound, got, tt.want)
		}
	}
}

package auth_test

import (
	"errors"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
)

func TestParseConnectionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		in           string
		wantEndpoint string
		wantKey      string
		wantErr      bool
	}{
		{"emulator", "Endpoint=http://localhost:8080;AccessKey=abc;Version=1.0;", "http://localhost:8080", "abc", false},
		{"azure", "Endpoint=https://x.webpubsub.azure.com;AccessKey=k==;Version=1.0;", "https://x.webpubsub.azure.com", "k==", false},
		{"key keeps inner equals", "Endpoint=https://h;AccessKey=a=b=c=;Version=1.0;", "https://h", "a=b=c=", false},
		{"case-insensitive names", "endpoint=https://h;ACCESSKEY=k;version=1.0", "https://h", "k", false},
		{"no trailing semicolon, any order", "AccessKey=k;Endpoint=https://h", "https://h", "k", false},
		{"trailing slash trimmed", "Endpoint=https://h/;AccessKey=k;", "https://h", "k", false},
		{"scheme added", "Endpoint=h.example.com;AccessKey=k;", "https://h.example.com", "k", false},
		{"port applied", "Endpoint=http://localhost;AccessKey=k;Port=8080;Version=1.0;", "http://localhost:8080", "k", false},
		{"port replaces", "Endpoint=http://localhost:1234/;Port=8080;AccessKey=k", "http://localhost:8080", "k", false},
		{"port ipv6", "Endpoint=http://[::1];Port=9000;AccessKey=k", "http://[::1]:9000", "k", false},
		{"spaces ignored", " Endpoint = https://h ; AccessKey = k ; ", "https://h", "k", false},
		{"path kept", "Endpoint=https://h/prefix/;AccessKey=k", "https://h/prefix", "k", false},
		{"unknown names ignored", "Endpoint=https://h;AccessKey=k;Foo=bar;Version=2.0", "https://h", "k", false},
		{"empty", "", "", "", true},
		{"missing key", "Endpoint=https://h;Version=1.0;", "", "", true},
		{"empty key", "Endpoint=https://h;AccessKey=;", "", "", true},
		{"missing endpoint", "AccessKey=k;Version=1.0;", "", "", true},
		{"segment without equals", "Endpoint=https://h;AccessKey=k;garbage", "", "", true},
		{"duplicate", "Endpoint=https://h;AccessKey=k;accesskey=j", "", "", true},
		{"bad port", "Endpoint=https://h;AccessKey=k;Port=0", "", "", true},
		{"port too big", "Endpoint=https://h;AccessKey=k;Port=65536", "", "", true},
		{"port not a number", "Endpoint=https://h;AccessKey=k;Port=http", "", "", true},
		{"bad scheme", "Endpoint=ftp://h;AccessKey=k", "", "", true},
		{"no host", "Endpoint=https://;AccessKey=k", "", "", true},
		{"unparsable endpoint", "Endpoint=https://h:port:x;AccessKey=k", "", "", true},
		{"aad connection string", "Endpoint=https://h;AuthType=aad;Version=1.0;", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			endpoint, key, err := auth.ParseConnectionString(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseConnectionString(%q) = %q, %q, want error", tt.in, endpoint, key)
				}
				if !errors.Is(err, auth.ErrConnectionString) {
					t.Fatalf("error %v does not wrap ErrConnectionString", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConnectionString(%q): %v", tt.in, err)
			}
			if endpoint != tt.wantEndpoint || key != tt.wantKey {
				t.Fatalf("ParseConnectionString(%q) = %q, %q, want %q, %q", tt.in, endpoint, key, tt.wantEndpoint, tt.wantKey)
			}
		})
	}
}

func TestConnectionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		endpoint, key, want string
	}{
		{"http://localhost:8080", "abc", "Endpoint=http://localhost:8080;AccessKey=abc;Version=1.0;"},
		{"http://localhost:8080/", "k+/=", "Endpoint=http://localhost:8080;AccessKey=k+/=;Version=1.0;"},
		{"https://h.example.com/prefix", "k", "Endpoint=https://h.example.com/prefix;AccessKey=k;Version=1.0;"},
	}
	for _, tt := range tests {
		got := auth.ConnectionString(tt.endpoint, tt.key)
		if got != tt.want {
			t.Errorf("ConnectionString(%q, %q) = %q, want %q", tt.endpoint, tt.key, got, tt.want)
		}
		endpoint, key, err := auth.ParseConnectionString(got)
		if err != nil {
			t.Fatalf("ParseConnectionString(%q): %v", got, err)
		}
		if want := tt.endpoint; endpoint != trimSlash(want) || key != tt.key {
			t.Errorf("round trip of %q = %q, %q", got, endpoint, key)
		}
	}
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

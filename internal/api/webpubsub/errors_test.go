package webpubsub

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// coreSentinels lists core's exported errors by name. The test below fails
// when core declares one this list (and so the table in errors.go) lacks.
var coreSentinels = map[string]error{
	"ErrInvalidHub":         core.ErrInvalidHub,
	"ErrInvalidGroup":       core.ErrInvalidGroup,
	"ErrConnNotFound":       core.ErrConnNotFound,
	"ErrUserNotFound":       core.ErrUserNotFound,
	"ErrForbidden":          core.ErrForbidden,
	"ErrGroupLimit":         core.ErrGroupLimit,
	"ErrSlowConsumer":       core.ErrSlowConsumer,
	"ErrReplayOverflow":     core.ErrReplayOverflow,
	"ErrNotRecoverable":     core.ErrNotRecoverable,
	"ErrNodeClosed":         core.ErrNodeClosed,
	"ErrHistoryUnavailable": core.ErrHistoryUnavailable,
	"ErrHubLimit":           core.ErrHubLimit,
	"ErrHubReclaimed":       core.ErrHubReclaimed,
	"ErrBrokerUnavailable":  core.ErrBrokerUnavailable,
	"ErrInvocationTimeout":  core.ErrInvocationTimeout,
	"ErrInvocationClosed":   core.ErrInvocationClosed,
	"ErrInvocationID":       core.ErrInvocationID,
}

func TestEveryCoreErrorIsMapped(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "core", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("core sources not found: %v", err)
	}
	var declared []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
						declared = append(declared, n.Name)
					}
				}
			}
		}
	}
	for _, name := range declared {
		err, ok := coreSentinels[name]
		if !ok {
			t.Errorf("core.%s has no entry in coreErrors (errors.go) and coreSentinels", name)
			continue
		}
		ae := fromCore(fmt.Errorf("wrapped: %w", err), "x")
		if ae.Status == http.StatusInternalServerError {
			t.Errorf("core.%s maps to 500", name)
		}
		if ae.Code == "" || ae.Message == "" || strings.Contains(ae.Message, "%") {
			t.Errorf("core.%s maps to %+v", name, ae)
		}
	}
	for name := range coreSentinels {
		if !slices.Contains(declared, name) {
			t.Errorf("coreSentinels names core.%s, which core no longer declares", name)
		}
	}
}

func TestFromCore(t *testing.T) {
	tests := []struct {
		err     error
		subject string
		want    apiError
	}{
		{fmt.Errorf("%w: %q", core.ErrConnNotFound, "xxx"), "xxx",
			apiError{Status: 404, Code: "Error.Connection.NotExisted", Target: "Connection", Message: "Connection `xxx` is not found."}},
		{core.ErrUserNotFound, "u1",
			apiError{Status: 404, Code: "Error.User.NotExisted", Target: "User", Message: "User `u1` is not found."}},
		{core.ErrInvalidGroup, "",
			apiError{Status: 400, Code: "Error.BadRequest", Target: "group", Message: msgInvalidGroup}},
		{fmt.Errorf("%w: %w", core.ErrHistoryUnavailable, syscall.ENOSPC), "room",
			apiError{Status: 503, Code: "Error.History.Unavailable", Target: "group",
				Message: "History storage is unavailable: no space left on device. Sends to groups that keep history are refused until it recovers; other sends are not affected."}},
		{errors.New("boom"), "",
			apiError{Status: 500, Code: "Error.InternalServerError", Message: "The service failed to handle the request."}},
	}
	for _, tt := range tests {
		got := fromCore(tt.err, tt.subject)
		got.Cause = nil
		if *got != tt.want {
			t.Errorf("fromCore(%v) = %+v, want %+v", tt.err, *got, tt.want)
		}
	}
	// An apiError passes through unchanged.
	ae := badRequest("p", "m")
	if fromCore(fmt.Errorf("ctx: %w", ae), "") != ae {
		t.Error("apiError not passed through")
	}
}

package signalr

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/api/rest"
	"github.com/switchboardhq/switchboard/internal/core"
)

// TestEveryCoreErrorHasAnAnswer fails when core declares an exported error that the table in
// errors.go does not map: such an error would become a 500.
func TestEveryCoreErrorHasAnAnswer(t *testing.T) {
	known := map[string]error{
		"ErrInvalidHub": core.ErrInvalidHub, "ErrInvalidGroup": core.ErrInvalidGroup,
		"ErrConnNotFound": core.ErrConnNotFound, "ErrUserNotFound": core.ErrUserNotFound,
		"ErrForbidden": core.ErrForbidden, "ErrGroupLimit": core.ErrGroupLimit,
		"ErrSlowConsumer": core.ErrSlowConsumer, "ErrReplayOverflow": core.ErrReplayOverflow,
		"ErrNotRecoverable": core.ErrNotRecoverable, "ErrNodeClosed": core.ErrNodeClosed,
		"ErrHistoryUnavailable": core.ErrHistoryUnavailable,
		"ErrHubLimit":           core.ErrHubLimit, "ErrHubReclaimed": core.ErrHubReclaimed,
		"ErrBrokerUnavailable": core.ErrBrokerUnavailable,
		"ErrInvocationTimeout": core.ErrInvocationTimeout, "ErrInvocationClosed": core.ErrInvocationClosed,
		"ErrInvocationID": core.ErrInvocationID,
	}
	// :invoke's failures are 500s on purpose: the client may have run its handler, and the
	// SDK retries message APIs only above 500.
	want500 := map[string]bool{"ErrInvocationTimeout": true, "ErrInvocationClosed": true, "ErrInvocationID": true}
	decl := regexp.MustCompile(`(?m)^\s*(Err[A-Z]\w*)\s*=\s*(?:errors\.New|fmt\.Errorf)\(`)
	files, err := filepath.Glob(filepath.Join("..", "..", "core", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("core sources not found: %v", err)
	}
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllSubmatch(src, -1) {
			found++
			if _, ok := known[string(m[1])]; !ok {
				t.Errorf("core.%s (%s) is not in this test's list nor, probably, in coreAnswers", m[1], filepath.Base(name))
			}
		}
	}
	if found < len(known) {
		t.Errorf("found %d core error declarations, want at least %d: is the pattern stale?", found, len(known))
	}
	for name, e := range known {
		wrapped := fmt.Errorf("op: %w", e)
		if a := answer(wrapped, "x"); (a.Status == http.StatusInternalServerError) != want500[name] || a.Code == rest.CodeInternal {
			t.Errorf("core.%s is answered %d %s", name, a.Status, a.Code)
		}
	}
}

func TestAnswerKeepsAPIErrors(t *testing.T) {
	ae := notFound(warnConnNotExisted, "Connection '%s' does not exist.", "c1")
	if got := answer(fmt.Errorf("wrapped: %w", ae), ""); got != ae {
		t.Errorf("answer(wrapped apiError) = %v, want the apiError itself", got)
	}
	if got := answer(errors.New("boom"), ""); got.Status != http.StatusInternalServerError || got.Code != codeInternal {
		t.Errorf("unknown error answered %d %s, want 500 %s", got.Status, got.Code, codeInternal)
	}
	if got := answer(fmt.Errorf("%w: %q", core.ErrConnNotFound, "c9"), "c9"); got.Code != errConnNotExisted ||
		!strings.Contains(got.Message, "c9") {
		t.Errorf("ErrConnNotFound answered %+v", got)
	}
}

// Package tracingtest records the spans a test makes, with the SDK's
// in-memory span recorder installed as the provider of every span.
package tracingtest

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/switchboardhq/switchboard/internal/tracing"
)

// Record turns tracing on for the rest of t with an in-memory recorder and
// returns it; tracing is global, so t must not run in parallel with tests
// that make spans.
func Record(t testing.TB) *tracetest.SpanRecorder {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	restore := tracing.Install(tp)
	t.Cleanup(func() {
		restore()
		tp.Shutdown(t.Context())
	})
	return sr
}

// Named returns the ended spans named name.
func Named(sr *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

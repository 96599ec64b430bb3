package core

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing: core makes spans only as children of a recording span in ctx (a
// traced REST call, a connector record), with that span's provider, so that
// it needs no configuration and costs one interface call when tracing is
// off or the caller is not traced.

// traceScope names core's spans' instrumentation scope.
const traceScope = "github.com/switchboardhq/switchboard/internal/core"

// startSpan starts span name as a child of ctx's span when that records;
// else it returns ctx and nil.
func startSpan(ctx context.Context, name string, op *Op) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(traceScope).Start(ctx, name, trace.WithAttributes(
		attribute.String("switchboard.hub", op.Hub),
		attribute.String("switchboard.target", op.Target.Kind.String()),
		attribute.Int("switchboard.bytes", messageBytes(op))))
}

func messageBytes(op *Op) int {
	if op.Message == nil {
		return 0
	}
	return len(op.Message.Data)
}

// endSpan ends s (nil: none), marking err.
func endSpan(s trace.Span, err error) {
	if s == nil {
		return
	}
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

package upstream

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboardhq/switchboard/internal/tracing"
)

// traceRequest starts the client span of one attempt to send an event of
// kind (a child of the span in req's context, if any) and puts its
// traceparent in req's headers, so the backend's own spans join the trace.
func traceRequest(kind string, req *http.Request) (*http.Request, trace.Span) {
	ctx, span := tracing.Tracer().Start(req.Context(), "switchboard.upstream "+kind, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("switchboard.event", kind), attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Host), attribute.String("url.path", req.URL.Path)))
	req = req.WithContext(ctx)
	tracing.Propagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, span
}

// endRequestSpan ends an attempt's span with its answer or error.
func endRequestSpan(span trace.Span, r *reply, err error) {
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", r.status))
		if !r.ok() {
			span.SetStatus(codes.Error, strconv.Itoa(r.status))
		}
	}
	span.End()
}

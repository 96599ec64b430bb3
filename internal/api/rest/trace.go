package rest

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboardhq/switchboard/internal/tracing"
)

// Trace starts the server span of a REST request of api (webpubsub,
// signalr), a child of the caller's traceparent, when tracing is on; end
// names it after the operation and ends it with the answer's status. Off,
// it returns r and an end that does nothing, allocating nothing.
func Trace(r *http.Request, api string) (*http.Request, func(op string, status int)) {
	if !tracing.Enabled() {
		return r, noEnd
	}
	ctx := tracing.Propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := tracing.Tracer().Start(ctx, "switchboard.rest "+api, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
			attribute.String("switchboard.api", api)))
	return r.WithContext(ctx), func(op string, status int) {
		if op != "" {
			span.SetName("switchboard.rest " + api + " " + op)
			span.SetAttributes(attribute.String("switchboard.operation", op))
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
		span.End()
	}
}

func noEnd(string, int) {}

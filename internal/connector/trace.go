package connector

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboardhq/switchboard/internal/tracing"
)

// headerCarrier reads a record's headers as a propagation carrier, so that
// a traceparent a producer put there (a Kafka header, an outbox row's
// headers object) continues its trace.
type headerCarrier []Header

func (c headerCarrier) Get(key string) string {
	for i := len(c) - 1; i >= 0; i-- {
		if strings.EqualFold(c[i].Key, key) {
			return string(c[i].Value)
		}
	}
	return ""
}

func (c headerCarrier) Set(string, string) {} // records are read, never written

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c))
	for i, h := range c {
		keys[i] = h.Key
	}
	return keys
}

// traceRecord starts the span of delivering r, a child of the trace
// context in its headers, when tracing is on; else it returns ctx and nil.
func (d *Deliverer) traceRecord(ctx context.Context, r *Record) (context.Context, trace.Span) {
	if !tracing.Enabled() {
		return ctx, nil
	}
	ctx = tracing.Propagator().Extract(ctx, headerCarrier(r.Headers))
	return tracing.Tracer().Start(ctx, "switchboard.connector.record", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("switchboard.connector", d.name), attribute.String("messaging.destination.name", r.Topic),
			attribute.Int("messaging.destination.partition.id", int(r.Partition)), attribute.Int64("messaging.message.offset", r.Offset)))
}

// endRecord ends a record's span (nil: none), marking err.
func endRecord(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

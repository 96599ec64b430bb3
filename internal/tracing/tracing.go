// Package tracing turns OpenTelemetry tracing on from the standard OTEL_*
// environment variables, and gives the rest of the server what it needs to
// make spans only then.
//
// Off by default. On when OTEL_TRACES_EXPORTER is "otlp", or when it is unset
// and OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// set; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keep it off. The
// exporter is OTLP over HTTP/protobuf, or gRPC when
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL is "grpc"; the exporter reads its
// own OTEL_EXPORTER_OTLP_* variables (endpoint, headers, TLS, timeout), the
// SDK reads OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and OTEL_RESOURCE_ATTRIBUTES,
// and OTEL_SERVICE_NAME defaults to "switchboard". Context travels as W3C
// trace context (traceparent, tracestate) and baggage.
//
// What makes spans: the REST APIs (a server span per request, child of the
// caller's traceparent), core (history append and fan-out, as children of a
// recording span only), the event-handler and upstream calls (a client span
// whose traceparent the backend receives) and the connectors (a span per
// record, child of the traceparent found in its headers).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of every span the server makes.
const Scope = "github.com/switchboardhq/switchboard"

var enabled atomic.Bool

// Enabled reports whether spans are recorded: a caller that would build a
// span (or its attributes) checks this first, so that tracing off costs one
// atomic load.
func Enabled() bool { return enabled.Load() }

// Tracer is the server's tracer (a no-op one while tracing is off).
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(Scope) }

// Propagator is how trace context travels in headers.
func Propagator() propagation.TextMapPropagator { return otel.GetTextMapPropagator() }

// Wanted reports whether the environment (getenv) asks for tracing, and the
// OTLP protocol it asks for.
func Wanted(getenv func(string) string) (on bool, protocol string, err error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false, "", nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, "", nil
	case "":
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return false, "", nil
		}
	case "otlp":
	default:
		return false, "", fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: only otlp and none are supported", exp)
	}
	protocol = getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "", "http/protobuf":
		return true, "http/protobuf", nil
	case "grpc":
		return true, "grpc", nil
	}
	return false, "", fmt.Errorf("tracing: OTLP protocol %q: want http/protobuf or grpc", protocol)
}

// Setup turns tracing on when the environment asks for it and returns
// what flushes and stops it (a no-op when off).
func Setup(ctx context.Context, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	on, protocol, err := Wanted(getenv)
	if err != nil || !on {
		return func(context.Context) error { return nil }, err
	}
	var exp sdktrace.SpanExporter
	if protocol == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(serviceName(getenv))))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	restore := Install(tp)
	return func(ctx context.Context) error {
		restore()
		return tp.Shutdown(ctx)
	}, nil
}

func serviceName(getenv func(string) string) string {
	if n := getenv("OTEL_SERVICE_NAME"); n != "" {
		return n
	}
	return "switchboard"
}

// Install makes tp the provider of every span and turns tracing on; the
// returned func turns it off again (tests install an in-memory one).
func Install(tp trace.TracerProvider) (restore func()) {
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	enabled.Store(true)
	return func() {
		enabled.Store(false)
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	}
}

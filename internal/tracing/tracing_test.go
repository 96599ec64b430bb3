package tracing

import (
	"context"
	"testing"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestWanted(t *testing.T) {
	for _, c := range []struct {
		name     string
		env      func(string) string
		on       bool
		protocol string
		err      bool
	}{
		{"nothing set", env(), false, "", false},
		{"endpoint", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"), true, "http/protobuf", false},
		{"traces endpoint, grpc", env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), true, "grpc", false},
		{"traces protocol wins", env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"), true, "http/protobuf", false},
		{"exporter none", env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), false, "", false},
		{"sdk disabled", env("OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "otlp"), false, "", false},
		{"zipkin", env("OTEL_TRACES_EXPORTER", "zipkin"), false, "", true},
		{"http/json", env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), false, "", true},
	} {
		on, protocol, err := Wanted(c.env)
		if on != c.on || protocol != c.protocol || (err != nil) != c.err {
			t.Errorf("%s: %v %q %v, want %v %q err %v", c.name, on, protocol, err, c.on, c.protocol, c.err)
		}
	}
}

// TestSetupOffAndOn: off, Setup leaves tracing off; on, it installs a
// provider (the exporter connects lazily: no collector is needed to start)
// and its shutdown turns tracing off again.
func TestSetupOffAndOn(t *testing.T) {
	stop, err := Setup(context.Background(), env())
	if err != nil || Enabled() {
		t.Fatalf("Setup with nothing set: %v, enabled %v", err, Enabled())
	}
	stop(context.Background())
	stop, err = Setup(context.Background(), env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9", "OTEL_SERVICE_NAME", "sb-test"))
	if err != nil || !Enabled() {
		t.Fatalf("Setup with an endpoint: %v, enabled %v", err, Enabled())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	stop(ctx) // nothing to flush; a collector that is not there must not hold the shutdown
	if Enabled() {
		t.Error("tracing still on after shutdown")
	}
}

package connector

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchboardhq/switchboard/internal/tracing/tracingtest"
)

const producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// TestRecordSpansContinueTheProducersTrace: with tracing on, a record whose
// headers carry a traceparent is delivered in a span of that trace, whose
// children are the history append and the fan-out; a run gives each record
// its own span.
func TestRecordSpansContinueTheProducersTrace(t *testing.T) {
	sr := tracingtest.Record(t)
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	r := rec("c-1", `{"n":1}`, "traceparent", "00-"+producerTrace+"-00f067aa0ba902b7-01")
	if err := d.Deliver(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	recs := tracingtest.Named(sr, "switchboard.connector.record")
	if len(recs) != 1 {
		t.Fatalf("%d record spans, want 1", len(recs))
	}
	span := recs[0]
	if got := span.SpanContext().TraceID().String(); got != producerTrace {
		t.Errorf("record span in trace %s, want the producer's %s", got, producerTrace)
	}
	if got := span.Parent().SpanID().String(); got != "00f067aa0ba902b7" || !span.Parent().IsRemote() {
		t.Errorf("record span's parent %s (remote %v), want the producer's span", got, span.Parent().IsRemote())
	}
	for _, name := range []string{"switchboard.history.append", "switchboard.fanout"} {
		kids := tracingtest.Named(sr, name)
		if len(kids) != 1 || kids[0].Parent().SpanID() != span.SpanContext().SpanID() {
			t.Errorf("%s: %d spans, want one child of the record's span", name, len(kids))
		}
	}

	run := make([]Placed, 3)
	for i := range run {
		r := rec("c-2", fmt.Sprintf(`{"n":%d}`, i), "traceparent", fmt.Sprintf("00-%s-%016x-01", producerTrace, i+1))
		r.Offset = int64(100 + i)
		s, err := d.Place(r)
		run[i] = Placed{Record: r, Send: s, Err: err}
	}
	if n, err := d.DeliverRun(context.Background(), run); err != nil || n != 3 {
		t.Fatalf("DeliverRun: %d %v", n, err)
	}
	if got := len(tracingtest.Named(sr, "switchboard.connector.record")); got != 4 {
		t.Errorf("%d record spans after a run of 3, want 4", got)
	}
}

// TestNoSpansWhenTracingIsOff: the same delivery with tracing off makes no
// span (the recorder sees none once uninstalled).
func TestNoSpansWhenTracingIsOff(t *testing.T) {
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	ctx, span := d.traceRecord(context.Background(), rec("c-1", "{}", "traceparent", "00-"+producerTrace+"-00f067aa0ba902b7-01"))
	if span != nil || ctx != context.Background() {
		t.Error("a record span was started with tracing off")
	}
}

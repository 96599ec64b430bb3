package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func paused(cl *kgo.Client) []int32 { return cl.PauseFetchPartitions(nil)["t"] }

// A partition's fetching pauses when max_in_flight records wait for its worker and resumes
// when the worker takes them; a worker being stopped never pauses it again (a revoke resumes
// the partition after stopping the worker: a later pause would leave it paused for its next
// owner on this node).
func TestWorkerPausesAndResumes(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := &Connector{cfg: Config{MaxInFlight: 3}}
	w := newWorker(c, cl, "t", 0)
	recs := func(from int64, n int) []*kgo.Record {
		var out []*kgo.Record
		for i := range int64(n) {
			out = append(out, &kgo.Record{Topic: "t", Offset: from + i})
		}
		return out
	}
	w.push(recs(0, 2), 10)
	if p := paused(cl); len(p) != 0 {
		t.Fatalf("paused with 2 of 3 records queued: %v", p)
	}
	w.push(recs(2, 1), 10)
	if p := paused(cl); len(p) != 1 || p[0] != 0 {
		t.Fatalf("not paused with 3 records queued: %v", p)
	}
	if got := w.lag(); got != 10 {
		t.Errorf("lag %d before the first record is sent, want 10", got)
	}
	if got := w.take(); len(got) != 3 || len(paused(cl)) != 0 {
		t.Fatalf("take: %d records, paused %v", len(got), paused(cl))
	}
	w.stopAfterRecord()
	w.push(recs(3, 5), 10)
	if p := paused(cl); len(p) != 0 {
		t.Errorf("a stopped worker paused its partition: %v", p)
	}
}

// Sends that complete out of order mark only the prefix of the partition that was all sent:
// a commit never passes a record whose send has not completed.
func TestTrackerMarksSentPrefixOnly(t *testing.T) {
	var tr tracker
	var slots []*slot
	for o := range int64(4) {
		slots = append(slots, tr.add(&kgo.Record{Offset: o}))
	}
	var marks []int64
	mark := func(last *kgo.Record) { marks = append(marks, last.Offset) }
	tr.complete(slots[2], mark)
	tr.complete(slots[1], mark)
	if len(marks) != 0 {
		t.Fatalf("marked %v before record 0 was sent", marks)
	}
	tr.complete(slots[0], mark)
	tr.complete(slots[3], mark)
	if len(marks) != 2 || marks[0] != 2 || marks[1] != 3 {
		t.Errorf("marks %v, want [2 3]", marks)
	}
}

package history

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends of 1 KiB records from many
// concurrent publishers (64 per CPU) spread over 100 groups, per fsync
// policy. msgs/s is the throughput; fsyncs/op shows the group-commit factor.
func BenchmarkAppend(b *testing.B) {
	for _, pol := range []struct {
		name string
		p    FsyncPolicy
	}{{"group_commit", FsyncGroupCommit}, {"always", FsyncAlways}, {"none", FsyncNone}} {
		b.Run(pol.name, func(b *testing.B) {
			var syncs countingObserver
			l, err := OpenSegmentLog(Options{Dir: b.TempDir(), Fsync: pol.p, Observe: &syncs,
				Policies: Policies{"bench": {{Pattern: "*", Retention: Retention{MaxMessages: 1000, MaxAge: time.Hour}}}}}) // retention trims in steady state
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, 1024)
			var n atomic.Int64
			b.SetBytes(1024)
			b.ReportAllocs()
			b.SetParallelism(64)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				g := fmt.Sprint("g", n.Add(1)%100)
				for pb.Next() {
					r := Record{Hub: "bench", Group: g, Data: data}
					ack, err := l.Append(context.Background(), &r)
					if err != nil {
						b.Error(err)
						return
					}
					if err := ack.Wait(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(syncs.synced())/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkReplay measures reading a page of n retained 1 KiB records (a
// recovering join or a catch-up read).
func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l, err := OpenSegmentLog(Options{Dir: b.TempDir(), Fsync: FsyncNone,
				Policies: Policies{"bench": {{Pattern: "*", Retention: Retention{MaxMessages: 100000, MaxAge: time.Hour}}}}})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			data := make([]byte, 1024)
			var last *Ack
			for range 5000 {
				r := Record{Hub: "bench", Group: "g", Data: data}
				last, _ = l.Append(context.Background(), &r)
			}
			last.Wait()
			b.ReportAllocs()
			b.SetBytes(int64(n) * 1024)
			b.ResetTimer()
			for i := range b.N {
				after := uint64(i*97) % uint64(5000-n)
				p, err := l.Read("bench", "g", after, 0, n)
				if err != nil || len(p.Records) != n {
					b.Fatalf("read: %d records, %v", len(p.Records), err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkAppendLatency measures how long a record waits from the moment it is due to be
// appended until its Ack.Wait returns (durable), at a paced rate: 64 groups, each appended by
// its own goroutine at rate/64 records a second, 64-byte records (the connector bench's
// shape), counted from when the record was due, so that the figures include the queueing
// before its append. Two ways to append, as a Kafka connector's lane did and does:
//
//   - runs: append every record that is due (up to 64), wait until the last one is durable,
//     then append what came due meanwhile (a record due during a run's fsync waits for it);
//   - pipelined: append each record when it is due, while a second goroutine waits for the
//     acks in order (up to 256 in flight).
//
// p50 and p99 in µs; fsyncs/op is the group-commit factor. The busy variants run 256
// goroutines that each compute for about 50µs at a time, as a server's other goroutines
// (lanes, socket writers) do: the log's writer, back from its fsync, and the appenders wait
// for a turn on a CPU among them.
func BenchmarkAppendLatency(b *testing.B) {
	for _, rate := range []int{8500, 34000} {
		for _, pol := range []struct {
			name string
			p    FsyncPolicy
		}{{"group_commit", FsyncGroupCommit}, {"none", FsyncNone}} {
			for _, mode := range []string{"runs", "pipelined"} {
				for _, busy := range []bool{false, true} {
					name := fmt.Sprintf("rate=%d/%s/%s", rate, pol.name, mode)
					if busy {
						name += "/busy"
					}
					b.Run(name, func(b *testing.B) {
						if busy {
							defer spin(256)()
						}
						benchAppendLatency(b, rate, pol.p, mode == "pipelined")
					})
				}
			}
		}
	}
}

func benchAppendLatency(b *testing.B, rate int, pol FsyncPolicy, pipelined bool) {
	var syncs countingObserver
	l, err := OpenSegmentLog(Options{Dir: b.TempDir(), Fsync: pol, Observe: &syncs,
		Policies: Policies{"bench": {{Pattern: "*", Retention: Retention{MaxMessages: 1000, MaxAge: time.Hour}}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const groups, maxRun = 64, 64
	per := (b.N + groups - 1) / groups
	interval := time.Duration(int64(time.Second) * groups / int64(rate))
	lat := make([][]time.Duration, groups)
	data := make([]byte, 64)
	type inflight struct {
		ack *Ack
		due time.Time
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := fmt.Sprint("g", g)
			first := start.Add(interval * time.Duration(g) / groups) // spread over one interval
			due := func(i int) time.Time { return first.Add(interval * time.Duration(i)) }
			lat[g] = make([]time.Duration, 0, per)
			appendOne := func(i int) *Ack {
				r := Record{Hub: "bench", Group: group, Data: data}
				ack, err := l.Append(context.Background(), &r)
				if err != nil {
					b.Error(err)
					return nil
				}
				return ack
			}
			waitOne := func(f inflight) {
				if f.ack == nil {
					return
				}
				if err := f.ack.Wait(); err != nil {
					b.Error(err)
				}
				lat[g] = append(lat[g], time.Since(f.due))
			}
			if pipelined {
				acks := make(chan inflight, 4*maxRun)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for f := range acks {
						waitOne(f)
					}
				}()
				for i := range per {
					if d := time.Until(due(i)); d > 0 {
						time.Sleep(d)
					}
					acks <- inflight{appendOne(i), due(i)}
				}
				close(acks)
				<-done
				return
			}
			run := make([]inflight, 0, maxRun)
			for i := 0; i < per; {
				if d := time.Until(due(i)); d > 0 {
					time.Sleep(d)
				}
				run = run[:0]
				for now := time.Now(); i < per && len(run) < maxRun && !due(i).After(now); i++ {
					run = append(run, inflight{appendOne(i), due(i)})
				}
				for _, f := range run {
					waitOne(f)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(syncs.synced())/float64(len(all)), "fsyncs/op")
	b.ReportMetric(0, "ns/op") // paced: the time per record is the rate's
}

// spin starts n goroutines that compute in slices of about 50µs, yielding between them, until
// the returned function is called (it waits for them).
func spin(n int) (stop func()) {
	var quit atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for !quit.Load() {
				for t := time.Now(); time.Since(t) < 50*time.Microsecond; {
					x = x*6364136223846793005 + 1442695040888963407
				}
				runtime.Gosched()
			}
			_ = x
		}()
	}
	return func() { quit.Store(true); wg.Wait() }
}

package history

import (
	"context"
	"fmt"
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

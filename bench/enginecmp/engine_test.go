package enginecmp

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/switchboardhq/switchboard/internal/history"
)

const payloadBytes = 1024

// Both engines get the same workload: 64 publishers per CPU, 100 groups,
// 1 KiB records, each append waits until durable (fsync).

func BenchmarkAppendSegmentLog(b *testing.B) {
	l, err := history.OpenSegmentLog(history.Options{Dir: b.TempDir(), Fsync: history.FsyncGroupCommit,
		Policies: history.Policies{"bench": {{Pattern: "*", Retention: history.Retention{MaxMessages: 10000, MaxAge: time.Hour}}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := make([]byte, payloadBytes)
	run(b, func(g string) error {
		r := history.Record{Hub: "bench", Group: g, Data: data}
		ack, err := l.Append(context.Background(), &r)
		if err != nil {
			return err
		}
		return ack.Wait()
	})
}

func BenchmarkAppendBbolt(b *testing.B) {
	db, err := bolt.Open(b.TempDir()+"/history.db", 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.MaxBatchDelay = time.Millisecond // group commit window (default 10ms)
	data := make([]byte, payloadBytes)
	run(b, func(g string) error {
		return db.Batch(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte(g))
			if err != nil {
				return err
			}
			seq, err := bk.NextSequence()
			if err != nil {
				return err
			}
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], seq)
			return bk.Put(k[:], data)
		})
	})
}

func run(b *testing.B, appendOne func(group string) error) {
	var n atomic.Int64
	b.SetBytes(payloadBytes)
	b.ReportAllocs()
	b.SetParallelism(64)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		g := fmt.Sprint("g", n.Add(1)%100)
		for pb.Next() {
			if err := appendOne(g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// Replay: read 100 consecutive records of one group out of 5,000.

func BenchmarkReplaySegmentLog(b *testing.B) {
	l, err := history.OpenSegmentLog(history.Options{Dir: b.TempDir(), Fsync: history.FsyncNone,
		Policies: history.Policies{"bench": {{Pattern: "*", Retention: history.Retention{MaxMessages: 100000, MaxAge: time.Hour}}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	data := make([]byte, payloadBytes)
	var last *history.Ack
	for range 5000 {
		r := history.Record{Hub: "bench", Group: "g", Data: data}
		last, _ = l.Append(context.Background(), &r)
	}
	last.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		p, err := l.Read("bench", "g", uint64(i*97)%4900, 0, 100)
		if err != nil || len(p.Records) != 100 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkReplayBbolt(b *testing.B) {
	db, err := bolt.Open(b.TempDir()+"/history.db", 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	data := make([]byte, payloadBytes)
	db.Update(func(tx *bolt.Tx) error {
		bk, _ := tx.CreateBucketIfNotExists([]byte("g"))
		for i := uint64(1); i <= 5000; i++ {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], i)
			bk.Put(k[:], data)
		}
		return nil
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], uint64(i*97)%4900+1)
		got := 0
		db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("g")).Cursor()
			for key, v := c.Seek(k[:]); key != nil && got < 100; key, v = c.Next() {
				_ = append([]byte(nil), v...) // a caller keeps the data past the transaction
				got++
			}
			return nil
		})
		if got != 100 {
			b.Fatal(got)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}

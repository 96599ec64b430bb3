package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// brokerRecord is one line of `bench kafka-broker`'s standard input.
type brokerRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Key       string            `json:"key"`
	Value     string            `json:"value"`
	Headers   map[string]string `json:"headers"`
}

// newBenchKafkaBrokerCmd is an in-process Kafka (franz-go's kfake) for the SDK tests and the
// connector benchmark: it prints "KAFKA <host:port>", then produces each JSON line of its
// standard input ({"topic","partition","key","value","headers"}) and answers {"offset":N} or
// {"error":"…"} on a line of its own, until its input ends or a signal.
func newBenchKafkaBrokerCmd() *cobra.Command {
	var topics []string
	var serve bool
	cmd := &cobra.Command{
		Use:    "kafka-broker",
		Short:  "Run an in-process Kafka (kfake) on a loopback port and produce the JSON records of stdin",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}
			for _, t := range topics {
				name, parts, ok := strings.Cut(t, ":")
				n, err := strconv.Atoi(parts)
				if !ok || err != nil || n <= 0 {
					return fmt.Errorf("--topic %q: want name:partitions", t)
				}
				opts = append(opts, kfake.SeedTopics(int32(n), name))
			}
			kf, err := kfake.NewCluster(opts...)
			if err != nil {
				return err
			}
			defer kf.Close()
			cl, err := kgo.NewClient(kgo.SeedBrokers(kf.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				return err
			}
			defer cl.Close()
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "KAFKA "+kf.ListenAddrs()[0])
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if serve {
				<-ctx.Done()
				return nil
			}
			lines := make(chan []byte)
			go func() { // ends with the process: stdin has no deadline
				sc := bufio.NewScanner(cmd.InOrStdin())
				sc.Buffer(make([]byte, 64<<10), 16<<20)
				for sc.Scan() {
					lines <- append([]byte(nil), sc.Bytes()...)
				}
				close(lines)
			}()
			enc := json.NewEncoder(out)
			for {
				var line []byte
				var open bool
				select {
				case <-ctx.Done():
					return nil
				case line, open = <-lines:
				}
				if !open {
					return nil
				}
				var r brokerRecord
				if err := json.Unmarshal(line, &r); err != nil {
					enc.Encode(map[string]string{"error": err.Error()})
					continue
				}
				rec := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: []byte(r.Key), Value: []byte(r.Value)}
				if r.Key == "" {
					rec.Key = nil
				}
				for k, v := range r.Headers {
					rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				res := cl.ProduceSync(pctx, rec)
				cancel()
				if err := res.FirstErr(); err != nil {
					enc.Encode(map[string]string{"error": err.Error()})
					continue
				}
				enc.Encode(map[string]int64{"offset": res[0].Record.Offset})
			}
		},
	}
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "topic to create, name:partitions (repeatable)")
	cmd.Flags().BoolVar(&serve, "serve", false, "ignore stdin: run until SIGINT or SIGTERM (for switchboard bench connector)")
	return cmd
}

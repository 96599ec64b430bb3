package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the runs and the median in a human-readable table.
func (rep *Report) WriteTable(out io.Writer) {
	o := rep.Options
	fmt.Fprintf(out, "scenario %s  %s\n", o.Scenario, describe(o))
	if len(o.Nodes) > 0 {
		fmt.Fprintf(out, "cluster of %d nodes: connections and publishers round-robin over the connection string's node and %s; srv CPU and RSS are the first node's\n",
			1+len(o.Nodes), strings.Join(o.Nodes, ", "))
	}
	fmt.Fprintf(out, "server observed by %s; %d worker(s) of %s, %d source address(es); %s\n\n", rep.Server, o.Workers, threadsText(o.Threads), max(o.SourceIPs, 1), rep.Date.Format("2006-01-02 15:04 UTC"))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	messages := o.Scenario == "fanout" || o.Scenario == "durable" || o.Scenario == "signalr-fanout" || o.Scenario == "rooms" || o.Scenario == "users" || o.Scenario == "connector"
	presence := o.Scenario == "presence"
	switch {
	case presence:
		fmt.Fprintln(tw, "run\tconns\tjoins+leaves\tper s\tREST p50 ms\tp99 ms\tmax ms\tnotifications\tsrv CPU %\ttool CPU %\tsrv RSS MB\t")
	case messages:
		fmt.Fprintln(tw, "run\tconns\tsent\tdelivered\tdeliveries/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tlost\tdup\tooo\tsrv CPU %\ttool CPU %\tsrv RSS MB\t")
	default:
		fmt.Fprintln(tw, "run\tconns\tconnect s\thandshakes/s\tconnect p50 ms\tp99 ms\tmax ms\tsrv CPU %\ttool CPU %\tsrv RSS MB\tKB/conn\t")
	}
	row := func(name string, r RunResult) {
		if presence {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t%.0f\t%.1f\t\n", name, r.Connections, r.Sent, r.OpsPerSec,
				r.Latency.P50, r.Latency.P99, r.Latency.Max, r.Notifications, r.Server.CPUPercent, r.ToolCPUPercent, float64(r.Server.RSSLoaded)/(1<<20))
			return
		}
		if messages {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%.0f\t%.0f\t%.1f\t\n", name, r.Connections, r.Sent, r.Counted,
				r.DeliveriesPerSec, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max,
				r.Lost, r.Duplicated, r.OutOfOrder, r.Server.CPUPercent, r.ToolCPUPercent, float64(r.Server.RSSLoaded)/(1<<20))
		} else {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.1f\t%.1f\t\n", name, r.Connections, r.ConnectSeconds, r.HandshakesPerSec,
				r.ConnectLatency.P50, r.ConnectLatency.P99, r.ConnectLatency.Max, r.Server.CPUPercent, r.ToolCPUPercent,
				float64(r.Server.RSSLoaded)/(1<<20), r.Server.RSSPerConn/1024)
		}
	}
	for _, r := range rep.Runs {
		row(fmt.Sprint(r.Run), r)
	}
	row(fmt.Sprintf("median (run %d)", rep.Median.Run), rep.Median)
	tw.Flush()
	for _, r := range rep.Runs {
		for _, t := range []struct {
			name string
			m    map[string]int64
		}{{"connect errors", r.ConnectErrors}, {"send errors", r.SendErrors}, {"disconnects", r.Disconnects}, {"errors", r.Errors}} {
			if len(t.m) > 0 {
				fmt.Fprintf(out, "run %d %s: %s\n", r.Run, t.name, byReason(t.m))
			}
		}
		if r.Unexpected > 0 {
			fmt.Fprintf(out, "run %d: %d unexpected messages\n", r.Run, r.Unexpected)
		}
	}
	if rep.Failed {
		fmt.Fprintln(out, "\nFAILED:")
		for _, r := range rep.Runs {
			if r.Failed {
				fmt.Fprintf(out, "  run %d: %s\n", r.Run, strings.Join(r.Failures, "; "))
			}
		}
	} else {
		fmt.Fprintln(out, "\nOK: no message lost or duplicated, every connection opened and stayed up")
	}
}

func byReason(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func describe(o Options) string {
	switch o.Scenario {
	case "fanout", "durable":
		return fmt.Sprintf("subscribers=%d publishers=%d messages=%d size=%d rate=%s warmup=%s runs=%d", o.Subscribers, o.Publishers, o.Messages, o.Size, rate(o.Rate), o.Warmup, o.Runs)
	case "users":
		return fmt.Sprintf("conns=%d users=%d publishers=%d messages=%d size=%d rate=%s warmup=%s runs=%d", o.Conns, o.Users, o.Publishers, o.Messages, o.Size, rate(o.Rate), o.Warmup, o.Runs)
	case "rooms":
		return fmt.Sprintf("groups=%d members=%d rate=%g/s per member duration=%s size=%d warmup=%s runs=%d", o.Groups, o.Members, o.Rate, o.Duration, o.Size, o.Warmup, o.Runs)
	case "idle":
		return fmt.Sprintf("conns=%d groups=%d hold=%s runs=%d", o.Conns, o.Groups, o.Hold, o.Runs)
	case "connect":
		return fmt.Sprintf("conns=%d dialers=%d runs=%d", o.Conns, o.Dialers, o.Runs)
	case "signalr-fanout":
		return fmt.Sprintf("protocol=%s subscribers=%d publishers=%d messages=%d size=%d rate=%s warmup=%s runs=%d", o.Protocol, o.Subscribers, o.Publishers, o.Messages, o.Size, rate(o.Rate), o.Warmup, o.Runs)
	case "signalr-connect":
		return fmt.Sprintf("protocol=%s conns=%d dialers=%d runs=%d", o.Protocol, o.Conns, o.Dialers, o.Runs)
	case "presence":
		return fmt.Sprintf("conns=%d users=%d groups=%d publishers=%d joins+leaves=%d per publisher runs=%d", o.Conns, o.Users, o.Groups, o.Publishers, 2*o.Messages, o.Runs)
	case "connector":
		if o.DSN != "" {
			return fmt.Sprintf("outbox=%s groups=%d subscribers=%d messages=%d per group size=%d rate=%s warmup=%s runs=%d", o.Table, o.Groups, o.Subscribers, o.Messages, o.Size, rate(o.Rate), o.Warmup, o.Runs)
		}
		return fmt.Sprintf("topic=%s groups=%d subscribers=%d messages=%d per group size=%d rate=%s warmup=%s runs=%d", o.Topic, o.Groups, o.Subscribers, o.Messages, o.Size, rate(o.Rate), o.Warmup, o.Runs)
	}
	return ""
}

func rate(r float64) string {
	if r <= 0 {
		return "max"
	}
	return fmt.Sprintf("%g/s", r)
}

func threadsText(n int) string {
	if n <= 0 {
		return "all CPUs"
	}
	if n == 1 {
		return "1 thread"
	}
	return fmt.Sprintf("%d threads", n)
}

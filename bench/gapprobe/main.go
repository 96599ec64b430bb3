// Command gapprobe tells whether the whole machine stopped while it ran: it sleeps 1 ms at a
// time until SIGINT (or the seconds given) and prints how late its wake-ups were. An idle
// process that wakes more than 20 ms late was not run at all meanwhile: on the reference VM
// that is the host taking both vCPUs away (see bench/README "Connector latency (session 9)").
// The connector latency scripts in bench/results run it beside each run.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"time"
)

// freeze is how late a wake-up must be to count as the machine stopped.
const freeze = 20 * time.Millisecond

func main() {
	secs := 3600
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "usage: gapprobe [SECONDS]  (runs until SIGINT or SECONDS)")
			os.Exit(2)
		}
		secs = n
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	var late []time.Duration
	end := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(end) {
		select {
		case <-sig:
			end = time.Now()
			continue
		default:
		}
		t := time.Now()
		time.Sleep(time.Millisecond)
		late = append(late, time.Since(t)-time.Millisecond)
	}
	if len(late) == 0 {
		fmt.Println("freezes>20ms=0 (0 ms) max=0ms p99=0ms")
		return
	}
	slices.Sort(late)
	n, total := 0, time.Duration(0)
	for _, l := range late {
		if l > freeze {
			n++
			total += l
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	fmt.Printf("freezes>20ms=%d (%.0f ms) max=%.1fms p99=%.2fms\n", n, ms(total), ms(late[len(late)-1]), ms(late[len(late)*99/100]))
}

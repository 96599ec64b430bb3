package bench

import (
	"fmt"
	"io"
	"strings"
)

func (s *soak) fill(rep *SoakReport) {
	rep.Conns = SoakConnFigures{
		Attempts: s.attempts.Load(), Opened: s.opened.Load(), ByKind: s.snapshot(s.byKind),
		ConnectErrors: s.snapshot(s.connectErrors), Graceful: s.graceful.Load(), Abrupt: s.abrupt.Load(),
		Recovered: s.recovered.Load(), RecoveryFailed: s.recoverFail.Load(), ServerClosed: s.snapshot(s.serverClosed),
		Accounted: s.accounted.Load(),
	}
	rep.Messages = SoakMessageFigures{
		RESTSent: s.restSent.Load(), ClientSent: s.clientSent.Load(), SendErrors: s.snapshot(s.sendErrors),
		Delivered: s.delivered.Load(), Expected: s.expected.Load(), Lost: s.lost.Load(), LostBy: s.snapshot(s.lostBy), Duplicated: s.dup.Load(), DuplicatedBy: s.snapshot(s.dupBy),
		UserEvents: s.userEvents.Load(), UserEventErrors: s.snapshot(s.eventErrors),
	}
	rep.Handler = s.h.figures()
}

// Growth the verdict allows between the start and the end (after the settle period):
// goroutines and open files may be a little above the start (pooled connections, timers
// that have not fired yet); the heap the load needed may not all be back with the OS.
const (
	soakGoroutineSlack = 20
	soakFDSlack        = 10
	soakRSSSlack       = 32 << 20
)

// judge sets the verdict: flat when RSS, goroutines and open files are back near where
// they started; failed when not flat, when a client that stayed connected lost a message,
// when a client other than a recovered reliable one got a message twice, when the server
// ended a connection the soak did not end, or when the soak did nothing (no connection,
// no delivery, no event to its handler).
func (s *soak) judge(rep *SoakReport) {
	a, b := rep.Start, rep.End
	var notFlat []string
	if b.Goroutines > a.Goroutines+max(soakGoroutineSlack, a.Goroutines/10) {
		notFlat = append(notFlat, fmt.Sprintf("goroutines %d → %d", a.Goroutines, b.Goroutines))
	}
	if b.OpenFDs > a.OpenFDs+max(soakFDSlack, a.OpenFDs/10) {
		notFlat = append(notFlat, fmt.Sprintf("open files %d → %d", a.OpenFDs, b.OpenFDs))
	}
	if b.RSS > a.RSS+max(soakRSSSlack, a.RSS/2) {
		notFlat = append(notFlat, fmt.Sprintf("RSS %.1f → %.1f MB", mb(a.RSS), mb(b.RSS)))
	}
	if b.RSS == 0 || b.Goroutines == 0 || b.OpenFDs == 0 {
		notFlat = append(notFlat, "the end sample is incomplete: "+healthText(b))
	}
	rep.Flat = len(notFlat) == 0
	add := func(cond bool, f string, a ...any) {
		if cond {
			rep.Failures = append(rep.Failures, fmt.Sprintf(f, a...))
		}
	}
	add(!rep.Flat, "not flat: %s", strings.Join(notFlat, ", "))
	add(rep.Messages.Lost > 0, "%d of %d deliveries owed to connections that stayed were lost", rep.Messages.Lost, rep.Messages.Expected)
	unreliableDup := sum(rep.Messages.DuplicatedBy) - rep.Messages.DuplicatedBy[kindReliable.String()]
	add(unreliableDup > 0, "%d deliveries duplicated to clients without a recovered session: %s", unreliableDup, byReason(rep.Messages.DuplicatedBy))
	add(sum(rep.Conns.ServerClosed) > 0, "the server ended %d connections: %s", sum(rep.Conns.ServerClosed), byReason(rep.Conns.ServerClosed))
	events := sum(rep.Handler.Requests) - rep.Handler.Requests["validate 200"]
	add(events == 0, "the soak's event handler got no events: start the server with the configuration of `switchboard bench soak --print-config` (same --hub and --handler-addr)")
	add(rep.Conns.Opened == 0, "no connection opened")
	add(rep.Messages.Delivered == 0, "no message delivered")
	rep.Failed = len(rep.Failures) > 0
	verdict := "FLAT"
	if !rep.Flat {
		verdict = "NOT FLAT"
	}
	rep.Verdict = fmt.Sprintf("%s: RSS %.1f → %.1f MB, goroutines %d → %d, open files %d → %d (start → end after %s settling); %d lost",
		verdict, mb(a.RSS), mb(b.RSS), a.Goroutines, b.Goroutines, a.OpenFDs, b.OpenFDs, rep.Options.Settle, rep.Messages.Lost)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// WriteText prints the soak's figures and its verdict.
func (rep *SoakReport) WriteText(out io.Writer) {
	o := rep.Options
	fmt.Fprintf(out, "soak  hub=%s duration=%s conns=%d connect-rate=%g/s life=%s–%s rate=%g/s publishers=%d client-rate=%g/s groups=%d users=%d handler-cycle=%s settle=%s; %s\n",
		o.Hub, o.Duration, o.Conns, o.ConnectRate, o.MinLife, o.MaxLife, o.Rate, o.Publishers, o.ClientRate, o.Groups, o.Users, o.HandlerCycle, o.Settle, rep.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(out, "server observed by %s\n\n", rep.Server)
	fmt.Fprintf(out, "server       %12s %12s %12s\n", "RSS MB", "goroutines", "open files")
	row := func(name string, h ServerHealth) {
		fmt.Fprintf(out, "%-12s %12.1f %12d %12d\n", name, mb(h.RSS), h.Goroutines, h.OpenFDs)
	}
	row("start", rep.Start)
	for _, smp := range rep.Samples {
		row(fmt.Sprintf("%.0fs", smp.Elapsed), smp.ServerHealth)
	}
	row("end", rep.End)
	if n := len(rep.Samples); n >= 2 {
		first, last := rep.Samples[0], rep.Samples[n-1]
		fmt.Fprintf(out, "under load, first → last sample: RSS %.1f → %.1f MB, goroutines %d → %d, open files %d → %d\n",
			mb(first.RSS), mb(last.RSS), first.Goroutines, last.Goroutines, first.OpenFDs, last.OpenFDs)
	}
	c, m, h := rep.Conns, rep.Messages, rep.Handler
	fmt.Fprintf(out, "\nconnections  %d attempted, %d opened (%s); left: %d with a close frame, %d reset; reliable sessions recovered %d, not recovered %d; %d accounted\n",
		c.Attempts, c.Opened, byReason(c.ByKind), c.Graceful, c.Abrupt, c.Recovered, c.RecoveryFailed, c.Accounted)
	if len(c.ConnectErrors) > 0 {
		fmt.Fprintf(out, "connect errors  %s\n", byReason(c.ConnectErrors))
	}
	if len(c.ServerClosed) > 0 {
		fmt.Fprintf(out, "ended by the server  %s\n", byReason(c.ServerClosed))
	}
	fmt.Fprintf(out, "messages     %d REST sends accepted, %d client sendToGroup acknowledged, %d delivered; owed to clients that stayed %d, lost %d, duplicated %d\n",
		m.RESTSent, m.ClientSent, m.Delivered, m.Expected, m.Lost, m.Duplicated)
	if len(m.DuplicatedBy) > 0 {
		fmt.Fprintf(out, "duplicated   %s (a recovered reliable session is sent again what it had not acknowledged)\n", byReason(m.DuplicatedBy))
	}
	if len(m.LostBy) > 0 {
		fmt.Fprintf(out, "lost         %s\n", byReason(m.LostBy))
	}
	if len(m.SendErrors) > 0 {
		fmt.Fprintf(out, "send errors  %s\n", byReason(m.SendErrors))
	}
	fmt.Fprintf(out, "user events  %d acknowledged", m.UserEvents)
	if len(m.UserEventErrors) > 0 {
		fmt.Fprintf(out, "; errors: %s", byReason(m.UserEventErrors))
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "handler      %d failures injected: %d answered 500, %d too slow, %d down periods, %d requests cut; requests: %s\n",
		h.Injected(), h.Failed, h.Slow, h.DownPeriods, h.Cut, byReason(h.Requests))
	fmt.Fprintf(out, "\nVERDICT %s\n", rep.Verdict)
	if rep.Failed {
		fmt.Fprintf(out, "FAILED: %s\n", strings.Join(rep.Failures, "; "))
	}
}

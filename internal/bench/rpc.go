package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// workerHandle is how the coordinator talks to one worker.
type workerHandle interface {
	do(ctx context.Context, req Request) (Response, error)
	close() error
}

// localWorker is a worker in this process (goroutines).
type localWorker struct{ w *Worker }

func (l localWorker) do(ctx context.Context, req Request) (Response, error) {
	r := l.w.Handle(ctx, req)
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

func (l localWorker) close() error { l.w.closeAll(); return nil }

// ServeWorker runs a worker on a JSON-lines pipe: one Request per line in, one Response per
// line out (in any order, matched by id). It returns when in ends, after closing every
// connection. This is "switchboard bench worker".
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	w := NewWorker()
	dec := json.NewDecoder(bufio.NewReader(in))
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		w.closeAll()
	}()
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("bench worker: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := w.Handle(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			enc.Encode(resp)
		}()
	}
}

// procWorker is a worker child process.
type procWorker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan Response
	enc     *json.Encoder
	dead    chan struct{}
	err     error
}

// WorkerCommand returns the command that starts a worker process. The default re-executes
// the running binary as "switchboard bench worker"; tests replace it.
var WorkerCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "bench", "worker"), nil
}

// workerGOGC is the worker processes' GC target unless GOGC is set: a worker holds a
// goroutine and a read buffer per connection, and with the default target the collector
// scanning them took a tenth of the tool's CPU in `connect`, CPU that the server on the
// same machine then lacks. The tool's memory is not measured; the server's is.
const workerGOGC = "400"

// startProcWorker starts a worker process with GOMAXPROCS threads (0: the Go default).
func startProcWorker(threads int) (*procWorker, error) {
	cmd, err := WorkerCommand()
	if err != nil {
		return nil, err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	if threads > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(threads))
	}
	if os.Getenv("GOGC") == "" {
		cmd.Env = append(cmd.Env, "GOGC="+workerGOGC)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting worker: %w", err)
	}
	p := &procWorker{cmd: cmd, stdin: stdin, pending: map[uint64]chan Response{}, enc: json.NewEncoder(stdin), dead: make(chan struct{})}
	go func() {
		dec := json.NewDecoder(bufio.NewReader(stdout))
		var err error
		for {
			var r Response
			if err = dec.Decode(&r); err != nil {
				break
			}
			p.mu.Lock()
			ch := p.pending[r.ID]
			delete(p.pending, r.ID)
			p.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
		p.mu.Lock()
		p.err = fmt.Errorf("worker process %d ended: %v", cmd.Process.Pid, err)
		p.mu.Unlock()
		close(p.dead)
	}()
	return p, nil
}

func (p *procWorker) do(ctx context.Context, req Request) (Response, error) {
	ch := make(chan Response, 1)
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return Response{}, p.err
	}
	p.nextID++
	req.ID = p.nextID
	p.pending[req.ID] = ch
	err := p.enc.Encode(req)
	p.mu.Unlock()
	if err != nil {
		return Response{}, fmt.Errorf("worker: %w", err)
	}
	select {
	case r := <-ch:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-p.dead:
		return Response{}, p.err
	case <-ctx.Done():
		return Response{}, ctx.Err()
	}
}

func (p *procWorker) close() error {
	p.stdin.Close()
	select {
	case <-p.dead:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill() // our own child, stuck
		<-p.dead
	}
	return p.cmd.Wait()
}

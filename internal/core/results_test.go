package core_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// TestAwaitResult: an answer reaches the one caller that waits for its id, once; ids are
// unique per conn; cancel and the answer both forget the invocation.
func TestAwaitResult(t *testing.T) {
	hub := testHub(t, testNode(t, core.Config{}), "chat")
	c := connect(t, hub, core.ConnInfo{})

	id1, ch1, cancel1, err := c.AwaitResult()
	if err != nil {
		t.Fatal(err)
	}
	id2, ch2, cancel2, err := c.AwaitResult()
	if err != nil {
		t.Fatal(err)
	}
	if id1 == id2 || id1 == "" {
		t.Fatalf("ids %q and %q", id1, id2)
	}
	if n := c.PendingResults(); n != 2 {
		t.Fatalf("pending = %d, want 2", n)
	}
	want := core.ClientResult{Result: []byte("42"), HasResult: true}
	if !c.ResolveResult(id2, want) {
		t.Fatal("ResolveResult: nobody waits")
	}
	if got := <-ch2; string(got.Result) != "42" || !got.HasResult {
		t.Fatalf("answer %+v", got)
	}
	if c.ResolveResult(id2, want) {
		t.Fatal("a second answer to the same id was taken")
	}
	cancel2() // after the answer: harmless
	if c.ResolveResult("unknown", want) {
		t.Fatal("an unknown id was taken")
	}
	cancel1()
	if c.ResolveResult(id1, want) {
		t.Fatal("an answer after cancel was taken")
	}
	select {
	case r := <-ch1:
		t.Fatalf("a cancelled wait got %+v", r)
	default:
	}
	if n := c.PendingResults(); n != 0 {
		t.Fatalf("pending = %d after answer and cancel, want 0", n)
	}
}

// TestAwaitResultConnEnds: when the conn ends, every waiting channel is closed without a value
// and nothing stays registered; an ended conn refuses new waits.
func TestAwaitResultConnEnds(t *testing.T) {
	hub := testHub(t, testNode(t, core.Config{}), "chat")
	c := connect(t, hub, core.ConnInfo{})
	var chans []<-chan core.ClientResult
	for range 3 {
		_, ch, cancel, err := c.AwaitResult()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		chans = append(chans, ch)
	}
	c.Close("bye")
	for i, ch := range chans {
		if r, open := <-ch; open {
			t.Fatalf("wait %d got %+v, want a closed channel", i, r)
		}
	}
	if n := c.PendingResults(); n != 0 {
		t.Fatalf("pending = %d after the end, want 0", n)
	}
	if _, _, _, err := c.AwaitResult(); !errors.Is(err, core.ErrConnNotFound) {
		t.Fatalf("AwaitResult on an ended conn: %v, want ErrConnNotFound", err)
	}
}

// TestAwaitResultRace runs answers, cancels and the conn's end concurrently (for -race): each
// wait ends exactly one way and nothing is left registered.
func TestAwaitResultRace(t *testing.T) {
	hub := testHub(t, testNode(t, core.Config{}), "chat")
	c := connect(t, hub, core.ConnInfo{})
	var wg sync.WaitGroup
	for i := range 50 {
		id, ch, cancel, err := c.AwaitResult()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			c.ResolveResult(id, core.ClientResult{Error: "x"})
		}()
		go func() {
			defer wg.Done()
			defer cancel()
			if i%2 == 0 {
				<-ch // an answer or the end: either closes the wait
			}
		}()
	}
	c.Close("bye")
	wg.Wait()
	if n := c.PendingResults(); n != 0 {
		t.Fatalf("pending = %d, want 0", n)
	}
}

package durable

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Headers of sends.
const (
	HeaderKey      = "Idempotency-Key"
	HeaderReplayed = "Idempotent-Replayed" // "true" on the answer to a retried send
	HeaderOffset   = "X-Switchboard-Offset"
	HeaderEpoch    = "X-Switchboard-Epoch"
)

// maxKeyBytes bounds an Idempotency-Key.
const maxKeyBytes = 255

// ReplayCounter counts the sends answered from the idempotency index (history.Service and
// history.Namespaced count them by hub).
type ReplayCounter interface {
	IdempotentReplay(hub string)
}

// Sender sends REST messages once per Idempotency-Key. The zero value ignores the header.
type Sender struct {
	// Keys is the idempotency index, in the view of the API's namespace of hubs (see
	// history.Idempotency.Namespace); nil: the header is ignored.
	Keys *history.Idempotency
	// Replays, if set, counts the sends answered from Keys.
	Replays ReplayCounter
}

// Sent is how a send went: the message's place in its group's stream (zero for a target
// that keeps no history) and whether the answer is the one of an earlier send with the key.
type Sent struct {
	history.Result
	Replayed bool
}

// Send sends m to t in hub. With a key (the request's Idempotency-Key header) and an index,
// a send that completed with the same key within the window is not run again: its result is
// returned, with Replayed. A send with the key still running is waited for (or ctx); a failed
// one gives the key up, so that a retry runs. Errors: a *Failure for a malformed key (400) or a
// key used before for another request (422, wrapping history.ErrKeyReused), else the error of
// ctx or of the core send.
func (s Sender) Send(ctx context.Context, key string, hub *core.Hub, t core.Target, m *core.Message) (Sent, error) {
	if key == "" || s.Keys == nil { // the REST hot path: no closures
		if err := hub.Send(ctx, t, m); err != nil {
			return Sent{}, err
		}
		return Sent{Result: history.Result{Offset: m.Offset, Epoch: m.Epoch}}, nil
	}
	finish, err := s.Start(ctx, key, hub, t, m)
	if err != nil {
		return Sent{}, err
	}
	return finish()
}

// Start is Send in two steps (core.Hub.SendStart), for a caller that keeps several sends in
// flight in one order: it checks and claims the key and starts the send; finish waits until
// the send is done and returns Send's result. A replay's finish answers at once. finish must
// be called exactly once. Sends whose keys are claimed but not finished make a later Start
// with the same key wait (so a caller must not start one key twice before finishing it).
func (s Sender) Start(ctx context.Context, key string, hub *core.Hub, t core.Target, m *core.Message) (finish func() (Sent, error), err error) {
	if key == "" || s.Keys == nil {
		f, err := hub.SendStart(ctx, t, m)
		if err != nil {
			return nil, err
		}
		return func() (Sent, error) {
			if err := f(); err != nil {
				return Sent{}, err
			}
			return Sent{Result: history.Result{Offset: m.Offset, Epoch: m.Epoch}}, nil
		}, nil
	}
	if !ValidKey(key) {
		return nil, badRequest(HeaderKey, ErrInvalidKey, "Invalid Idempotency-Key: it must be 1 to %d visible ASCII characters.", maxKeyBytes)
	}
	res, replayed, claim, err := s.Keys.Begin(ctx, hub.Name(), key, Fingerprint(t, m))
	switch {
	case errors.Is(err, history.ErrKeyReused):
		return nil, &Failure{Status: http.StatusUnprocessableEntity, Code: CodeKeyReused, Target: HeaderKey, cause: err,
			Message: fmt.Sprintf("Idempotency-Key %s was used for a different request.", excerpt.Quote(key))}
	case err != nil:
		return nil, err
	case replayed:
		if s.Replays != nil {
			s.Replays.IdempotentReplay(hub.Name())
		}
		return func() (Sent, error) { return Sent{Result: res, Replayed: true}, nil }, nil
	}
	m.IdempotencyKey = key
	f, err := hub.SendStart(ctx, t, m)
	if err != nil {
		var dup *core.DuplicateError
		if errors.As(err, &dup) {
			// A cluster's history stored this key already (sent through
			// another node): the answer is the first send's, as from Keys.
			res = history.Result{Offset: dup.Offset, Epoch: dup.Epoch}
			claim.Commit(res)
			if s.Replays != nil {
				s.Replays.IdempotentReplay(hub.Name())
			}
			return func() (Sent, error) { return Sent{Result: res, Replayed: true}, nil }, nil
		}
		claim.Abort()
		if errors.Is(err, history.ErrKeyReused) {
			return nil, &Failure{Status: http.StatusUnprocessableEntity, Code: CodeKeyReused, Target: HeaderKey, cause: err,
				Message: fmt.Sprintf("Idempotency-Key %s was used for a different request.", excerpt.Quote(key))}
		}
		return nil, err
	}
	return func() (Sent, error) {
		if err := f(); err != nil {
			claim.Abort()
			return Sent{}, err
		}
		res := history.Result{Offset: m.Offset, Epoch: m.Epoch}
		claim.Commit(res)
		return Sent{Result: res}, nil
	}, nil
}

// Fingerprint identifies a send for history.ErrKeyReused: its target and payload, as the log
// restores them for the keys of durable sends (excluded conns and filters are not part of it).
func Fingerprint(t core.Target, m *core.Message) uint64 {
	return history.Fingerprint(t.Kind.String(), t.Name, uint8(m.Type), m.Data)
}

// ValidKey reports whether k is a well-formed Idempotency-Key: 1 to 255 visible ASCII
// characters.
func ValidKey(k string) bool {
	if k == "" || len(k) > maxKeyBytes {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// SetHeaders puts the send's result in the answer's headers: Idempotent-Replayed for a replay,
// and the offset and epoch of a message of a group that keeps history.
func (s Sent) SetHeaders(h http.Header) {
	if s.Replayed {
		h.Set(HeaderReplayed, "true")
	}
	if s.Offset != 0 {
		h.Set(HeaderOffset, strconv.FormatUint(s.Offset, 10))
		h.Set(HeaderEpoch, s.Epoch)
	}
}

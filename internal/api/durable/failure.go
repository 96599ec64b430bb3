package durable

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboardhq/switchboard/internal/history"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Codes of the x-ms-error-code header (and of the error bodies) of this package's answers.
const (
	CodeBadRequest         = "Error.BadRequest"
	CodeHistoryNotKept     = "Error.History.NotKept"
	CodeHistoryOffsetGone  = "Error.History.OffsetGone"
	CodeHistoryEpoch       = "Error.History.EpochChanged"
	CodeHistoryOffsetAhead = "Error.History.OffsetAhead"
	CodeKeyReused          = "Error.IdempotencyKeyReused"
	// CodeHistoryUnavailable answers (503) a send to a group that keeps
	// history while the history's storage is unavailable (core.ErrHistoryUnavailable).
	CodeHistoryUnavailable = "Error.History.Unavailable"
)

// UnavailableMessage is the message of the answer to a send refused with
// core.ErrHistoryUnavailable: it names the cause ("no space left on
// device", "disk quota exceeded", "I/O error"), no file names.
func UnavailableMessage(err error) string {
	return "History storage is unavailable: " + history.Reason(err) +
		". Sends to groups that keep history are refused until it recovers; other sends are not affected."
}

// ErrInvalidKey is the cause of the answer to a malformed Idempotency-Key.
var ErrInvalidKey = errors.New("durable: invalid Idempotency-Key")

// Failure is an answer other than success, in no API's format: each API writes it as its own
// error (status, x-ms-error-code, body).
type Failure struct {
	Status  int
	Code    string
	Target  string // the header or parameter at fault
	Message string
	// Stream is where the group's stream stands, for the errors of a catch-up read that name
	// an offset or epoch; nil otherwise.
	Stream *Position
	cause  error
}

// Position is where a stream stands: its epoch, last offset and oldest retained offset.
type Position struct {
	Epoch  string
	Offset uint64
	Oldest uint64
}

func (f *Failure) Error() string { return fmt.Sprintf("%d %s: %s", f.Status, f.Code, f.Message) }

func (f *Failure) Unwrap() error { return f.cause }

// badRequest is a 400 about the header or parameter target.
func badRequest(target string, cause error, format string, args ...any) *Failure {
	return &Failure{Status: http.StatusBadRequest, Code: CodeBadRequest, Target: target,
		Message: fmt.Sprintf(format, args...), cause: cause}
}

// readFailure turns an error of a catch-up read into its Failure; pos is the stream's position
// the read returned. Other errors come back as they are.
func readFailure(err error, group string, after uint64, pos history.Messages) error {
	sp := &Position{Epoch: pos.Epoch, Offset: pos.Offset, Oldest: pos.Oldest}
	group = excerpt.Of(group) // up to 1024 characters: the messages quote its start
	switch {
	case errors.Is(err, history.ErrNotKept):
		return &Failure{Status: http.StatusNotFound, Code: CodeHistoryNotKept, Target: "group", cause: err,
			Message: fmt.Sprintf("Group `%s` keeps no history.", group)}
	case errors.Is(err, history.ErrOffsetGone):
		return &Failure{Status: http.StatusGone, Code: CodeHistoryOffsetGone, Target: "after", cause: err, Stream: sp,
			Message: fmt.Sprintf("Offset %d is older than the retained history of group `%s`, which starts at offset %d.", after, group, pos.Oldest)}
	case errors.Is(err, history.ErrEpochChanged):
		return &Failure{Status: http.StatusGone, Code: CodeHistoryEpoch, Target: "epoch", cause: err, Stream: sp,
			Message: fmt.Sprintf("The history of group `%s` was reset; its epoch is now %q.", group, pos.Epoch)}
	case errors.Is(err, history.ErrOffsetAhead):
		return &Failure{Status: http.StatusBadRequest, Code: CodeHistoryOffsetAhead, Target: "after", cause: err, Stream: sp,
			Message: fmt.Sprintf("Offset %d is beyond the last offset %d of group `%s`.", after, pos.Offset, group)}
	}
	return err
}

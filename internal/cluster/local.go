package cluster

import (
	"context"

	"github.com/switchboardhq/switchboard/internal/core"
)

// Local is the in-process broker: Publish delivers to the attached node on
// the caller's goroutine, so a send returns once every recipient's queue has
// the message.
type Local struct {
	d core.Deliverer
}

var _ core.Broker = (*Local)(nil)

// NewLocal returns an in-process broker.
func NewLocal() *Local { return &Local{} }

// Attach implements core.Broker.
func (l *Local) Attach(d core.Deliverer) { l.d = d }

// Publish implements core.Broker.
func (l *Local) Publish(ctx context.Context, op *core.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.d.Deliver(op)
	return nil
}

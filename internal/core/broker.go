package core

import "context"

// localBroker is the in-process broker, the default of Config.Broker: Publish
// delivers to the one node on the caller's goroutine, so a send returns once
// every recipient's queue has the message. A clustered broker (NATS, with the
// scale-out work) plugs in as Config.Broker instead.
type localBroker struct {
	d Deliverer
}

var _ Broker = (*localBroker)(nil)

func (l *localBroker) Attach(d Deliverer) { l.d = d }

func (l *localBroker) Publish(ctx context.Context, op *Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.d.Deliver(op)
	return nil
}

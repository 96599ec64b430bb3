// Package durable is the REST side of durable group history that the Web PubSub and SignalR
// APIs share: sends made idempotent by an Idempotency-Key (the index is history.Idempotency,
// the answer carries Idempotent-Replayed and the message's X-Switchboard-Offset and
// X-Switchboard-Epoch) and the catch-up read of a group's stream (the after, limit and epoch
// parameters, the page, nextLink, and the 404 and 410 answers). It knows HTTP headers and
// query strings but no error format: its errors are *Failure values that each API writes in
// its own.
package durable

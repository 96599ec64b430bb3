package webpubsub

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

// This file holds the operations on messages and sessions: health, the
// :send and :closeConnections operations and the existence checks. Path
// variables are validated (and the hub resolved) before they run.

func (h *handler) health(c *call) error {
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// send validates the query and body of a :send operation and sends the
// message to t; 202 even when no conn matches.
func (h *handler) send(c *call, t core.Target) error {
	ttl, err := c.messageTTL()
	if err != nil {
		return err
	}
	t.Excluded = c.excluded()
	f, err := c.filter()
	if err != nil {
		return err
	}
	t.Filter = f
	m, err := c.message(h.maxBody)
	if err != nil {
		return err
	}
	if ttl > 0 {
		m.Expires = time.Now().Add(ttl)
	}
	if t.Kind == core.ToGroup {
		m.From, m.Group = core.FromGroup, t.Name
	} else {
		m.From = core.FromServer
	}
	var claim *history.Claim
	if key := c.r.Header.Get(headerIdempotencyKey); key != "" && h.idem != nil {
		if !validIdempotencyKey(key) {
			return badRequest(headerIdempotencyKey, "Invalid Idempotency-Key: it must be 1 to 255 visible ASCII characters.")
		}
		fp := history.Fingerprint(t.Kind.String(), t.Name, uint8(m.Type), m.Data)
		res, replayed, cl, err := h.idem.Begin(c.r.Context(), c.hub.Name(), key, fp)
		switch {
		case errors.Is(err, history.ErrKeyReused):
			return errKeyReused(key)
		case err != nil:
			return fromCore(err, t.Name)
		case replayed:
			if h.history != nil {
				h.history.IdempotentReplay(c.hub.Name())
			}
			c.w.Header().Set(headerReplayed, "true")
			return accepted(c, res)
		}
		claim = cl
		m.IdempotencyKey = key
	}
	if err := c.hub.Send(c.r.Context(), t, m); err != nil {
		if claim != nil {
			claim.Abort()
		}
		return fromCore(err, t.Name)
	}
	res := history.Result{Offset: m.Offset, Epoch: m.Epoch}
	if claim != nil {
		claim.Commit(res)
	}
	return accepted(c, res)
}

// Headers of sends.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed" // "true" on the answer to a retried send
	headerOffset         = "X-Switchboard-Offset"
	headerEpoch          = "X-Switchboard-Epoch"
)

// accepted answers a send with 202 and, for a group that keeps history, the
// message's offset and epoch.
func accepted(c *call, res history.Result) error {
	if res.Offset != 0 {
		c.w.Header().Set(headerOffset, strconv.FormatUint(res.Offset, 10))
		c.w.Header().Set(headerEpoch, res.Epoch)
	}
	c.w.WriteHeader(http.StatusAccepted)
	return nil
}

func validIdempotencyKey(k string) bool {
	if len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func (h *handler) sendToAll(c *call) error {
	return h.send(c, core.Target{Kind: core.ToAll})
}

func (h *handler) sendToGroup(c *call) error {
	return h.send(c, core.Target{Kind: core.ToGroup, Name: c.params.group})
}

func (h *handler) sendToUser(c *call) error {
	return h.send(c, core.Target{Kind: core.ToUser, Name: c.params.user})
}

func (h *handler) sendToConnection(c *call) error {
	return h.send(c, core.Target{Kind: core.ToConn, Name: c.params.conn})
}

// closeConns closes the conns of t (minus excluded) with the reason
// parameter; 204 even when none matched.
func (h *handler) closeConns(c *call, t core.Target) error {
	t.Excluded = c.excluded()
	if err := c.hub.CloseConns(c.r.Context(), t, c.get("reason")); err != nil {
		return fromCore(err, t.Name)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) closeAll(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToAll})
}

func (h *handler) closeGroup(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToGroup, Name: c.params.group})
}

func (h *handler) closeUser(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToUser, Name: c.params.user})
}

func (h *handler) closeConnection(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToConn, Name: c.params.conn})
}

// exists answers a HEAD check: 200, or 404 with warning and no body.
func exists(c *call, ok bool, warning string) error {
	if !ok {
		writeWarning(c.w, warning)
		return nil
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) connectionExists(c *call) error {
	_, err := c.hub.Conn(c.params.conn)
	return exists(c, err == nil, warnConnNotExisted)
}

func (h *handler) groupExists(c *call) error {
	return exists(c, c.hub.GroupExists(c.params.group), warnGroupNotExisted)
}

func (h *handler) userExists(c *call) error {
	return exists(c, c.hub.UserExists(c.params.user), warnUserNotExisted)
}

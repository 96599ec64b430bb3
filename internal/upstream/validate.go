package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// validationTimeout bounds one abuse-protection request (further bounded by the
// handler's timeout).
const validationTimeout = 10 * time.Second

// hostState is the abuse-protection state of one handler host. Guarded by
// Client.hostsMu.
type hostState struct {
	ok           bool      // validated: events flow
	refusedUntil time.Time // refused: no events before this
	inflight     *check    // the validation under way, if any
}

// check is one validation; err is written before done is closed.
type check struct {
	done chan struct{}
	err  error
}

// refusal marks a validation answer that refuses the origin (as opposed to a
// transient failure, which is not cached).
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

// checkHost returns nil once u's host (scheme, host and port) passed the abuse-protection
// validation, running it first if needed on h's URL for hub with {event} = "validate";
// concurrent callers share one validation. It returns an error wrapping ErrUnavailable
// (and ErrRefused for a refusing host) or ErrClosed.
func (c *Client) checkHost(ctx context.Context, h *Handler, hub string, u *url.URL) error {
	key := strings.ToLower(u.Scheme + "://" + u.Host)
	c.hostsMu.Lock()
	s := c.hosts[key]
	if s == nil {
		s = &hostState{}
		c.hosts[key] = s
	}
	if s.ok {
		c.hostsMu.Unlock()
		return nil
	}
	chk := s.inflight
	if chk == nil {
		if until := s.refusedUntil; time.Now().Before(until) {
			c.hostsMu.Unlock()
			return fmt.Errorf("%w: %w (until %s)", ErrUnavailable, ErrRefused, until.UTC().Format(time.RFC3339))
		}
		if c.stopped {
			c.hostsMu.Unlock()
			return ErrClosed
		}
		chk = &check{done: make(chan struct{})}
		s.inflight = chk
		target := expand(h.URLTemplate, hub, "validate")
		c.wg.Add(1)
		go c.validate(key, s, chk, target, *h)
	}
	c.hostsMu.Unlock()

	select {
	case <-chk.done:
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for abuse-protection validation: %w", ErrUnavailable, ctx.Err())
	case <-c.ctx.Done():
		return ErrClosed
	}
	var r *refusal
	switch {
	case chk.err == nil:
		return nil
	case errors.As(chk.err, &r):
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrRefused, chk.err)
	default:
		return fmt.Errorf("%w: abuse-protection validation: %w", ErrUnavailable, chk.err)
	}
}

// validate runs one validation of a host and records its outcome.
func (c *Client) validate(key string, s *hostState, chk *check, target string, h Handler) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, min(h.timeout(), validationTimeout))
	err := c.preflight(ctx, target, &h)
	cancel()

	c.hostsMu.Lock()
	s.inflight = nil
	var r *refusal
	switch {
	case err == nil:
		s.ok = true
	case errors.As(err, &r):
		s.refusedUntil = time.Now().Add(c.revalidateAfter)
	}
	chk.err = err
	close(chk.done)
	c.hostsMu.Unlock()

	if err != nil {
		c.metrics.validationFailures.Inc()
	}
	if r != nil {
		c.log.Warn("event handler host refused abuse-protection validation; it gets no events until revalidation",
			"host", key, "err", err, "retry_after", c.revalidateAfter)
	}
}

// preflight sends the abuse-protection request (OPTIONS, or GET when OPTIONS gets 404 or
// 405) and checks WebHook-Allowed-Origin. It returns a *refusal when the host answered
// and does not allow the origin, another error when it could not be asked.
func (c *Client) preflight(ctx context.Context, target string, h *Handler) error {
	status, allowed, err := c.ask(ctx, http.MethodOptions, target, h)
	if err == nil && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		status, allowed, err = c.ask(ctx, http.MethodGet, target, h)
	}
	switch {
	case err != nil:
		return err
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return fmt.Errorf("validation answered %d", status)
	case status < 200 || status >= 300:
		return &refusal{fmt.Sprintf("validation answered %d", status)}
	case !originAllowed(allowed, c.origin):
		return &refusal{fmt.Sprintf("WebHook-Allowed-Origin %q does not allow origin %q", strings.Join(allowed, ", "), c.origin)}
	}
	return nil
}

// ask sends one validation request and returns its status and WebHook-Allowed-Origin
// values.
func (c *Client) ask(ctx context.Context, method, target string, h *Handler) (int, []string, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("WebHook-Request-Origin", c.origin)
	req.Header.Set("ce-awpsversion", "1.0")
	if h.AuthHeader != "" {
		req.Header.Set("Authorization", h.AuthHeader)
	}
	r, err := c.do(req, c.maxBody)
	if err != nil {
		return 0, nil, err
	}
	return r.status, r.header.Values("WebHook-Allowed-Origin"), nil
}

// originAllowed reports whether the WebHook-Allowed-Origin values allow origin: "*", the
// origin itself, or the origin with a port (case-insensitive). Values may be lists.
func originAllowed(values []string, origin string) bool {
	for _, v := range values {
		for a := range strings.SplitSeq(v, ",") {
			a = strings.TrimSpace(a)
			if a == "*" || strings.EqualFold(a, origin) || strings.EqualFold(hostOnly(a), hostOnly(origin)) && hostOnly(a) != "" {
				return true
			}
		}
	}
	return false
}

// hostOnly strips a scheme and a port from an origin value.
func hostOnly(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	s = strings.TrimSuffix(s, "/")
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

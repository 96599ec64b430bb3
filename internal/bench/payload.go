package bench

import (
	"errors"
	"strconv"
)

// A payload is ASCII text "p<stream>:<seq>:<unixnanos>:" padded with 'x' to the message size.
// A stream is one ordered sequence of messages: one publisher in fanout and rooms, one
// (publisher, user) pair in users. It is JSON-safe, so it travels unescaped in "data".

// appendPayload appends the payload of message seq of stream, sent at ts, padded to size bytes.
func appendPayload(b []byte, stream uint32, seq uint64, ts int64, size int) []byte {
	start := len(b)
	b = append(b, 'p')
	b = strconv.AppendUint(b, uint64(stream), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, ':')
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return b
}

var errPayload = errors.New("bench: not a bench payload")

// parsePayload reads stream, seq and send time from the start of p.
func parsePayload(p []byte) (stream uint32, seq uint64, ts int64, err error) {
	if len(p) < 2 || p[0] != 'p' {
		return 0, 0, 0, errPayload
	}
	i := 1
	num := func() (uint64, bool) {
		var v uint64
		j := i
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			v = v*10 + uint64(p[i]-'0')
			i++
		}
		if i == j || i >= len(p) || p[i] != ':' || i-j > 19 {
			return 0, false
		}
		i++
		return v, true
	}
	s, ok1 := num()
	q, ok2 := num()
	t, ok3 := num()
	if !ok1 || !ok2 || !ok3 || s > 1<<32-1 {
		return 0, 0, 0, errPayload
	}
	return uint32(s), q, int64(t), nil
}

package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record is one message of a group stream as the log stores it.
type Record struct {
	Hub, Group string
	Offset     uint64 // contiguous within the stream, from 1
	Epoch      uint64 // the stream's incarnation; a new one when the stream is lost or reset
	Time       int64  // unix nanoseconds when appended
	Type       uint8  // core.DataType
	FromUserID string
	// Key is the Idempotency-Key of the send that produced the record, ""
	// when none; it lets the idempotency index be rebuilt after a restart.
	Key  string
	Data []byte

	epochText string // FormatEpoch(Epoch), set by SegmentLog.Append from its stream
}

// On disk a record is a frame: a little-endian uint32 payload length, the
// CRC32C (Castagnoli) of the payload, then the payload:
//
//	version u8 (1) | offset u64 | epoch u64 | time i64 | type u8 |
//	hub, group, fromUserID, key, data: each a uvarint length then bytes
//
// A frame whose length runs past the file or whose checksum does not match
// is a torn or corrupt tail: nothing from it on is served.
const (
	frameHeader    = 8
	recordVersion  = 1
	maxRecordBytes = 64 << 20 // a frame announcing more is corrupt
	fixedPayload   = 1 + 8 + 8 + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors of the record decoder.
var (
	ErrShortFrame   = errors.New("history: truncated frame")
	ErrChecksum     = errors.New("history: checksum mismatch")
	ErrBadRecord    = errors.New("history: malformed record")
	ErrFrameTooLong = errors.New("history: frame length out of range")
)

// payloadSize returns the encoded payload length of r.
func (r *Record) payloadSize() int {
	n := fixedPayload
	for _, s := range [...]int{len(r.Hub), len(r.Group), len(r.FromUserID), len(r.Key), len(r.Data)} {
		n += uvarintLen(uint64(s)) + s
	}
	return n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendFrame appends the frame of r to dst.
func appendFrame(dst []byte, r *Record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst = append(dst, recordVersion)
	dst = binary.LittleEndian.AppendUint64(dst, r.Offset)
	dst = binary.LittleEndian.AppendUint64(dst, r.Epoch)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Time))
	dst = append(dst, r.Type)
	for _, s := range [...]string{r.Hub, r.Group, r.FromUserID, r.Key} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
	dst = append(dst, r.Data...)
	payload := dst[start+frameHeader:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// frameLen reads a frame header from b and returns the whole frame's length
// (header included), checking only that it is plausible.
func frameLen(b []byte) (int, error) {
	if len(b) < frameHeader {
		return 0, ErrShortFrame
	}
	n := binary.LittleEndian.Uint32(b)
	if n < fixedPayload || n > maxRecordBytes {
		return 0, fmt.Errorf("%w: %d", ErrFrameTooLong, n)
	}
	return frameHeader + int(n), nil
}

// decodeFrame decodes the frame at the start of b and returns its record and
// length. The record's strings are copied; Data aliases b unless copyData.
func decodeFrame(b []byte, copyData bool) (Record, int, error) {
	n, err := frameLen(b)
	if err != nil {
		return Record{}, 0, err
	}
	if len(b) < n {
		return Record{}, 0, ErrShortFrame
	}
	payload := b[frameHeader:n]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return Record{}, 0, ErrChecksum
	}
	r, err := decodePayload(payload, copyData)
	return r, n, err
}

// decodePayload decodes a checksummed payload.
func decodePayload(p []byte, copyData bool) (Record, error) {
	var r Record
	if len(p) < fixedPayload {
		return r, fmt.Errorf("%w: %d bytes", ErrBadRecord, len(p))
	}
	if p[0] != recordVersion {
		return r, fmt.Errorf("%w: version %d", ErrBadRecord, p[0])
	}
	r.Offset = binary.LittleEndian.Uint64(p[1:])
	r.Epoch = binary.LittleEndian.Uint64(p[9:])
	r.Time = int64(binary.LittleEndian.Uint64(p[17:]))
	r.Type = p[25]
	p = p[fixedPayload:]
	var fields [5][]byte
	for i := range fields {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return Record{}, fmt.Errorf("%w: field %d length", ErrBadRecord, i)
		}
		fields[i] = p[k : k+int(l)]
		p = p[k+int(l):]
	}
	if len(p) != 0 {
		return Record{}, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(p))
	}
	if r.Offset == 0 || len(fields[0]) == 0 || len(fields[1]) == 0 {
		return Record{}, fmt.Errorf("%w: zero offset or empty stream name", ErrBadRecord)
	}
	r.Hub, r.Group, r.FromUserID, r.Key = string(fields[0]), string(fields[1]), string(fields[2]), string(fields[3])
	r.Data = fields[4]
	if copyData {
		r.Data = append([]byte(nil), r.Data...)
	}
	return r, nil
}

package history

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"minimal", Record{Hub: "h", Group: "g", Offset: 1, Epoch: 7}},
		{"full", Record{Hub: "chat", Group: "conversation:42", Offset: 1 << 40, Epoch: ^uint64(0), Time: -5, Type: 2,
			FromUserID: "alice", Key: "k-1", Data: []byte(`{"a":1}`)}},
		{"binary data", Record{Hub: "h", Group: "g", Offset: 3, Epoch: 1, Data: []byte{0, 0xff, '\n', 0x80}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendFrame([]byte("prefix"), &tt.rec)
			frame := b[len("prefix"):]
			if len(frame) != frameHeader+tt.rec.payloadSize() {
				t.Fatalf("frame is %d bytes, payloadSize says %d", len(frame), frameHeader+tt.rec.payloadSize())
			}
			got, n, err := decodeFrame(append(frame, "trailing"...), true)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(frame) {
				t.Errorf("length %d, want %d", n, len(frame))
			}
			if got.Hub != tt.rec.Hub || got.Group != tt.rec.Group || got.Offset != tt.rec.Offset || got.Epoch != tt.rec.Epoch ||
				got.Time != tt.rec.Time || got.Type != tt.rec.Type || got.FromUserID != tt.rec.FromUserID || got.Key != tt.rec.Key ||
				!bytes.Equal(got.Data, tt.rec.Data) {
				t.Errorf("got %+v, want %+v", got, tt.rec)
			}
		})
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	good := appendFrame(nil, &Record{Hub: "h", Group: "g", Offset: 1, Epoch: 1, Data: []byte("hello")})
	flip := append([]byte(nil), good...)
	flip[len(flip)-1] ^= 1
	zeroOffset := appendFrame(nil, &Record{Hub: "h", Group: "g", Offset: 0, Epoch: 1})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShortFrame},
		{"short header", good[:5], ErrShortFrame},
		{"torn payload", good[:len(good)-1], ErrShortFrame},
		{"flipped bit", flip, ErrChecksum},
		{"zeroed header", make([]byte, 64), ErrFrameTooLong},
		{"huge length", []byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, ErrFrameTooLong},
		{"zero offset", zeroOffset, ErrBadRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodeFrame(tt.b, false); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzDecodeFrame: the decoder never panics, and whatever it accepts
// encodes back to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, &Record{Hub: "h", Group: "g", Offset: 1, Epoch: 1, Data: []byte("hello")}))
	f.Add(appendFrame(nil, &Record{Hub: "chat", Group: "conversation:1", Offset: 99, Epoch: 5, Time: 1700000000, Type: 2, FromUserID: "u", Key: "k", Data: []byte("{}")}))
	f.Add([]byte{})
	f.Add([]byte{9, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeFrame(b, false)
		if err != nil {
			return
		}
		again := appendFrame(nil, &r)
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b[:n])
		}
	})
}

func TestFormatEpochIsSixteenHexDigits(t *testing.T) {
	if got := FormatEpoch(0); got != "" {
		t.Fatalf("FormatEpoch(0) = %q, want \"\"", got)
	}
	for _, e := range []uint64{1, 0xf, 0x10, 0xdeadbeef, 1 << 63, ^uint64(0), 0x0123456789abcdef} {
		if got, want := FormatEpoch(e), fmt.Sprintf("%016x", e); got != want {
			t.Errorf("FormatEpoch(%#x) = %q, want %q", e, got, want)
		}
	}
}

func TestAppendGivesTheStreamsEpochText(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	r := &Record{Hub: "chat", Group: "room:1", Data: []byte("x")}
	ack, err := l.Append(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.WaitFunc()(); err != nil {
		t.Fatal(err)
	}
	if r.Epoch == 0 || r.epochText != FormatEpoch(r.Epoch) {
		t.Fatalf("epoch %#x, text %q", r.Epoch, r.epochText)
	}
}

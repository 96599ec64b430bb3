package webpubsub

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchboardhq/switchboard/internal/core"
)

// TestProtobufFrameLengthsAtVarintBoundaries: the lengths the codec writes
// by hand (the data message's, MessageData's, and the reliable head's
// total of head and shared body) are right on both sides of every varint
// size change a frame can reach: 127/128 and 16383/16384 bytes, for data
// and group names of every length around them, with sequence ids of one to
// ten varint bytes. The generated decoder must read back the exact fields.
func TestProtobufFrameLengthsAtVarintBoundaries(t *testing.T) {
	var sizes []int
	for _, edge := range []int{0, 1 << 7, 1 << 14} {
		for n := max(edge-40, 0); n <= edge+40; n++ {
			sizes = append(sizes, n)
		}
	}
	sizes = append(sizes, 1<<21-20, 1<<21-12, 1<<21-8, 1<<21, 1<<21+8) // 2 MiB: a fourth length byte
	seqs := []uint64{1, 127, 128, 16383, 16384, 1<<21 - 1, 1 << 21, math.MaxUint64}
	groups := []string{"", "g", strings.Repeat("g", 120), strings.Repeat("g", 127), strings.Repeat("g", 128), strings.Repeat("g", 1024)}
	for _, n := range sizes {
		data := bytes.Repeat([]byte{'x'}, n)
		for _, group := range groups {
			m := &core.Message{Type: core.Text, Data: data, From: core.FromServer}
			if group != "" {
				m.From, m.Group = core.FromGroup, group
			}
			for _, c := range []protobufCodec{{}, {reliable: true}} {
				body := c.EncodeMessage(m).Data
				frames := [][]byte{body}
				if c.reliable {
					frames = frames[:0]
					for _, seq := range seqs {
						frames = append(frames, append(c.AppendHead(nil, seq, body), body...))
					}
				}
				for i, b := range frames {
					var d downMsg
					if err := proto.Unmarshal(b, &d); err != nil {
						t.Fatalf("data %d B, group %d B, reliable=%v (frame %d): %v", n, len(group), c.reliable, i, err)
					}
					dm := d.GetDataMessage()
					wantSeq := uint64(0)
					if c.reliable {
						wantSeq = seqs[i]
					}
					wantFrom := "server"
					if group != "" {
						wantFrom = "group"
					}
					if dm.GetData().GetTextData() != string(data) || dm.GetGroup() != group || dm.GetFrom() != wantFrom ||
						dm.GetSequenceId() != wantSeq || len(d.ProtoReflect().GetUnknown()) != 0 || len(dm.ProtoReflect().GetUnknown()) != 0 {
						t.Fatalf("data %d B, group %d B, reliable=%v (frame %d): decoded from %q group %d B text %d B seq %d",
							n, len(group), c.reliable, i, dm.GetFrom(), len(dm.GetGroup()), len(dm.GetData().GetTextData()), dm.GetSequenceId())
					}
					if size := proto.Size(&d); size != len(b) {
						t.Fatalf("data %d B, group %d B, reliable=%v (frame %d): frame is %d B, its message %d B", n, len(group), c.reliable, i, len(b), size)
					}
				}
			}
		}
	}
}

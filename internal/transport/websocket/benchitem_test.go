package websocket

import (
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

// benchItem is a queued send, stamped as core stamps one (the delivery
// latency is observed for it).
func benchItem(body []byte) core.Item {
	return core.Item{Body: body, Accepted: time.Now().UnixNano()}
}

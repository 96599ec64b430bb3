package signalr

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/odata"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// :execute (spec §7.7, swagger HubProxyV20230701_Execute) applies a list of commands to the
// hub's connections that match the OData filter (all of them without one):
//
//	[{"type":"SendMessage","message":{"target":"t","arguments":[…]}},
//	 {"type":"JoinGroup","group":"g"}, {"type":"LeaveGroup","group":"g"},
//	 {"type":"CloseConnection","reason":"…"}]
//
// Every command is checked before any runs, so a bad one changes nothing; then they run in
// order. Type names and property names match ignoring case (the .NET SDK writes PascalCase).

// Command types of :execute.
const (
	cmdSendMessage     = "SendMessage"
	cmdJoinGroup       = "JoinGroup"
	cmdLeaveGroup      = "LeaveGroup"
	cmdCloseConnection = "CloseConnection"
)

// command is one validated :execute command.
type command struct {
	kind    string        // one of the cmd constants
	message *core.Message // SendMessage
	group   string        // JoinGroup, LeaveGroup
	reason  string        // CloseConnection
}

// rawCommand is a command as sent; encoding/json matches the property names ignoring case.
type rawCommand struct {
	Type    *string         `json:"type"`
	Message json.RawMessage `json:"message"`
	Group   *string         `json:"group"`
	Reason  *string         `json:"reason"`
}

func (h *handler) execute(c *call) error {
	var filter *odata.Filter
	if s := c.query.Get("filter"); strings.TrimSpace(s) != "" {
		f, err := odata.Parse(s)
		if err != nil {
			return badRequest("filter", "%s (Parameter 'filter')", err.Error())
		}
		filter = f
	}
	body, err := c.jsonBody(h.maxBody, "The :execute operation")
	if err != nil {
		return err
	}
	cmds, err := parseCommands(body)
	if err != nil {
		return err
	}
	t := core.Target{Kind: core.ToAll, Filter: filter}
	for _, cmd := range cmds {
		switch cmd.kind {
		case cmdSendMessage:
			if err := c.hub.Send(c.r.Context(), t, cmd.message); err != nil {
				return answer(err, "")
			}
		case cmdJoinGroup, cmdLeaveGroup:
			// On every node's conns the filter selects; a conn at its
			// group limit is skipped.
			kind := core.ReqAddToGroups
			if cmd.kind == cmdLeaveGroup {
				kind = core.ReqRemoveFromGroups
			}
			if _, err := c.do(core.Request{Kind: kind, Groups: []string{cmd.group}, Filter: filter}); err != nil {
				return err
			}
		case cmdCloseConnection:
			if err := c.hub.CloseConns(c.r.Context(), t, cmd.reason); err != nil {
				return answer(err, "")
			}
		}
	}
	return nil
}

// parseCommands decodes and validates the command list; the errors are 400s naming the
// command at fault.
func parseCommands(body []byte) ([]command, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, badRequest("body", "The commands in the request body are required.")
	}
	if body[0] != '[' {
		return nil, badRequest("body", "The request body must be a JSON array of commands.")
	}
	var raws []rawCommand
	if err := json.Unmarshal(body, &raws); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, badRequest("body", "Invalid command: %s must be a %s, not a JSON %s.", excerpt.Of(ute.Field), ute.Type, excerpt.Of(ute.Value))
		}
		return nil, badRequest("body", "The request body is not valid JSON.")
	}
	cmds := make([]command, len(raws))
	for i, raw := range raws {
		at := func(format string, args ...any) error {
			return badRequest("body", "Command %d: "+format, append([]any{i}, args...)...)
		}
		if raw.Type == nil {
			return nil, at("the type is required (SendMessage, JoinGroup, LeaveGroup or CloseConnection).")
		}
		cmd := &cmds[i]
		for _, k := range []string{cmdSendMessage, cmdJoinGroup, cmdLeaveGroup, cmdCloseConnection} {
			if strings.EqualFold(*raw.Type, k) {
				cmd.kind = k
			}
		}
		switch cmd.kind {
		case cmdSendMessage:
			if len(raw.Message) == 0 || string(raw.Message) == "null" {
				return nil, at("SendMessage needs a message {\"target\":…,\"arguments\":[…]}.")
			}
			p, err := hubproto.ParsePayload("application/json", raw.Message)
			if err != nil {
				return nil, at("invalid message: %s", excerpt.Error(err))
			}
			cmd.message = &core.Message{Type: core.JSON, Data: p.Invocation}
		case cmdJoinGroup, cmdLeaveGroup:
			if raw.Group == nil || !core.ValidGroupName(*raw.Group) {
				return nil, at("%s needs a group. %s", cmd.kind, msgInvalidGroup)
			}
			cmd.group = *raw.Group
		case cmdCloseConnection:
			if raw.Reason != nil {
				cmd.reason = *raw.Reason
			}
		default:
			return nil, at("unknown type %s; use SendMessage, JoinGroup, LeaveGroup or CloseConnection.", excerpt.Quote(*raw.Type))
		}
	}
	return cmds, nil
}

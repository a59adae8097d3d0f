package realtime

import (
	"encoding/json"
	"strconv"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// encodeEvent encodes an event once for all its receivers.
func encodeEvent(ev *tidings.Event) ([]byte, error) { return json.Marshal(ev) }

// updateFrame builds an update frame around an encoded event. Only the
// account, ref and silent flag differ between receivers, so the event's
// bytes are shared and the frame is a cheap concatenation.
// Account names are restricted (see validAccount) and need no escaping.
func updateFrame(account string, seq int64, silent bool, action string, event []byte) []byte {
	b := make([]byte, 0, len(event)+96+len(account))
	b = append(b, `{"type":"update","account":"`...)
	b = append(b, account...)
	b = append(b, '"')
	if seq > 0 {
		b = append(b, `,"ref":"`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, '"')
	}
	if silent {
		b = append(b, `,"silent":true`...)
	}
	b = append(b, `,"action":"`...)
	b = append(b, action...)
	b = append(b, `","event":`...)
	b = append(b, event...)
	return append(b, '}')
}

// actionOf says whether an event makes something new, changes something or
// removes something.
func actionOf(name string) string {
	switch name {
	case tidings.EventConversationCreate, tidings.EventParticipantAdded, tidings.EventMessageSent,
		protocol.EventTyping:
		return protocol.ActionNew
	case tidings.EventConversationDelete, tidings.EventParticipantRemoved, tidings.EventMessageDeleted,
		protocol.EventTypingOff, protocol.EventAccountEnds:
		return protocol.ActionDelete
	}
	return protocol.ActionUpdate
}

// silentFor says whether an update should raise no notification for user:
// their own actions, and changes of status (delivered, read, typing,
// presence, profile).
func silentFor(ev *tidings.Event, user string) bool {
	if ev.Actor != nil && ev.Actor.ID == user {
		return true
	}
	switch ev.Name {
	case tidings.EventMessageSent, tidings.EventConversationCreate, tidings.EventParticipantAdded:
		return false
	}
	return true
}

// answerFrame encodes the answer to command id.
func answerFrame(id string, result any, err error) []byte {
	f := protocol.Frame{Type: protocol.TypeAnswer, ID: id}
	if err != nil {
		f.Error = &protocol.Error{Code: tidings.ErrorCode(err), Message: tidings.ErrorMessage(err)}
		var re *resyncError
		if asResync(err, &re) {
			f.Error.Ref = protocol.FormatRef(re.latest)
		}
	} else {
		r, merr := json.Marshal(result)
		if merr != nil {
			f.Error = &protocol.Error{Code: tidings.EInternal, Message: "internal error"}
		} else {
			f.Result = r
		}
	}
	b, _ := json.Marshal(f)
	return b
}

// frameSet builds the update frames of one event for its receivers, once
// per distinct (account, silent) pair: usually one or two frames for all.
type frameSet struct {
	ev     *tidings.Event
	body   []byte
	action string
	frames []builtFrame
}

type builtFrame struct {
	account string
	silent  bool
	frame   []byte
}

func framesFor(ev *tidings.Event, body []byte) *frameSet {
	return &frameSet{ev: ev, body: body, action: actionOf(ev.Name)}
}

func (fs *frameSet) get(s *Session) []byte {
	silent := silentFor(fs.ev, s.user)
	for _, f := range fs.frames {
		if f.account == s.account && f.silent == silent {
			return f.frame
		}
	}
	f := updateFrame(s.account, fs.ev.Seq, silent, fs.action, fs.body)
	fs.frames = append(fs.frames, builtFrame{s.account, silent, f})
	return f
}

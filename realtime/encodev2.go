package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// eventBodyV2 is an event encoded once for its tidings.v2 receivers
// (protocol.EventV2; docs/protocol.md, "tidings.v2"): like eventBody, an
// own form for the message's sender, with its clientId, and the others'.
type eventBodyV2 struct {
	own, others []byte
	// msg is the message of a message event, completed with what its
	// event says; nil on other events.
	msg *tidings.Message
}

// encodeEventV2 encodes ev in its tidings.v2 form. It leaves out what
// encodeEvent leaves out, and writes the message of a message event as a
// protocol.MessageV2.
func encodeEventV2(ev *tidings.Event) (eventBodyV2, error) {
	var msg *tidings.MessagePayload
	switch {
	case ev.Message != nil && ev.Message.Message != nil && isMessageEvent(ev.Name):
		// Emitted in this process: the payload's message without decoding
		// it, copied before Complete fills it in.
		p := *ev.Message
		m := *p.Message
		if slices.ContainsFunc(m.Parts, func(part tidings.Part) bool { return part.Type == "" }) {
			m.Parts = slices.Clone(m.Parts)
		}
		p.Message = &m
		p.Complete(ev)
		msg = &p
	case isMessageEvent(ev.Name) && len(ev.Payload) > 0:
		// A payload that is no message (none stored so) goes as it is.
		var p tidings.MessagePayload
		if err := json.Unmarshal(ev.Payload, &p); err == nil && p.Message != nil {
			p.Complete(ev)
			msg = &p
		}
	}
	b := make([]byte, 0, len(ev.Payload)+96)
	b = append(b, '{')
	if !(ev.Name == tidings.EventMessageSent && msg != nil && msg.ID == ev.ID) {
		b = append(b, `"i":`...)
		b = appendString(b, ev.ID)
		b = append(b, ',')
	}
	b = append(b, `"n":`...)
	b = appendString(b, protocol.NameV2(ev.Name))
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, protocol.Micros(ev.Time), 10)
	if ev.Actor != nil && !(ev.Name == tidings.EventMessageSent && msg != nil && ev.Actor.ID == msg.Sender.ID) {
		b = append(b, `,"a":`...)
		a := protocol.NewProfileV2(*ev.Actor)
		if senderIsActor(ev.Name) {
			a = protocol.ProfileV2{ID: ev.Actor.ID}
		}
		ab, err := json.Marshal(a)
		if err != nil {
			return eventBodyV2{}, err
		}
		b = append(b, ab...)
	}
	if ev.ConversationID != "" {
		b = append(b, `,"c":`...)
		b = appendString(b, ev.ConversationID)
	}
	if ev.UserID != "" {
		b = append(b, `,"u":`...)
		b = appendString(b, ev.UserID)
	}
	b = append(b, `,"p":`...)
	if msg == nil {
		switch {
		case len(ev.Payload) == 0:
			b = append(b, "null"...)
		case bytes.IndexByte(ev.Payload, '\n') >= 0:
			var buf bytes.Buffer
			if err := json.Compact(&buf, ev.Payload); err != nil {
				return eventBodyV2{}, err
			}
			b = append(b, buf.Bytes()...)
		default:
			b = append(b, ev.Payload...)
		}
		b = append(b, '}')
		return eventBodyV2{own: b, others: b}, nil
	}
	start := len(b)
	b, err := appendMessageV2(b, *msg, ev.Time)
	if err != nil {
		return eventBodyV2{}, err
	}
	b = append(b, '}')
	body := eventBodyV2{own: b, others: b, msg: msg.Message}
	if msg.ClientID != "" {
		// The sender's form: the others' with the clientId before the
		// parts, where MessageV2 has it. The first ,"p":[ is the parts':
		// a quote inside a string is escaped, and the keys before (the
		// id, seq, sender) are none of them.
		i := bytes.Index(b[start:], []byte(`,"p":[`))
		if i < 0 {
			return eventBodyV2{}, errors.New("realtime: a message without parts")
		}
		i += start
		own := make([]byte, 0, len(b)+len(msg.ClientID)+16)
		own = append(own, b[:i]...)
		own = append(own, `,"cid":`...)
		own = appendString(own, msg.ClientID)
		body.own = append(own, b[i:]...)
	}
	return body, nil
}

// forUser returns the form of the event that user receives; sender is the
// message's sender (eventBody.sender).
func (b *eventBodyV2) forUser(own bool) []byte {
	if own {
		return b.own
	}
	return b.others
}

// updateFrameV2 builds a tidings.v2 update frame (protocol.FrameV2)
// around an encoded event, as updateFrame does a tidings.v1 one.
func updateFrameV2(account string, seq int64, silent bool, event []byte) []byte {
	b := make([]byte, 0, len(event)+32+len(account))
	b = append(b, '{')
	if account != defaultAccount {
		b = append(b, `"a":"`...)
		b = append(b, account...)
		b = append(b, `",`...)
	}
	if seq > 0 {
		b = append(b, `"r":"`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, `",`...)
	}
	if silent {
		b = append(b, `"s":true,`...)
	}
	b = append(b, `"e":`...)
	b = append(b, event...)
	return append(b, '}')
}

// answerFrameV2 encodes the answer to command id in tidings.v2
// (protocol.FrameV2): a message.send's result as a protocol.SendResultV2.
func answerFrameV2(id string, result any, err error) []byte {
	if err == nil {
		if r, ok := sendResultV2(result); ok {
			if b, err := sendAnswerFrameV2(id, r); err == nil {
				return b
			}
		}
	}
	f := protocol.FrameV2{ID: id}
	if err != nil {
		f.Err = answerError(err)
	} else {
		if r, ok := result.(protocol.SendResult); ok {
			result = r.V2("")
		}
		r, merr := json.Marshal(result)
		if merr != nil {
			f.Err = &protocol.Error{Code: tidings.EInternal, Message: "internal error"}
		} else {
			f.OK = r
		}
	}
	b, _ := json.Marshal(f)
	return b
}

// sendResultV2 returns a message.send's result in its tidings.v2 form;
// false if result is none.
func sendResultV2(result any) (protocol.SendResultV2, bool) {
	switch r := result.(type) {
	case protocol.SendResult:
		return r.V2(""), true
	case protocol.SendResultV2:
		return r, true
	}
	return protocol.SendResultV2{}, false
}

// appendProfileV2 appends p as json.Marshal writes it.
func appendProfileV2(b []byte, p protocol.ProfileV2) ([]byte, error) {
	b = append(b, `{"i":`...)
	b = appendString(b, p.ID)
	if p.DisplayName != "" {
		b = append(b, `,"n":`...)
		b = appendString(b, p.DisplayName)
	}
	if p.AvatarURL != "" {
		b = append(b, `,"av":`...)
		b = appendString(b, p.AvatarURL)
	}
	if p.Identifier != nil {
		var err error
		if b, err = appendJSON(b, `,"idf":`, p.Identifier); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendMessageV2 appends the others' form of the message of p, a message
// event of eventTime, as json.Marshal(protocol.NewMessageV2(p, eventTime,
// false)) writes it, without its reflection.
func appendMessageV2(b []byte, p tidings.MessagePayload, eventTime time.Time) ([]byte, error) {
	m := p.Message
	b = append(b, `{"i":`...)
	b = appendString(b, m.ID)
	b = append(b, `,"q":`...)
	b = strconv.AppendInt(b, m.Seq, 10)
	b = append(b, `,"s":`...)
	b, err := appendProfileV2(b, protocol.NewProfileV2(m.Sender))
	if err != nil {
		return nil, err
	}
	if m.System {
		b = append(b, `,"sys":true`...)
	}
	b = append(b, `,"p":[`...)
	for i, part := range m.Parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		sep := false
		field := func(key, value string) {
			if value == "" {
				return
			}
			if sep {
				b = append(b, ',')
			}
			sep = true
			b = append(b, key...)
			b = appendString(b, value)
		}
		if part.Type != tidings.DefaultPartType {
			field(`"t":`, part.Type)
		}
		field(`"n":`, part.Name)
		field(`"d":`, part.Data)
		field(`"f":`, part.FileID)
		if part.Size != 0 {
			if sep {
				b = append(b, ',')
			}
			b = append(b, `"z":`...)
			b = strconv.AppendInt(b, part.Size, 10)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(m.Metadata) > 0 {
		b = append(b, `,"m":`...)
		var buf bytes.Buffer
		if err := json.Compact(&buf, m.Metadata); err != nil {
			return nil, err
		}
		b = append(b, buf.Bytes()...)
	}
	if m.Alert != "" {
		b = append(b, `,"al":`...)
		b = appendString(b, m.Alert)
	}
	micros := func(key string, t time.Time) {
		b = append(b, key...)
		b = strconv.AppendInt(b, protocol.Micros(t), 10)
	}
	if !m.SentAt.IsZero() && !m.SentAt.Equal(eventTime) {
		micros(`,"st":`, m.SentAt)
	}
	if m.EditedAt != nil && !m.EditedAt.IsZero() {
		micros(`,"et":`, *m.EditedAt)
	}
	if m.DeletedAt != nil && !m.DeletedAt.IsZero() {
		micros(`,"dt":`, *m.DeletedAt)
	}
	if p.ReferrerID != "" {
		b = append(b, `,"rid":`...)
		b = appendString(b, p.ReferrerID)
	}
	return append(b, '}'), nil
}

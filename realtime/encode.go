package realtime

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/jsonenc"
	"github.com/tidings/tidings/protocol"
)

// eventBody is an event encoded once for all its receivers, in its wire
// form (docs/protocol.md, "The event object"). An event about a message
// has two forms: own, for the message's sender, with its clientId (which
// only the sender's devices use, to match their pending sends), and
// others, without it. For other events both are the same bytes.
type eventBody struct {
	own, others []byte
	sender      []byte // the id of the message's sender, on message events
}

// isSender says whether user sent the message of a message event.
func (b *eventBody) isSender(user string) bool {
	return len(b.sender) > 0 && string(b.sender) == user
}

// forUser returns the form of the event that user receives.
func (b *eventBody) forUser(user string) []byte {
	if b.isSender(user) {
		return b.own
	}
	return b.others
}

// encodeEvent encodes an event once for all its receivers: the
// tidings.Event without what the update frame or the account already
// says — seq is the frame's ref, app the account's — and without the
// actor of a sent message, its sender (the payload's sender is the same
// profile in full); on an edited message the actor is reduced to its id
// (there, an absent actor says that the app's server edited it). The id
// of a sent message's event is its message's (tidings.NewEventID): it
// goes once, in the payload. Every delivery pays for each byte of it.
func encodeEvent(ev *tidings.Event) (eventBody, error) {
	var sender []byte
	size := len(ev.Payload) + 160
	if isMessageEvent(ev.Name) {
		sender = messageSender(ev.Payload)
		if bytes.Contains(ev.Payload, []byte(`"clientId":`)) {
			size *= 2 // the others' form follows the sender's in the same array
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	if id := messageID(ev.Payload); !(ev.Name == tidings.EventMessageSent && id != nil && string(id) == ev.ID) {
		b = append(b, `"id":`...)
		b = appendString(b, ev.ID)
		b = append(b, ',')
	}
	b = append(b, `"name":`...)
	b = appendString(b, ev.Name)
	b = append(b, `,"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if ev.Actor != nil && !(ev.Name == tidings.EventMessageSent && ev.Actor.ID == string(sender)) {
		b = append(b, `,"actor":`...)
		if senderIsActor(ev.Name) {
			b = append(b, `{"id":`...)
			b = appendString(b, ev.Actor.ID)
			b = append(b, '}')
		} else {
			a, err := json.Marshal(ev.Actor)
			if err != nil {
				return eventBody{}, err
			}
			b = append(b, a...)
		}
	}
	if ev.ConversationID != "" {
		b = append(b, `,"conversationId":`...)
		b = appendString(b, ev.ConversationID)
	}
	if ev.UserID != "" {
		b = append(b, `,"userId":`...)
		b = appendString(b, ev.UserID)
	}
	b = append(b, `,"payload":`...)
	start := len(b)
	switch {
	case len(ev.Payload) == 0:
		b = append(b, "null"...)
	case bytes.IndexByte(ev.Payload, '\n') >= 0:
		// Stored payloads are compact JSON; a frame must hold no newline.
		var buf bytes.Buffer
		if err := json.Compact(&buf, ev.Payload); err != nil {
			return eventBody{}, err
		}
		b = append(b, buf.Bytes()...)
	default:
		b = append(b, ev.Payload...)
	}
	if isMessageEvent(ev.Name) {
		b = append(b[:start], dropTextType(b[start:])...)
	}
	b = append(b, '}')
	n := len(b)
	body := eventBody{own: b[:n:n], others: b[:n:n]}
	if sender != nil {
		body.sender = messageSender(body.own[start:]) // not to keep ev.Payload
	}
	if isMessageEvent(ev.Name) {
		if i, j := clientIDField(b[start : n-1]); i < j {
			others := append(b[n:], b[:start+i]...)
			body.others = append(others, b[start+j:n]...)
		}
	}
	return body, nil
}

// isMessageEvent says whether the payload of the events of this name is a
// message (tidings.MessagePayload).
func isMessageEvent(name string) bool {
	return name == tidings.EventMessageSent || name == tidings.EventMessageEdited || name == tidings.EventMessageDeleted
}

// messageID returns the id of the message of payload, a compact
// tidings.MessagePayload, which it begins with; nil when payload does not
// begin so (not compact, or null) or the id is escaped, which generated
// ids never are.
func messageID(payload []byte) []byte {
	const key = `{"id":"`
	if !bytes.HasPrefix(payload, []byte(key)) {
		return nil
	}
	id := payload[len(key):]
	j := bytes.IndexByte(id, '"')
	if j < 0 || bytes.IndexByte(id[:j], '\\') >= 0 {
		return nil
	}
	return id[:j:j]
}

// messageSender returns the id of the sender of the message of payload, a
// compact tidings.MessagePayload (a part of it), or nil (none, or an id
// that is escaped, which valid user ids never are). Its sender comes before any field that
// a user wrote (parts, metadata), so its first "sender" key is the
// message's: an unescaped quote is never inside a string.
func messageSender(payload []byte) []byte {
	const key = `"sender":{"id":"`
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return nil
	}
	id := payload[i+len(key):]
	j := bytes.IndexByte(id, '"')
	if j < 0 || bytes.IndexByte(id[:j], '\\') >= 0 {
		return nil
	}
	return id[:j:j]
}

// textType is how a part of the default type begins, when it has a field
// after its type (data or fileId: it always has).
const textType = `{"type":"text/plain",`

// dropTextType removes the type of the parts of type text/plain from
// payload, a compact tidings.MessagePayload, in place: absent, the type of
// a part is text/plain (docs/protocol.md, conversationMessage.sent). The
// parts are the first "parts" key (nothing a user wrote comes before but
// strings, where a quote is escaped), an array of flat objects whose type
// comes first.
func dropTextType(payload []byte) []byte {
	const parts = `,"parts":[`
	p := bytes.Index(payload, []byte(parts))
	if p < 0 || !bytes.Contains(payload[p:], []byte(textType)) {
		return payload
	}
	i := p + len(parts)
	out := i // where the next kept byte goes: i until a type is cut
	keep := func(to int) {
		if out != i {
			copy(payload[out:], payload[i:to])
		}
		out += to - i
		i = to
	}
	for i < len(payload) {
		switch payload[i] {
		case '"': // a string, kept whole
			keep(stringEnd(payload, i))
		case '{':
			if bytes.HasPrefix(payload[i:], []byte(textType)) {
				payload[out] = '{'
				out++
				i += len(textType)
			} else {
				keep(i + 1)
			}
		case ']': // the end of the parts
			keep(len(payload))
			return payload[:out]
		default:
			keep(i + 1)
		}
	}
	return payload[:out] // not JSON: as good as it came
}

// stringEnd returns the index after the end of the JSON string that
// starts at b[i], or len(b).
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		j += k
		escapes := 0
		for b[j-1-escapes] == '\\' {
			escapes++
		}
		if escapes%2 == 0 {
			return j + 1
		}
	}
	return len(b)
}

// clientIDField returns where the message's ,"clientId":"…" is in
// payload, a compact tidings.MessagePayload: payload[i:j], or i == j when
// it has none. The clientId comes before the parts and anything a user
// wrote, so a "clientId" key after the parts is not the message's.
func clientIDField(payload []byte) (i, j int) {
	const key = `,"clientId":"`
	i = bytes.Index(payload, []byte(key))
	if i < 0 {
		return 0, 0
	}
	if p := bytes.Index(payload, []byte(`,"parts":`)); p >= 0 && p < i {
		return 0, 0
	}
	if j = stringEnd(payload, i+len(key)-1); j > len(payload)-1 {
		return 0, 0 // not JSON
	}
	return i, j
}

// senderIsActor says whether the events of this name are made by the
// sender of the message of their payload when they have an actor: their
// actor is then sent as its id only (or, on a sent message, not at all).
func senderIsActor(name string) bool {
	return name == tidings.EventMessageSent || name == tidings.EventMessageEdited
}

// appendString appends s as a JSON string, as encoding/json writes it.
func appendString(b []byte, s string) []byte { return jsonenc.String(b, s) }

// updateFrame builds an update frame around an encoded event. Only the
// account, ref and silent flag differ between receivers, so the event's
// bytes are shared and the frame is a cheap concatenation. The account is
// left out when it is the default one, as most connections' only account.
// Account names are restricted (see validAccount) and need no escaping.
func updateFrame(account string, seq int64, silent bool, event []byte) []byte {
	b := make([]byte, 0, len(event)+64+len(account))
	b = append(b, `{"type":"update"`...)
	if account != defaultAccount { // absent means the default account
		b = append(b, `,"account":"`...)
		b = append(b, account...)
		b = append(b, '"')
	}
	if seq > 0 {
		b = append(b, `,"ref":"`...)
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, '"')
	}
	if silent {
		b = append(b, `,"silent":true`...)
	}
	b = append(b, `,"event":`...)
	b = append(b, event...)
	return append(b, '}')
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
	if r, ok := result.(protocol.SendResult); ok && err == nil {
		if b, err := sendAnswerFrame(id, r); err == nil {
			return b
		}
	}
	f := protocol.Frame{Type: protocol.TypeAnswer, ID: id}
	if err != nil {
		f.Error = answerError(err)
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

// answerError is the error of a failed answer.
func answerError(err error) *protocol.Error {
	e := &protocol.Error{Code: tidings.ErrorCode(err), Message: tidings.ErrorMessage(err)}
	var re *resyncError
	if asResync(err, &re) {
		e.Ref = protocol.FormatRef(re.latest)
	}
	return e
}

// encodeAnswer encodes the answer to command id in the version of the
// protocol v2 says.
func encodeAnswer(v2 bool, id string, result any, err error) []byte {
	if v2 {
		return answerFrameV2(id, result, err)
	}
	return answerFrame(id, result, err)
}

// frameSet builds the update frames of one event for its receivers, once
// per distinct (account, silent, form of the event) triple: usually two
// or three frames for all.
//
// Each form of the event is encoded when the first session that speaks
// it needs it: an audience that speaks tidings.v2 alone (the SDKs'
// protocol) costs no tidings.v1 encoding, and the other way round.
type frameSet struct {
	ev *tidings.Event
	// sender is the id of the message's sender, on message events.
	sender []byte
	frames []builtFrame
	// node, if set, encodes the event's forms through its caches of
	// stored events (and logs a failure); else encodeEvent and
	// encodeEventV2 do.
	node *Node
	// The event's tidings.v1 and tidings.v2 forms, each encoded for the
	// first session that speaks it.
	v1 lazyForm[eventBody]
	v2 lazyForm[eventBodyV2]
}

// lazyForm is one form of an event, encoded once, when first asked for.
type lazyForm[T any] struct {
	body T
	done bool
	err  error // the encoding's
}

// get returns the form, encoded the first time: by cached on node (its
// cache of stored events) if node is set, else by encode.
func (l *lazyForm[T]) get(ev *tidings.Event, node *Node, cached func(*Node, *tidings.Event) (T, error), encode func(*tidings.Event) (T, error)) (*T, error) {
	if !l.done {
		l.done = true
		if node != nil {
			l.body, l.err = cached(node, ev)
		} else {
			l.body, l.err = encode(ev)
		}
	}
	return &l.body, l.err
}

type builtFrame struct {
	account string
	silent  bool
	own     bool
	v2      bool
	frame   []byte
}

// isSender says whether user sent the message of a message event.
func (fs *frameSet) isSender(user string) bool {
	return len(fs.sender) > 0 && string(fs.sender) == user
}

// bodyV1 returns the event's tidings.v1 form, encoded once.
func (fs *frameSet) bodyV1() (*eventBody, error) {
	return fs.v1.get(fs.ev, fs.node, (*Node).encodeStoredLive, encodeEvent)
}

// bodyV2 returns the event's tidings.v2 form, encoded once.
func (fs *frameSet) bodyV2() (*eventBodyV2, error) {
	return fs.v2.get(fs.ev, fs.node, (*Node).encodeStoredV2, encodeEventV2)
}

// framesFor returns the frames of ev, whose forms are encoded as
// sessions need them: through node's caches of stored events, or without
// a cache if node is nil (live-only events).
// (Small enough to be inlined, so that the set stays on its caller's
// stack.)
func framesFor(ev *tidings.Event, node *Node) *frameSet {
	return &frameSet{ev: ev, node: node, sender: eventSender(ev)}
}

// eventSender returns the id of the sender of a message event's message,
// as encodeEvent reads it; nil on other events.
func eventSender(ev *tidings.Event) []byte {
	if !isMessageEvent(ev.Name) {
		return nil
	}
	return messageSender(ev.Payload)
}

// get returns the frame of the event for s, or nil when the event's form
// in s's protocol could not be encoded (logged by the encoder the node
// gives).
func (fs *frameSet) get(s *Session) []byte {
	silent := silentFor(fs.ev, s.user)
	own := fs.isSender(s.user)
	v2 := s.client.v2
	for _, f := range fs.frames {
		if f.account == s.account && f.silent == silent && f.own == own && f.v2 == v2 {
			return f.frame
		}
	}
	var f []byte
	if v2 {
		b, err := fs.bodyV2()
		if err != nil {
			return nil
		}
		f = updateFrameV2(s.account, fs.ev.Seq, silent, b.forUser(own))
	} else {
		b, err := fs.bodyV1()
		if err != nil {
			return nil
		}
		f = updateFrame(s.account, fs.ev.Seq, silent, b.forUser(s.user))
	}
	fs.frames = append(fs.frames, builtFrame{s.account, silent, own, v2, f})
	return f
}

package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// SubprotocolV2 is the compact version of the protocol (docs/protocol.md,
// "tidings.v2"). A client asks for it in the WebSocket handshake; one that
// asks for Subprotocol, or for none, speaks tidings.v1. Commands and
// replies are the same in both; what the server sends differs:
//
//   - an update is FrameV2 with Event (no type), its event EventV2: short
//     keys, times as integer microseconds since the Unix epoch, and the
//     events named conversationMessage.X named message.X (NameV2);
//   - the payload of a message event (sent, edited, deleted) is MessageV2;
//   - an answer is FrameV2 with ID, and OK or Err; message.send's result is
//     SendResultV2;
//   - the connection that sent a message with a clientId gets no update of
//     it, but the answer to its message.send, with the update's ref
//     (SendResultV2.Ref), in the update's place in its stream. The answer
//     goes without ref when the server could not put it there (the update
//     then follows, as in tidings.v1).
//
// Other payloads, and the results of other commands, are as in tidings.v1.
const SubprotocolV2 = "tidings.v2"

// FrameV2 is a frame the server sends in tidings.v2: an answer (ID set)
// or an update (Event set).
type FrameV2 struct {
	ID      string          `json:"id,omitempty"` // the command's id: an answer
	OK      json.RawMessage `json:"ok,omitempty"` // a successful answer's result
	Err     *Error          `json:"err,omitempty"`
	Account string          `json:"a,omitempty"` // absent: the default account
	Ref     string          `json:"r,omitempty"`
	Silent  bool            `json:"s,omitempty"`
	Event   json.RawMessage `json:"e,omitempty"` // an EventV2: an update
}

// EventV2 is an event as a tidings.v2 update carries it: Event with short
// keys, its name in its tidings.v2 form (NameV2), its time in microseconds
// since the Unix epoch, and on a message event a MessageV2 as payload.
type EventV2 struct {
	ID             string          `json:"i,omitempty"` // absent on a message.sent: its message's id
	Name           string          `json:"n"`
	Time           int64           `json:"t"`
	Actor          *ProfileV2      `json:"a,omitempty"`
	ConversationID string          `json:"c,omitempty"`
	UserID         string          `json:"u,omitempty"`
	Payload        json.RawMessage `json:"p"`
}

// ProfileV2 is a tidings.Profile with short keys. DisplayName is absent
// when empty (an actor reduced to its id).
type ProfileV2 struct {
	ID          string              `json:"i"`
	DisplayName string              `json:"n,omitempty"`
	AvatarURL   string              `json:"av,omitempty"`
	Identifier  *tidings.Identifier `json:"idf,omitempty"`
}

// PartV2 is a tidings.Part with short keys; Type is absent when it is
// text/plain (tidings.DefaultPartType).
type PartV2 struct {
	Type   string `json:"t,omitempty"`
	Name   string `json:"n,omitempty"`
	Data   string `json:"d,omitempty"`
	FileID string `json:"f,omitempty"`
	Size   int64  `json:"z,omitempty"`
}

// MessageV2 is the payload of a message event in tidings.v2 (a
// tidings.MessagePayload). It leaves out what its event says: the
// conversation (the event's), and SentAt when it is the event's time (on
// every message.sent).
type MessageV2 struct {
	ID         string          `json:"i"`
	Seq        int64           `json:"q"`
	Sender     ProfileV2       `json:"s"`
	System     bool            `json:"sys,omitempty"`
	ClientID   string          `json:"cid,omitempty"` // to the sender's connections only
	Parts      []PartV2        `json:"p"`
	Metadata   json.RawMessage `json:"m,omitempty"`
	Alert      string          `json:"al,omitempty"`
	SentAt     int64           `json:"st,omitempty"` // absent: the event's time
	EditedAt   int64           `json:"et,omitempty"`
	DeletedAt  int64           `json:"dt,omitempty"`
	ReferrerID string          `json:"rid,omitempty"`
}

// SendResultV2 is SendResult in tidings.v2, with Ref: the ref of the
// message's update, which the connection then does not get (it makes it
// from the command and this answer; see SubprotocolV2).
type SendResultV2 struct {
	ID             string          `json:"i"`
	ConversationID string          `json:"c,omitempty"`
	Seq            int64           `json:"q"`
	Sender         ProfileV2       `json:"s"`
	System         bool            `json:"sys,omitempty"`
	ClientID       string          `json:"cid,omitempty"`
	Parts          []PartV2        `json:"p,omitempty"`
	Metadata       json.RawMessage `json:"m,omitempty"`
	Alert          string          `json:"al,omitempty"`
	SentAt         int64           `json:"t"`
	EditedAt       int64           `json:"et,omitempty"`
	DeletedAt      int64           `json:"dt,omitempty"`
	Duplicate      bool            `json:"dup,omitempty"`
	Ref            string          `json:"r,omitempty"`
}

const (
	messagePrefixV1 = "conversationMessage."
	messagePrefixV2 = "message."
)

// NameV2 returns the tidings.v2 name of an event: conversationMessage.X is
// message.X, other names are the same.
func NameV2(name string) string {
	if rest, ok := strings.CutPrefix(name, messagePrefixV1); ok {
		return messagePrefixV2 + rest
	}
	return name
}

// NameV1 returns the name of an event from its tidings.v2 name (the
// inverse of NameV2).
func NameV1(name string) string {
	if rest, ok := strings.CutPrefix(name, messagePrefixV2); ok {
		return messagePrefixV1 + rest
	}
	return name
}

// Micros returns t in microseconds since the Unix epoch; the zero time
// is 0.
func Micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// FromMicros returns the time of us microseconds since the Unix epoch, in
// UTC; 0 is the zero time.
func FromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

func microsPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return Micros(*t)
}

func timePtr(us int64) *time.Time {
	if us == 0 {
		return nil
	}
	t := FromMicros(us)
	return &t
}

// NewProfileV2 returns p with short keys.
func NewProfileV2(p tidings.Profile) ProfileV2 {
	return ProfileV2{ID: p.ID, DisplayName: p.DisplayName, AvatarURL: p.AvatarURL, Identifier: p.Identifier}
}

// Profile returns the tidings.Profile of p.
func (p ProfileV2) Profile() tidings.Profile {
	return tidings.Profile{ID: p.ID, DisplayName: p.DisplayName, AvatarURL: p.AvatarURL, Identifier: p.Identifier}
}

// PartsV2 returns parts with short keys (nil for nil).
func PartsV2(parts []tidings.Part) []PartV2 {
	if parts == nil {
		return nil
	}
	out := make([]PartV2, len(parts))
	for i, p := range parts {
		out[i] = PartV2{Type: p.Type, Name: p.Name, Data: p.Data, FileID: p.FileID, Size: p.Size}
		if p.Type == tidings.DefaultPartType {
			out[i].Type = ""
		}
	}
	return out
}

// PartsV1 returns the parts of parts, with their type filled in (nil for
// nil).
func PartsV1(parts []PartV2) []tidings.Part {
	if parts == nil {
		return nil
	}
	out := make([]tidings.Part, len(parts))
	for i, p := range parts {
		out[i] = tidings.Part{Type: p.Type, Name: p.Name, Data: p.Data, FileID: p.FileID, Size: p.Size}
		if p.Type == "" {
			out[i].Type = tidings.DefaultPartType
		}
	}
	return out
}

// NewMessageV2 returns the tidings.v2 payload of a message event whose
// time is eventTime; withClientID keeps the message's clientId (for its
// sender's connections).
func NewMessageV2(p tidings.MessagePayload, eventTime time.Time, withClientID bool) MessageV2 {
	m := p.Message
	parts := PartsV2(m.Parts)
	if parts == nil {
		parts = []PartV2{}
	}
	out := MessageV2{ID: m.ID, Seq: m.Seq, Sender: NewProfileV2(m.Sender), System: m.System, Parts: parts,
		Metadata: m.Metadata, Alert: m.Alert, EditedAt: microsPtr(m.EditedAt), DeletedAt: microsPtr(m.DeletedAt),
		ReferrerID: p.ReferrerID}
	if withClientID {
		out.ClientID = m.ClientID
	}
	if !m.SentAt.IsZero() && !m.SentAt.Equal(eventTime) {
		out.SentAt = Micros(m.SentAt)
	}
	return out
}

// Payload returns the message of m, an event's payload, completed with
// what the event says: its conversation and time.
func (m MessageV2) Payload(conversationID string, eventTime time.Time) tidings.MessagePayload {
	msg := &tidings.Message{ID: m.ID, ConversationID: conversationID, Seq: m.Seq, Sender: m.Sender.Profile(), System: m.System,
		ClientID: m.ClientID, Parts: PartsV1(m.Parts), Metadata: m.Metadata, Alert: m.Alert, SentAt: FromMicros(m.SentAt),
		EditedAt: timePtr(m.EditedAt), DeletedAt: timePtr(m.DeletedAt)}
	if msg.Parts == nil {
		msg.Parts = []tidings.Part{}
	}
	if m.SentAt == 0 {
		msg.SentAt = eventTime.UTC()
	}
	return tidings.MessagePayload{Message: msg, ReferrerID: m.ReferrerID}
}

// V2 returns r in its tidings.v2 form, answering an update of ref (""
// when the update follows).
func (r SendResult) V2(ref string) SendResultV2 {
	return SendResultV2{ID: r.ID, ConversationID: r.ConversationID, Seq: r.Seq, Sender: NewProfileV2(r.Sender),
		System: r.System, ClientID: r.ClientID, Parts: PartsV2(r.Parts), Metadata: r.Metadata, Alert: r.Alert,
		SentAt: Micros(r.SentAt), EditedAt: microsPtr(r.EditedAt), DeletedAt: microsPtr(r.DeletedAt),
		Duplicate: r.Duplicate, Ref: ref}
}

// V1 returns r in its tidings.v1 form, and the ref of r.
func (r SendResultV2) V1() (SendResult, string) {
	return SendResult{ID: r.ID, ConversationID: r.ConversationID, Seq: r.Seq, Sender: r.Sender.Profile(),
		System: r.System, ClientID: r.ClientID, Parts: PartsV1(r.Parts), Metadata: r.Metadata, Alert: r.Alert,
		SentAt: FromMicros(r.SentAt), EditedAt: timePtr(r.EditedAt), DeletedAt: timePtr(r.DeletedAt),
		Duplicate: r.Duplicate}, r.Ref
}

// IsMessageEvent says whether the payload of the events of this name (in
// either form) is a message: a tidings.MessagePayload, or MessageV2.
func IsMessageEvent(name string) bool {
	switch NameV1(name) {
	case tidings.EventMessageSent, tidings.EventMessageEdited, tidings.EventMessageDeleted:
		return true
	}
	return false
}

// DecodeV2 reads a frame the server sent in tidings.v2 and returns it as
// the tidings.v1 frame that says the same: an answer, or an update whose
// event is in its tidings.v1 form (Event, with a tidings.MessagePayload
// on message events). Results are left as they are (see SendResultV2).
func DecodeV2(line []byte) (Frame, error) {
	var f FrameV2
	if err := json.Unmarshal(line, &f); err != nil {
		return Frame{}, err
	}
	switch {
	case f.ID != "":
		return Frame{Type: TypeAnswer, ID: f.ID, Result: f.OK, Error: f.Err}, nil
	case len(f.Event) == 0:
		return Frame{}, errors.New("protocol: a tidings.v2 frame with neither id nor event")
	}
	var e EventV2
	if err := json.Unmarshal(f.Event, &e); err != nil {
		return Frame{}, err
	}
	ev := Event{ID: e.ID, Name: NameV1(e.Name), Time: FromMicros(e.Time), ConversationID: e.ConversationID,
		UserID: e.UserID, Payload: e.Payload}
	if e.Actor != nil {
		a := e.Actor.Profile()
		ev.Actor = &a
	}
	if IsMessageEvent(e.Name) && string(e.Payload) != "null" {
		var m MessageV2
		if err := json.Unmarshal(e.Payload, &m); err != nil {
			return Frame{}, err
		}
		p := m.Payload(e.ConversationID, ev.Time)
		ev.ID = EventID(ev.Name, ev.ID, m.ID)
		raw, err := json.Marshal(messageV1{p, p.Message.SentAt})
		if err != nil {
			return Frame{}, err
		}
		ev.Payload = raw
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: TypeUpdate, Account: f.Account, Ref: f.Ref, Silent: f.Silent, Event: raw}, nil
}

// messageV1 encodes a message payload in its tidings.v1 form, with its
// sentAt always (tidings.MessagePayload leaves it out of a sent message's).
type messageV1 struct {
	tidings.MessagePayload
	SentAt time.Time
}

func (m messageV1) MarshalJSON() ([]byte, error) {
	b, err := m.MessagePayload.MarshalJSON()
	if err != nil || m.Message == nil || m.ReferrerID != "" || len(b) < 2 {
		return b, err
	}
	t, err := json.Marshal(m.SentAt)
	if err != nil {
		return nil, err
	}
	out := append(b[:len(b)-1:len(b)-1], `,"sentAt":`...)
	out = append(out, t...)
	return append(out, '}'), nil
}

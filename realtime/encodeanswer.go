package realtime

import (
	"strconv"
	"time"

	"github.com/tidings/tidings/internal/jsonenc"
	"github.com/tidings/tidings/protocol"
)

// The answer to a message.send is written once per message sent, so it is
// encoded by hand, as json.Marshal writes it (TestSendAnswersEncodeAsJSON
// compares them): the fields a new message's answer holds directly, the
// rarer ones (parts, metadata, an identifier: a server that changed them,
// or a duplicate) through json.Marshal.

// sendAnswerFrame encodes the tidings.v1 answer to command id with r, as
// answerFrame does.
func sendAnswerFrame(id string, r protocol.SendResult) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"type":"answer","id":`...)
	b = appendString(b, id)
	b = append(b, `,"result":{"id":`...)
	b = appendString(b, r.ID)
	if r.ConversationID != "" {
		b = append(b, `,"conversationId":`...)
		b = appendString(b, r.ConversationID)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = r.Sender.AppendJSON(append(b, `,"sender":`...))
	var err error
	if r.System {
		b = append(b, `,"system":true`...)
	}
	if r.ClientID != "" {
		b = append(b, `,"clientId":`...)
		b = appendString(b, r.ClientID)
	}
	if len(r.Parts) > 0 {
		if b, err = appendJSON(b, `,"parts":`, r.Parts); err != nil {
			return nil, err
		}
	}
	if len(r.Metadata) > 0 {
		if b, err = appendJSON(b, `,"metadata":`, r.Metadata); err != nil {
			return nil, err
		}
	}
	if r.Alert != "" {
		b = append(b, `,"alert":`...)
		b = appendString(b, r.Alert)
	}
	b = appendTime(b, `,"sentAt":`, r.SentAt)
	if r.EditedAt != nil {
		b = appendTime(b, `,"editedAt":`, *r.EditedAt)
	}
	if r.DeletedAt != nil {
		b = appendTime(b, `,"deletedAt":`, *r.DeletedAt)
	}
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, "}}"...), nil
}

// sendAnswerFrameV2 encodes the tidings.v2 answer to command id with r, as
// answerFrameV2 does.
func sendAnswerFrameV2(id string, r protocol.SendResultV2) ([]byte, error) {
	b := make([]byte, 0, 192)
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"ok":{"i":`...)
	b = appendString(b, r.ID)
	if r.ConversationID != "" {
		b = append(b, `,"c":`...)
		b = appendString(b, r.ConversationID)
	}
	b = append(b, `,"q":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"s":`...)
	b, err := appendProfileV2(b, r.Sender)
	if err != nil {
		return nil, err
	}
	if r.System {
		b = append(b, `,"sys":true`...)
	}
	if r.ClientID != "" {
		b = append(b, `,"cid":`...)
		b = appendString(b, r.ClientID)
	}
	if len(r.Parts) > 0 {
		if b, err = appendJSON(b, `,"p":`, r.Parts); err != nil {
			return nil, err
		}
	}
	if len(r.Metadata) > 0 {
		if b, err = appendJSON(b, `,"m":`, r.Metadata); err != nil {
			return nil, err
		}
	}
	if r.Alert != "" {
		b = append(b, `,"al":`...)
		b = appendString(b, r.Alert)
	}
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, r.SentAt, 10)
	if r.EditedAt != 0 {
		b = append(b, `,"et":`...)
		b = strconv.AppendInt(b, r.EditedAt, 10)
	}
	if r.DeletedAt != 0 {
		b = append(b, `,"dt":`...)
		b = strconv.AppendInt(b, r.DeletedAt, 10)
	}
	if r.Duplicate {
		b = append(b, `,"dup":true`...)
	}
	if r.Ref != "" {
		b = append(b, `,"r":`...)
		b = appendString(b, r.Ref)
	}
	return append(b, "}}"...), nil
}

// appendJSON appends key and v as json.Marshal writes v.
func appendJSON(b []byte, key string, v any) ([]byte, error) {
	return jsonenc.Value(append(b, key...), v)
}

// appendTime appends key and t as json.Marshal writes a time.Time.
func appendTime(b []byte, key string, t time.Time) []byte {
	return jsonenc.Time(append(b, key...), t)
}

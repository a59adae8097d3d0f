package client

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Socket runs commands on the open realtime connection, which answers
// faster than the REST API, as one account's user. Its methods return
// ErrNotConnected when there is no connection or the account is not
// authenticated on it, ErrNotLoggedIn when the account is logged out,
// ErrConnectionLost when the connection ends before the answer, and the
// server's *Error when the command fails.
type Socket struct{ u calls }

// Socket returns the commands of the realtime connection, as the user of
// the account (of the default account, for a Client).
func (u *calls) Socket() Socket { return Socket{*u} }

func (s Socket) command(ctx context.Context, name string, args, out any) error {
	cn, err := s.u.c.current()
	if err != nil {
		return err
	}
	a := s.u.account()
	if a == nil {
		return ErrNotLoggedIn
	}
	if !a.Connected() {
		return ErrNotConnected
	}
	raw, err := cn.command(ctx, a.name, name, args)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// SendMessage sends a message. Sending again with the same m.ClientID
// returns the first message instead of sending a new one: give one to
// retry safely after ErrConnectionLost. Calls from several goroutines are
// pipelined on the connection, none waiting for another's answer: the
// server commits them together, in the order their commands reach it.
func (s Socket) SendMessage(ctx context.Context, conversationID string, m tidings.NewMessage) (*tidings.Message, error) {
	parts, err := json.Marshal(m.Parts)
	if err != nil {
		return nil, err
	}
	args := protocol.SendArgs{ConversationID: conversationID, ClientID: m.ClientID, Parts: parts, Metadata: m.Metadata, Alert: m.Alert}
	cn, err := s.u.c.current()
	if err != nil {
		return nil, err
	}
	a := s.u.account()
	if a == nil {
		return nil, ErrNotLoggedIn
	}
	if !a.Connected() {
		return nil, ErrNotConnected
	}
	var own *ownSend
	if cn.v2 && m.ClientID != "" {
		// The answer may stand for the message's update (conn.ownEcho).
		own = &ownSend{account: wireAccount(a.name), conversationID: conversationID,
			nm: tidings.NewMessage{ClientID: m.ClientID, Parts: slices.Clone(m.Parts), Metadata: bytes.Clone(m.Metadata), Alert: m.Alert}}
	}
	raw, err := cn.commandWith(ctx, a.name, protocol.CmdSend, args, own)
	if err != nil {
		return nil, err
	}
	var out protocol.SendResult
	if cn.v2 {
		var r2 protocol.SendResultV2
		err = json.Unmarshal(raw, &r2)
		out, _ = r2.V1()
	} else {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		return nil, err
	}
	// The answer leaves out what the command said.
	return out.Message(conversationID, m), nil
}

// MarkDelivered moves the user's delivered mark to seq (0: the newest
// message).
func (s Socket) MarkDelivered(ctx context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error) {
	var out tidings.MessageStatus
	if err := s.command(ctx, protocol.CmdMarkDelivered, protocol.MarkArgs{ConversationID: conversationID, Seq: seq}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MarkRead moves the user's read mark (and delivered mark) to seq (0: the
// newest message).
func (s Socket) MarkRead(ctx context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error) {
	var out tidings.MessageStatus
	if err := s.command(ctx, protocol.CmdMarkRead, protocol.MarkArgs{ConversationID: conversationID, Seq: seq}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StartTyping tells the other participants that the user is typing. The
// indicator ends by itself after a few seconds: call it again while the
// user keeps typing. Sending a message ends it too.
func (s Socket) StartTyping(ctx context.Context, conversationID string) error {
	return s.command(ctx, protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conversationID}, nil)
}

// StopTyping ends the typing indicator.
func (s Socket) StopTyping(ctx context.Context, conversationID string) error {
	return s.command(ctx, protocol.CmdTypingStop, protocol.TypingArgs{ConversationID: conversationID}, nil)
}

// Presence says who among a conversation's participants is online now
// (the user included) and who is typing in it. Presence and typing events
// keep that picture current afterwards.
func (s Socket) Presence(ctx context.Context, conversationID string) (online, typing []string, err error) {
	var out protocol.PresenceResult
	if err := s.command(ctx, protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: conversationID}, &out); err != nil {
		return nil, nil, err
	}
	return out.Online, out.Typing, nil
}

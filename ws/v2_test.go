package ws_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// messageOf returns the message of an update about a message, completed
// with what its event says.
func messageOf(t *testing.T, u update) *tidings.Message {
	t.Helper()
	var p tidings.MessagePayload
	if err := json.Unmarshal(u.ev.Payload, &p); err != nil || p.Message == nil {
		t.Fatalf("%s: %v", u.ev.Payload, err)
	}
	p.Complete(&u.ev)
	return p.Message
}

// sendResultV2 reads the answer to a message.send in tidings.v2.
func sendResultV2(t *testing.T, f protocol.Frame) (protocol.SendResult, string) {
	t.Helper()
	if f.Error != nil {
		t.Fatalf("message.send: %+v", f.Error)
	}
	var r protocol.SendResultV2
	if err := json.Unmarshal(f.Result, &r); err != nil {
		t.Fatalf("%s: %v", f.Result, err)
	}
	return r.V1()
}

// "tidings.v1" stays as it was for a client that asks for it: its frames,
// byte for byte, the echo of its own sends, and answers without ref,
// while a tidings.v2 client shares the conversation.
func TestV1IsUnchanged(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob", "carol")
	alice, bob, carol := dial(t, s), dial(t, s), dialV2(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	carol.auth("", s.token("a", "carol"), protocol.AuthArgs{})

	ans := alice.command("", protocol.CmdSend, protocol.SendArgs{ConversationID: conv, ClientID: "c-1",
		Parts: json.RawMessage(`[{"type":"text/plain","data":"hello"}]`)})
	raw, _ := json.Marshal(ans)
	if ans.Error != nil || !strings.HasPrefix(string(raw), `{"type":"answer","id":`) || strings.Contains(string(ans.Result), `"ref"`) {
		t.Fatalf("answer %s", raw)
	}
	var r protocol.SendResult
	if err := json.Unmarshal(ans.Result, &r); err != nil || r.ID == "" || r.Seq != 1 {
		t.Fatalf("result %s: %v", ans.Result, err)
	}
	echo := alice.nextNamed(tidings.EventMessageSent)
	u := bob.nextNamed(tidings.EventMessageSent)
	sender := `{"id":"alice","displayName":"` + messageOf(t, u).Sender.DisplayName + `"}`
	at := u.ev.Time.UTC().Format(time.RFC3339Nano)
	want := `{"type":"update","ref":"` + u.Ref + `","event":{"name":"conversationMessage.sent","time":"` + at +
		`","conversationId":"` + conv + `","payload":{"id":"` + r.ID + `","seq":1,"sender":` + sender +
		`,"parts":[{"data":"hello"}]}}}`
	if string(u.raw) != want {
		t.Errorf("bob's update\n%s\nwant\n%s", u.raw, want)
	}
	wantEcho := `{"type":"update","ref":"` + u.Ref + `","silent":true,"event":{"name":"conversationMessage.sent","time":"` + at +
		`","conversationId":"` + conv + `","payload":{"id":"` + r.ID + `","seq":1,"sender":` + sender +
		`,"clientId":"c-1","parts":[{"data":"hello"}]}}}`
	if string(echo.raw) != wantEcho {
		t.Errorf("alice's echo\n%s\nwant\n%s", echo.raw, wantEcho)
	}
	// The tidings.v2 member of the conversation got the same update.
	if v2 := carol.nextNamed(tidings.EventMessageSent); v2.Ref != u.Ref || !strings.HasPrefix(string(v2.raw), `{"r":"`) {
		t.Errorf("carol's update %s", v2.raw)
	}
	// Live-only updates too.
	bob.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv})
	typing := alice.nextNamed(protocol.EventTyping)
	if !strings.HasPrefix(string(typing.raw), `{"type":"update","silent":true,"event":{"id":"`) {
		t.Errorf("typing %s", typing.raw)
	}
}

// A tidings.v2 connection gets everything a client needs: the update
// to the others, the same message as tidings.v1 says it; its own device
// elsewhere gets the update with the clientId; the connection that sent
// it gets no update but the answer, with the update's ref, and makes the
// message from the answer and its command.
func TestV2CarriesEverything(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob", "carol")
	alice, aliceTablet, bob, carol := dialV2(t, s), dialV2(t, s), dialV2(t, s), dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	aliceTablet.auth("", s.token("a", "alice"), protocol.AuthArgs{Device: "tablet"})
	bob.auth("work", s.token("a", "bob"), protocol.AuthArgs{})
	carol.auth("", s.token("a", "carol"), protocol.AuthArgs{})

	nm := tidings.NewMessage{ClientID: "alice-1", Parts: []tidings.Part{{Type: "text/plain", Data: "hello"},
		{Type: "image/png", Name: "cat.png", Data: "aGk="}}, Metadata: json.RawMessage(`{"k":1}`)}
	parts, _ := json.Marshal(nm.Parts)
	ans := alice.command("", protocol.CmdSend, protocol.SendArgs{ConversationID: conv, ClientID: nm.ClientID,
		Parts: parts, Metadata: nm.Metadata})
	var answer []byte
	for _, f := range alice.received() {
		if strings.HasPrefix(string(f), `{"id":"`) && strings.Contains(string(f), `"i":`) {
			answer = f
		}
	}
	r, ref := sendResultV2(t, ans)
	v1 := carol.nextNamed(tidings.EventMessageSent)
	want := messageOf(t, v1) // as tidings.v1 says it
	if ref == "" || ref != v1.Ref {
		t.Fatalf("the answer's ref %q, the update's %q: %s", ref, v1.Ref, answer)
	}
	if strings.Contains(string(answer), `"type"`) {
		t.Errorf("answer %s", answer)
	}

	u := bob.nextNamed(tidings.EventMessageSent)
	t.Logf("tidings.v2 update %s\nanswer %s", u.raw, answer)
	for _, absent := range []string{`"type"`, `"cid"`, `"clientId"`, `"conversationMessage.`, `"st"`, `"text/plain"`} {
		if strings.Contains(string(u.raw), absent) {
			t.Errorf("bob's update has %s: %s", absent, u.raw)
		}
	}
	if u.Account != "work" || u.Ref != v1.Ref || u.Silent || u.ev.ID != want.ID {
		t.Errorf("bob's update %s: %+v", u.raw, u.Frame)
	}
	got := messageOf(t, u)
	want.ClientID = ""
	if g, w := fmt.Sprintf("%+v", *got), fmt.Sprintf("%+v", *want); g != w {
		t.Errorf("tidings.v2 says\n%s\ntidings.v1\n%s", g, w)
	}
	if got.Seq != 1 || got.Sender.ID != "alice" || got.Sender.DisplayName == "" || !got.SentAt.Equal(v1.ev.Time) ||
		len(got.Parts) != 2 || got.Parts[1].Name != "cat.png" || string(got.Metadata) != `{"k":1}` {
		t.Errorf("message %+v", got)
	}

	tablet := aliceTablet.nextNamed(tidings.EventMessageSent)
	want.ClientID = "alice-1"
	if g, w := fmt.Sprintf("%+v", *messageOf(t, tablet)), fmt.Sprintf("%+v", *want); g != w || !tablet.Silent {
		t.Errorf("alice's tablet got\n%s\nwant\n%s", g, w)
	}
	// The answer and the command make the message.
	if g, w := fmt.Sprintf("%+v", *r.Message(conv, nm)), fmt.Sprintf("%+v", *want); g != w {
		t.Errorf("the answer makes\n%s\nwant\n%s", g, w)
	}

	// No update of it to alice: her next is bob's message, which came
	// after it.
	bob.command("work", protocol.CmdSend, protocol.SendArgs{ConversationID: conv,
		Parts: json.RawMessage(`[{"type":"text/plain","data":"hi"}]`)})
	if next := alice.nextNamed(tidings.EventMessageSent); next.text() != "hi" {
		t.Errorf("alice got %s", next.raw)
	}

	// Edited, deleted, read, typing: every event in the short form.
	ctx := s.as("a", "alice")
	if _, err := s.msgs.EditMessage(ctx, conv, r.ID, tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", Data: "hello!"}}}); err != nil {
		t.Fatal(err)
	}
	edited := bob.nextNamed(tidings.EventMessageEdited)
	if m := messageOf(t, edited); m.Parts[0].Data != "hello!" || m.EditedAt == nil || !m.SentAt.Equal(got.SentAt) || m.ID != r.ID {
		t.Errorf("edited %s: %+v", edited.raw, m)
	}
	if !strings.Contains(string(edited.raw), `"n":"message.edited"`) {
		t.Errorf("edited %s", edited.raw)
	}
	if _, err := s.msgs.DeleteMessage(ctx, conv, r.ID); err != nil {
		t.Fatal(err)
	}
	deleted := bob.nextNamed(tidings.EventMessageDeleted)
	if m := messageOf(t, deleted); m.DeletedAt == nil || len(m.Parts) != 0 || m.ID != r.ID {
		t.Errorf("deleted %s: %+v", deleted.raw, m)
	}
	alice.command("", protocol.CmdMarkRead, protocol.MarkArgs{ConversationID: conv})
	read := bob.nextNamed(tidings.EventMessageRead)
	var status tidings.StatusPayload
	if err := json.Unmarshal(read.ev.Payload, &status); err != nil || status.ProfileID != "alice" || status.Seq != 2 || read.ev.Time.IsZero() {
		t.Errorf("read %s: %+v", read.raw, status)
	}
	bob.command("work", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv})
	typing := alice.nextNamed(protocol.EventTyping)
	if !strings.HasPrefix(string(typing.raw), `{"s":true,"e":{"i":"`) || typing.ev.ConversationID != conv {
		t.Errorf("typing %s", typing.raw)
	}
	// An error answer.
	if f := alice.command("", protocol.CmdSend, protocol.SendArgs{ConversationID: "nope", ClientID: "x",
		Parts: json.RawMessage(`[{"type":"text/plain","data":"x"}]`)}); f.Error == nil || f.Error.Code == "" {
		t.Errorf("answer %+v", f)
	}
}

// The answers to a tidings.v2 connection's sends take the place of their
// messages' updates in its stream: with the updates of the messages that
// others send meanwhile, every message of the conversation comes once,
// in order of ref.
func TestV2AnswersInPlaceOfUpdates(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	alice, bob := dialV2(t, s), dialV2(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})

	const n = 40
	answers := make([]chan protocol.Frame, n)
	alice.mu.Lock()
	for i := range answers {
		answers[i] = make(chan protocol.Frame, 1)
		alice.answers[fmt.Sprintf("s%d", i)] = answers[i]
	}
	alice.mu.Unlock()
	done := make(chan struct{})
	go func() { // bob sends meanwhile, without a clientId
		defer close(done)
		for i := range n / 2 {
			if _, _, err := s.msgs.SendMessage(s.as("a", "bob"), conv, tidings.NewMessage{
				Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint("bob ", i)}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n { // pipelined
		raw, _ := json.Marshal(protocol.SendArgs{ConversationID: conv, ClientID: fmt.Sprint("a-", i),
			Parts: json.RawMessage(fmt.Sprintf(`[{"type":"text/plain","data":"alice %d"}]`, i))})
		alice.write(protocol.Frame{Type: protocol.TypeCommand, ID: fmt.Sprintf("s%d", i), Command: protocol.CmdSend, Data: raw})
	}
	withRef := 0
	for i := range answers {
		select {
		case f := <-answers[i]:
			if _, ref := sendResultV2(t, f); ref != "" {
				withRef++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to send %d", i)
		}
	}
	<-done
	// The last message, after which nothing comes.
	bob.command("", protocol.CmdSend, protocol.SendArgs{ConversationID: conv, Parts: json.RawMessage(`[{"type":"text/plain","data":"end"}]`)})
	for alice.nextNamed(tidings.EventMessageSent).text() != "end" {
	}
	var refs []int64
	seqs := map[int64]bool{}
	for _, raw := range alice.received() {
		f, err := protocol.DecodeV2(raw)
		if err != nil {
			t.Fatal(err)
		}
		var ref string
		var seq int64
		switch {
		case f.Type == protocol.TypeUpdate:
			var ev tidings.Event
			json.Unmarshal(f.Event, &ev)
			if ev.Name != tidings.EventMessageSent {
				continue
			}
			ref, seq = f.Ref, messageOf(t, update{Frame: f, ev: ev}).Seq
		case strings.HasPrefix(f.ID, "s"):
			var r protocol.SendResultV2
			json.Unmarshal(f.Result, &r)
			ref, seq = r.Ref, r.Seq
			if ref == "" {
				continue // its update comes
			}
		default:
			continue
		}
		n, _ := protocol.ParseRef(ref)
		refs = append(refs, n)
		if seqs[seq] {
			t.Errorf("message %d came twice", seq)
		}
		seqs[seq] = true
	}
	if len(seqs) != n+n/2+1 {
		t.Errorf("%d messages of %d came", len(seqs), n+n/2+1)
	}
	for i := 1; i < len(refs); i++ {
		if refs[i] <= refs[i-1] {
			t.Fatalf("refs out of order: %v", refs)
		}
	}
	t.Logf("%d of %d answers took the place of their update", withRef, n)
	if withRef == 0 {
		t.Errorf("no answer took the place of its update")
	}
}

// A message whose answer stood for its update is replayed, whole, to a
// connection that resumes before it.
func TestV2ReplaysOwnMessage(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	alice := dialV2(t, s)
	res := alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	_, ref := sendResultV2(t, alice.command("", protocol.CmdSend, protocol.SendArgs{ConversationID: conv, ClientID: "c-1",
		Parts: json.RawMessage(`[{"type":"text/plain","data":"hello"}]`)}))
	if ref == "" {
		t.Fatal("the answer has no ref")
	}
	again := dialV2(t, s)
	again.auth("", s.token("a", "alice"), protocol.AuthArgs{ResumeAfter: res.ResumedAfter})
	u := again.nextNamed(tidings.EventMessageSent)
	if m := messageOf(t, u); u.Ref != ref || m.ClientID != "c-1" || m.Parts[0].Data != "hello" || !u.Silent {
		t.Errorf("replayed %s", u.raw)
	}
}

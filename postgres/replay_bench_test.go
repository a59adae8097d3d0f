package postgres

import (
	"fmt"
	"testing"

	"github.com/tidings/tidings"
)

// BenchmarkReplayRead reads what a device missed, as a replay does in a
// reconnect storm: 40 messages of two senders in one conversation, read in
// one UserEvents call. One op is the read of the 40.
func BenchmarkReplayRead(b *testing.B) {
	db := openDB(b, nil)
	if _, err := NewAppService(db).CreateApp(serverCtx("a"), "a", "app a"); err != nil {
		b.Fatal(err)
	}
	users := NewUserService(db)
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := users.CreateUser(serverCtx("a"), &tidings.User{ID: id, DisplayName: "Someone called " + id}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}}); err != nil {
		b.Fatal(err)
	}
	log := NewEventLog(db)
	after, err := log.LastEventSeq(serverCtx("a"))
	if err != nil {
		b.Fatal(err)
	}
	msgs := NewMessageService(db, 0)
	for i := range 40 {
		sender := []string{"alice", "bob"}[i%2]
		if _, _, err := msgs.SendMessage(userCtx("a", sender), "c", tidings.NewMessage{
			Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint("message ", i, " of a chat, about 64 bytes long........")}}}); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		evs, err := log.UserEvents(serverCtx("a"), "a", "carol", after, 256)
		if err != nil || len(evs) != 40 {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
}

package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// TestDeactivateAndRevoke: the app's server deactivates (bans) a user and
// reactivates them, which everyone who sees the profile learns; and
// revokes the user's tokens issued until now, which only it sees.
func TestDeactivateAndRevoke(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	srv := server("a")

	_, err := f.Users.DeactivateUser(as("a", "alice"), "bob")
	wantCode(t, "a user deactivates another", err, tidings.EForbidden)
	_, err = f.Users.DeactivateUser(srv, "nobody")
	wantCode(t, "deactivate an unknown user", err, tidings.ENotFound)
	_, err = f.Users.RevokeTokens(as("a", "bob"), "bob")
	wantCode(t, "a user revokes tokens", err, tidings.EForbidden)

	after := f.lastSeq()
	u := must[*tidings.User](t)(f.Users.DeactivateUser(srv, "bob"))
	if u.DeactivatedAt == nil {
		t.Fatalf("deactivated bob: %+v", u)
	}
	must[*tidings.User](t)(f.Users.DeactivateUser(srv, "bob")) // again: nothing changes
	seen := must[*tidings.User](t)(f.Users.FindUserByID(as("a", "alice"), "bob"))
	if seen.DeactivatedAt == nil || !seen.DeactivatedAt.Equal(*u.DeactivatedAt) {
		t.Errorf("alice sees bob's deactivation as %v, want %v", seen.DeactivatedAt, u.DeactivatedAt)
	}
	if err := seen.AcceptsToken(time.Now()); tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("a deactivated user's token: %v, want unauthenticated", err)
	}
	evs := f.stream("a", "alice", after)
	wantNames(t, "alice's stream after bob's deactivation", evs, tidings.EventProfileUpdate+"/bob")
	var p tidings.ProfilePayload
	if len(evs) == 1 {
		if err := unmarshal(evs[0].Payload, &p); err != nil || p.User == nil || p.User.DeactivatedAt == nil || evs[0].Actor != nil {
			t.Errorf("the deactivation's event: actor %+v, payload %s", evs[0].Actor, evs[0].Payload)
		}
	}
	u = must[*tidings.User](t)(f.Users.ReactivateUser(srv, "bob"))
	if u.DeactivatedAt != nil || u.AcceptsToken(time.Now()) != nil {
		t.Errorf("reactivated bob: %+v", u)
	}
	wantNames(t, "alice's stream after bob's reactivation", f.stream("a", "alice", after),
		tidings.EventProfileUpdate+"/bob", tidings.EventProfileUpdate+"/bob")

	// Revocation: tokens issued until now are refused, those of the next
	// second on are accepted; users do not see when.
	before := time.Now()
	after = f.lastSeq()
	u = must[*tidings.User](t)(f.Users.RevokeTokens(srv, "bob"))
	nb := u.TokensNotBefore
	if nb == nil || !nb.Equal(nb.Truncate(time.Second)) || !nb.After(before) {
		t.Fatalf("bob's tokens not before %v, want a whole second after %v", nb, before)
	}
	for what, iat := range map[string]time.Time{"before": before, "no iat": {}, "just before": nb.Add(-time.Second)} {
		if err := u.AcceptsToken(iat); tidings.ErrorCode(err) != tidings.EUnauthenticated {
			t.Errorf("a token issued %s the revocation: %v, want unauthenticated", what, err)
		}
	}
	if err := u.AcceptsToken(*nb); err != nil {
		t.Errorf("a token issued at the not-before time: %v", err)
	}
	if got := must[*tidings.User](t)(f.Users.FindUserByID(srv, "bob")); got.TokensNotBefore == nil || !got.TokensNotBefore.Equal(*nb) {
		t.Errorf("the server reads bob's not-before as %v, want %v", got.TokensNotBefore, nb)
	}
	if got := must[*tidings.User](t)(f.Users.FindUserByID(as("a", "bob"), "bob")); got.TokensNotBefore != nil {
		t.Errorf("bob reads his own not-before %v: only the server may", got.TokensNotBefore)
	}
	if evs := f.stream("a", "alice", after); len(evs) != 0 {
		t.Errorf("a revocation emitted %q", describe(evs))
	}
	// A later profile change does not carry it.
	must[*tidings.User](t)(f.Users.UpdateUser(srv, "bob", tidings.UserUpdate{DisplayName: ptr("Bob")}))
	for _, e := range f.stream("a", "alice", after) {
		if strings.Contains(string(e.Payload), "tokensNotBefore") {
			t.Errorf("%s carries the not-before: %s", e.Name, e.Payload)
		}
	}
}

// TestDeleteUser: deleting a user leaves nothing that names them where the
// store's readers can look: not their profile, participations or marks,
// not the events of other users' streams (actor, sender, payloads), not
// the history; their messages erased or anonymized as asked, each
// conversation they were in told that a deleted user left it.
func TestDeleteUser(t *testing.T, newStores Factory) {
	for _, mode := range []tidings.MessagesOfDeleted{tidings.EraseMessages, tidings.AnonymizeMessages} {
		t.Run(string(mode), func(t *testing.T) { testDeleteUser(t, newStores, mode) })
	}
}

func testDeleteUser(t *testing.T, newStores Factory, mode tidings.MessagesOfDeleted) {
	f := newFixture(t, newStores)
	const zed = "zed-9q"
	f.mkUsers("a", "alice", "bob", "carol", zed)
	f.mkUsers("b", zed)
	srv := server("a")
	zedCtx := as("a", zed)
	must[*tidings.User](t)(f.Users.UpdateUser(srv, zed, tidings.UserUpdate{DisplayName: ptr("Zed Q"), Identifier: &tidings.Identifier{Value: "zq@example.com", Kind: "email"}}))

	// zed owns c, where they talk, edit, delete, mark, add and promote.
	f.mkConv("a", zed, tidings.NewConversation{ID: "c"}, "alice", "bob")
	m1 := f.send("a", zed, "c", "first from Z")
	m2 := f.send("a", zed, "c", "second from Z")
	f.send("a", "alice", "c", "hi Z")
	must[*tidings.Message](t)(f.Messages.EditMessage(zedCtx, "c", m1.ID, tidings.MessageEdit{Parts: text("first from Z, edited")}))
	must[*tidings.Message](t)(f.Messages.DeleteMessage(zedCtx, "c", m2.ID))
	must[*tidings.MessageStatus](t)(f.Messages.MarkRead(zedCtx, "c", 0))
	must[*tidings.Participant](t)(f.Conversations.AddParticipant(zedCtx, "c", tidings.NewParticipant{UserID: "carol"}))
	must[*tidings.Participant](t)(f.Conversations.UpdateParticipant(zedCtx, "c", "carol", tidings.RoleAdmin))
	must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(zedCtx, "c", tidings.ConversationUpdate{Name: ptr("Zed's place")}))
	// zed took part in d, and left it.
	f.mkConv("a", "alice", tidings.NewConversation{ID: "d"}, zed)
	f.send("a", zed, "d", "bye from Z")
	if err := f.Conversations.Leave(zedCtx, "d"); err != nil {
		t.Fatal(err)
	}
	var file *tidings.File
	if f.Files != nil {
		file = must[*tidings.File](t)(f.Files.CreateFile(zedCtx, "c", "z.txt", "text/plain", strings.NewReader("from Z")))
		f.sendParts("a", zed, "c", []tidings.Part{{Type: "text/plain", FileID: file.ID}})
	}
	// zed's pushes: a target, pushes turned off, c muted.
	if f.Push != nil {
		must[*tidings.PushTarget](t)(f.Push.RegisterPushTarget(zedCtx, webPushTarget(t, "https://push.example/zed")))
		must[*tidings.PushTarget](t)(f.Push.RegisterPushTarget(zedCtx, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "zed-token"}))
		must[*tidings.PushSettings](t)(f.Push.UpdatePushSettings(zedCtx, tidings.PushSettingsUpdate{Enabled: ptr(false)}))
		if err := f.Push.MuteConversation(zedCtx, "c", true); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "a user deletes a user", f.Users.DeleteUser(as("a", "alice"), zed, mode), tidings.EForbidden)
	wantCode(t, "delete with a bad mode", f.Users.DeleteUser(srv, zed, "shred"), tidings.EInvalid)
	wantCode(t, "delete an unknown user", f.Users.DeleteUser(srv, "nobody", mode), tidings.ENotFound)

	before := f.lastSeq()
	if err := f.Users.DeleteUser(srv, zed, mode); err != nil {
		t.Fatalf("delete %s (%s): %v", zed, mode, err)
	}
	_, err := f.Users.FindUserByID(srv, zed)
	wantCode(t, "find the deleted user", err, tidings.ENotFound)
	if _, err := f.Users.FindUserByID(server("b"), zed); err != nil {
		t.Errorf("the user of the same id in another app: %v", err)
	}

	// c has lost its only owner and one participant.
	c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "alice"), "c"))
	if c.ParticipantCount != 3 || c.CreatedBy != "" || c.Name != "Zed's place" {
		t.Errorf("c after the deletion: %d participants, createdBy %q", c.ParticipantCount, c.CreatedBy)
	}
	for _, p := range must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(srv, "c", tidings.ParticipantFilter{})).Participants {
		if p.UserID == zed || p.Role == tidings.RoleOwner {
			t.Errorf("participant %s (%s) after the deletion", p.UserID, p.Role)
		}
	}
	// The history keeps its seqs; zed's messages are erased or anonymized.
	for _, conv := range []string{"c", "d"} {
		for i, m := range must[*tidings.MessagePage](t)(f.Messages.ListMessages(srv, conv, tidings.MessageFilter{})).Messages {
			if m.Seq != int64(i+1) {
				t.Errorf("%s: message %d has seq %d", conv, i, m.Seq)
			}
			if m.Sender.ID == zed || strings.Contains(fmt.Sprint(m.Sender), "Zed") {
				t.Errorf("%s: message %d names zed: %+v", conv, m.Seq, m.Sender)
			}
			fromZ := strings.Contains(fmt.Sprint(m.Parts), "from Z") || (file != nil && len(m.Parts) == 1 && m.Parts[0].FileID == file.ID)
			anonymous := m.Sender.ID == "" && !m.System
			switch {
			case mode == tidings.EraseMessages && fromZ:
				t.Errorf("%s: message %d kept zed's content: %+v", conv, m.Seq, m.Parts)
			case mode == tidings.EraseMessages && anonymous && (m.DeletedAt == nil || len(m.Parts) != 0 || m.ClientID != ""):
				t.Errorf("%s: erased message %d: %+v", conv, m.Seq, m)
			case mode == tidings.AnonymizeMessages && fromZ && !anonymous:
				t.Errorf("%s: zed's message %d is not anonymous: %+v", conv, m.Seq, m)
			}
		}
	}
	// No stream names zed any more; c's participants learn that a deleted
	// user left (and, erasing, that zed's messages are deleted).
	for _, u := range []string{"alice", "bob", "carol"} {
		for _, e := range f.stream("a", u, 0) {
			if e.UserID == zed || (e.Actor != nil && (e.Actor.ID == zed || strings.Contains(e.Actor.DisplayName, "Zed"))) ||
				strings.Contains(string(e.Payload), zed) || strings.Contains(string(e.Payload), "Zed Q") || strings.Contains(string(e.Payload), "zq@example.com") {
				t.Errorf("%s's stream still names zed: %s %s actor %+v user %q payload %s", u, e.Name, e.ConversationID, e.Actor, e.UserID, e.Payload)
			}
			if mode == tidings.EraseMessages && strings.Contains(string(e.Payload), "from Z") {
				t.Errorf("%s's stream keeps an erased message: %s %s", u, e.Name, e.Payload)
			}
		}
	}
	var names []string
	for _, e := range f.stream("a", "alice", before) {
		names = append(names, e.Name+":"+e.ConversationID)
		if e.Name == tidings.EventParticipantRemoved {
			var p tidings.ParticipantPayload
			if err := unmarshal(e.Payload, &p); err != nil || p.Reason != tidings.ReasonDeleted || p.ProfileID != "" || e.UserID != "" || e.Actor != nil {
				t.Errorf("the removal of a deleted user: %+v %s", e, e.Payload)
			}
		}
	}
	// Erasing: a deletion for each of zed's messages not deleted yet
	// (m1 and the file's in c, d's); anonymizing, none.
	wantDeleted := 0
	if mode == tidings.EraseMessages {
		wantDeleted = 2
		if file != nil {
			wantDeleted++
		}
	}
	removed, deleted := 0, 0
	for _, n := range names {
		switch n {
		case tidings.EventParticipantRemoved + ":c":
			removed++
		case tidings.EventMessageDeleted + ":c", tidings.EventMessageDeleted + ":d":
			deleted++
		default:
			t.Errorf("alice's stream after the deletion has %s", n)
		}
	}
	if removed != 1 || deleted != wantDeleted {
		t.Errorf("alice's stream after the deletion: %q; want one removal from c and %d deletions", names, wantDeleted)
	}

	// The id may be used again, for a new user who inherits nothing.
	f.mkUsers("a", zed)
	if evs := f.stream("a", zed, 0); len(evs) != 1 || evs[0].Name != tidings.EventProfileUpdate {
		t.Errorf("the new %s's stream: %q, want their creation only", zed, describe(evs))
	}
	page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(zedCtx, tidings.ConversationFilter{IncludeDeleted: true}))
	if len(page.Conversations) != 0 {
		t.Errorf("the new %s takes part in %d conversations", zed, len(page.Conversations))
	}
	// Nor their pushes: no target, pushes on, nothing muted; the
	// addresses they registered are free for another user.
	if f.Push != nil {
		if got := must[[]*tidings.PushTarget](t)(f.Push.ListPushTargets(zedCtx)); len(got) != 0 {
			t.Errorf("the new %s has the push targets %+v", zed, got)
		}
		if st := must[*tidings.PushSettings](t)(f.Push.PushSettings(zedCtx)); !st.Enabled || len(st.MutedConversations) != 0 {
			t.Errorf("the new %s's push settings: %+v", zed, st)
		}
		r := must[*tidings.PushRecipient](t)(f.Push.PushRecipient(context.Background(), "a", zed, "c"))
		if len(r.Targets) != 0 || r.Disabled || r.Muted {
			t.Errorf("the new %s as a push recipient in c: %+v", zed, r)
		}
		if got := must[[]string](t)(f.Push.PushCandidates(context.Background(), "a", "c", "")); len(got) != 0 {
			t.Errorf("push candidates of c after the deletion: %v", got)
		}
	}
}

func (f *fixture) sendParts(app, sender, convID string, parts []tidings.Part) *tidings.Message {
	f.t.Helper()
	m, _, err := f.Messages.SendMessage(as(app, sender), convID, tidings.NewMessage{Parts: parts})
	if err != nil {
		f.t.Fatalf("%s sends parts: %v", sender, err)
	}
	return m
}

// TestFindUsers: the app's server lists its users by id prefix, and
// searches them by display name or identifier, ignoring case, a page at a
// time in id order.
func TestFindUsers(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	srv := server("a")
	for _, u := range []*tidings.User{
		{ID: "team-1", DisplayName: "Alice Martin"},
		{ID: "team-2", DisplayName: "Bob Stone", Identifier: &tidings.Identifier{Value: "bob@Example.com", Kind: "email"}},
		{ID: "team-3", DisplayName: "Carol"},
		{ID: "teal", DisplayName: "Martina"},
		{ID: "other", DisplayName: "Dave", Identifier: &tidings.Identifier{Value: "dave@example.com", Kind: "email"}},
	} {
		must[*tidings.User](t)(f.Users.CreateUser(srv, u))
	}
	f.mkUsers("b", "team-9")
	ids := func(filter tidings.UserFilter) []string {
		t.Helper()
		var out []string
		for {
			page := must[[]*tidings.User](t)(f.Users.ListUsers(srv, filter))
			for _, u := range page {
				out = append(out, u.ID)
			}
			if len(page) < filter.Limit || len(page) == 0 || filter.Limit == 0 {
				return out
			}
			filter.After = page[len(page)-1].ID
		}
	}
	for _, tc := range []struct {
		filter tidings.UserFilter
		want   string
	}{
		{tidings.UserFilter{IDPrefix: "team-"}, "team-1 team-2 team-3"},
		{tidings.UserFilter{IDPrefix: "team-", Limit: 2}, "team-1 team-2 team-3"},
		{tidings.UserFilter{IDPrefix: "tea"}, "teal team-1 team-2 team-3"},
		{tidings.UserFilter{IDPrefix: "team-", After: "team-1"}, "team-2 team-3"},
		{tidings.UserFilter{Search: "martin"}, "teal team-1"},
		{tidings.UserFilter{Search: "EXAMPLE.COM"}, "other team-2"},
		{tidings.UserFilter{Search: "martin", IDPrefix: "team"}, "team-1"},
		{tidings.UserFilter{Search: "nobody"}, ""},
	} {
		if got := strings.Join(ids(tc.filter), " "); got != tc.want {
			t.Errorf("ListUsers(%+v) = %q, want %q", tc.filter, got, tc.want)
		}
	}
	_, err := f.Users.ListUsers(as("a", "team-1"), tidings.UserFilter{Search: "bob"})
	wantCode(t, "a user searches users", err, tidings.EForbidden)
}

// UsersByIDs is a UserService that reads many users of an app in one
// query (realtime.UsersFinder): the realtime node's access check uses it
// when the store has it.
type UsersByIDs interface {
	FindUsersByIDs(ctx context.Context, ids []string) ([]*tidings.User, error)
}

// TestFindUsersByIDs: the users of the caller's app that exist among the
// ids, as they are stored (a deactivation included), in one read: not
// another app's, not ids nobody has, and only for the app's server.
func TestFindUsersByIDs(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	finder, ok := f.Users.(UsersByIDs)
	if !ok {
		t.Skip("the store has no FindUsersByIDs: the realtime node reads its users one at a time")
	}
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkUsers("b", "dave")
	must[*tidings.User](t)(f.Users.DeactivateUser(server("a"), "bob"))
	got, err := finder.FindUsersByIDs(server("a"), []string{"carol", "bob", "dave", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*tidings.User{}
	for _, u := range got {
		byID[u.ID] = u
	}
	if len(got) != 2 || byID["carol"] == nil || byID["bob"] == nil {
		t.Fatalf("got %d users %v, want carol and bob", len(got), byID)
	}
	if byID["bob"].DeactivatedAt == nil || byID["carol"].DeactivatedAt != nil {
		t.Errorf("deactivation not read: bob %v, carol %v", byID["bob"].DeactivatedAt, byID["carol"].DeactivatedAt)
	}
	if got, err := finder.FindUsersByIDs(server("a"), nil); err != nil || len(got) != 0 {
		t.Errorf("no ids: %d users, %v", len(got), err)
	}
	_, err = finder.FindUsersByIDs(as("a", "alice"), []string{"alice"})
	wantCode(t, "a user reads users by ids", err, tidings.EForbidden)
}

// ConnectReader is an AppService that reads what a WebSocket auth needs
// in one go (realtime.ConnectReader): the realtime node uses it when the
// store has it.
type ConnectReader interface {
	ReadConnect(ctx context.Context, appID, userID, device string) (app *tidings.App, user *tidings.User, latest, cursor int64, err error)
}

// TestReadConnect: ReadConnect reads an app's secrets and one of its
// users as FindAppByID and FindUserByID (as the app's server) do, never a
// user or cursor of another app, with the log's newest seq and the
// device's cursor.
func TestReadConnect(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	r, ok := f.Apps.(ConnectReader)
	if !ok {
		t.Skip("the store has no ReadConnect: the realtime node reads the app, the user, the newest seq and the cursor one at a time")
	}
	f.mkUsers("a", "alice")
	f.mkUsers("b", "bob", "alice")
	ctx := context.Background()
	name := "Alice A."
	must[*tidings.User](t)(f.Users.UpdateUser(server("a"), "alice", tidings.UserUpdate{DisplayName: &name,
		Identifier: &tidings.Identifier{Value: "alice@example.com", Kind: "email"}}))
	must[*tidings.User](t)(f.Users.DeactivateUser(server("a"), "alice"))
	must[*tidings.App](t)(f.Apps.RotateSigningSecret(ctx, "a", time.Hour))
	if err := f.EventLog.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: "alice", Device: "phone", Seq: 3},
		{AppID: "b", UserID: "alice", Device: "laptop", Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	newest := must[int64](t)(f.EventLog.LastEventSeq(ctx))

	app, u, latest, cursor, err := r.ReadConnect(ctx, "a", "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	wantApp := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, "a"))
	wantUser := must[*tidings.User](t)(f.Users.FindUserByID(server("a"), "alice"))
	if app.ID != wantApp.ID || app.SigningSecret != wantApp.SigningSecret || app.PreviousSigningSecret != wantApp.PreviousSigningSecret ||
		app.PreviousSecretUntil == nil || !app.PreviousSecretUntil.Equal(*wantApp.PreviousSecretUntil) {
		t.Fatalf("app %+v, want the id and secrets of %+v", app, wantApp)
	}
	if !reflect.DeepEqual(u, wantUser) || u.DeactivatedAt == nil || u.DisplayName != name {
		t.Fatalf("user %+v, want %+v", u, wantUser)
	}
	if latest != newest || cursor != 3 {
		t.Fatalf("newest seq %d and cursor %d, want %d and 3", latest, cursor, newest)
	}
	// Another device, or another app's device of the same user id: no
	// cursor.
	if _, _, _, cursor, _ := r.ReadConnect(ctx, "a", "alice", "laptop"); cursor != 0 {
		t.Fatalf("app a's alice has app b's alice's cursor %d", cursor)
	}
	// Another app's user, or none: the app, and no user.
	for _, id := range []string{"bob", "nobody"} {
		app, u, _, _, err := r.ReadConnect(ctx, "a", id, "phone")
		if err != nil || app == nil || app.ID != "a" || u != nil {
			t.Fatalf("user %q of app a: app %v, user %v, err %v; want app a and no user", id, app, u, err)
		}
	}
	_, _, _, _, err = r.ReadConnect(ctx, "nope", "alice", "phone")
	wantCode(t, "an unknown app", err, tidings.ENotFound)
}

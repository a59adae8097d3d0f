// Package storetest is the conformance suite of Tidings stores: the
// behaviour every implementation of the root package's services must have,
// tested through those interfaces only, so that the embedded SQLite store
// and a PostgreSQL store for clusters are held to one definition.
//
// A store's own tests call Run with a function that opens new, empty
// stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, pub tidings.EventPublisher) storetest.Stores {
//			db := open(t) // closed by t.Cleanup
//			db.Publisher = pub
//			return storetest.Stores{Apps: …, Users: …, …}
//		})
//	}
//
// What the suite checks is what the documentation promises: the doc
// comments of the root package's interfaces, and "Who receives what" and
// "Delivery semantics" in docs/protocol.md.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// Stores is one store's services, all on the same, new, empty database.
type Stores struct {
	Apps          tidings.AppService
	Users         tidings.UserService
	Conversations tidings.ConversationService
	Messages      tidings.MessageService
	EventLog      tidings.EventLog
	// Files is optional: the file tests are skipped without it. It must
	// accept files of at least 1 KiB, and refuse those over MaxFileBytes.
	Files        tidings.FileService
	MaxFileBytes int64
	// UploadQuotas, if set, are those Files applies: the quota tests set
	// their fields (and are skipped without it).
	UploadQuotas *tidings.UploadQuotas
	// Advance, if set, moves the stores' clock forward: the tests that
	// need time to pass are skipped without it.
	Advance func(time.Duration)
	// RemoveUnattachedFiles, if set, is Files' removal of the files no
	// message refers to (RemoveUnattached); Blobs is where Files keeps
	// their content. The removal test is skipped without them.
	RemoveUnattachedFiles func(ctx context.Context, grace time.Duration) (int, error)
	Blobs                 tidings.BlobStore
	// Push is optional: the push tests are skipped without it.
	Push PushStore
	// MaxMessageBytes is the message size limit the message service was
	// given (0: tidings.DefaultMessageSize).
	MaxMessageBytes int
	// Webhooks and WebhookStore are optional: the webhook tests are
	// skipped without them.
	Webhooks     tidings.WebhookService
	WebhookStore tidings.WebhookStore
	// BeforeSend and BeforeSendStore are optional: the before-send
	// tests are skipped without them.
	BeforeSend      tidings.BeforeSendService
	BeforeSendStore tidings.BeforeSendStore
}

// Factory returns stores on a new, empty database, whose committed events
// are published to pub. It closes them with t.Cleanup.
type Factory func(t *testing.T, pub tidings.EventPublisher) Stores

// Run runs every test of the suite, each as a subtest on stores of its own.
func Run(t *testing.T, newStores Factory) {
	tests := []struct {
		name string
		run  func(*testing.T, Factory)
	}{
		{"Apps", TestApps},
		{"Users", TestUsers},
		{"ProfileEvents", TestProfileEvents},
		{"CreateConversation", TestCreateConversation},
		{"PrivateAndPublic", TestPrivateAndPublic},
		{"UpdateDeleteUndelete", TestUpdateDeleteUndelete},
		{"ParticipantsAndRoles", TestParticipantsAndRoles},
		{"ListParticipantsPages", TestListParticipantsPages},
		{"ListConversations", TestListConversations},
		{"MembershipSpans", TestMembershipSpans},
		{"SendMessage", TestSendMessage},
		{"IdempotentClientID", TestIdempotentClientID},
		{"EditDeleteMessage", TestEditDeleteMessage},
		{"History", TestHistory},
		{"Marks", TestMarks},
		{"WhoReceivesWhat", TestWhoReceivesWhat},
		{"PublishedInCommitOrder", TestPublishedInCommitOrder},
		{"ConcurrentSenders", TestConcurrentSenders},
		{"Cursors", TestCursors},
		{"PushTargets", TestPushTargets},
		{"PushRecipient", TestPushRecipient},
		{"PushConfig", TestPushConfig},
		{"Retention", TestRetention},
		{"ServerActsAsItself", TestServerActsAsItself},
		{"DeactivateAndRevoke", TestDeactivateAndRevoke},
		{"DeleteUser", TestDeleteUser},
		{"AccessLog", TestAccessLog},
		{"FindUsers", TestFindUsers},
		{"FindUsersByIDs", TestFindUsersByIDs},
		{"ReadConnect", TestReadConnect},
		{"MuteParticipant", TestMuteParticipant},
		{"RotateSigningSecret", TestRotateSigningSecret},
		{"TenantIsolation", TestTenantIsolation},
		{"Files", TestFiles},
		{"UploadQuotas", TestUploadQuotas},
		{"UploadQuotasUnderConcurrentUploads", TestUploadQuotasUnderConcurrentUploads},
		{"ServerUploadsCountOnce", TestServerUploadsCountOnce},
		{"UnattachedFilesAreRemoved", TestUnattachedFilesAreRemoved},
		{"Webhooks", TestWebhooks},
		{"BeforeSend", TestBeforeSend},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStores)
		})
	}
}

// recorder is the EventPublisher given to the store: it keeps what it is
// given.
type recorder struct {
	mu     sync.Mutex
	events []*tidings.Event
}

func (r *recorder) Publish(evs ...*tidings.Event) {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
}

func (r *recorder) all() []*tidings.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// fixture is a store with apps "a" and "b".
type fixture struct {
	Stores
	t   *testing.T
	pub *recorder
}

func newFixture(t *testing.T, newStores Factory) *fixture {
	t.Helper()
	pub := &recorder{}
	f := &fixture{Stores: newStores(t, pub), t: t, pub: pub}
	for _, app := range []string{"a", "b"} {
		if _, err := f.Apps.CreateApp(context.Background(), app, "app "+app); err != nil {
			t.Fatalf("create app %s: %v", app, err)
		}
	}
	return f
}

func server(app string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, Server: true})
}

func as(app, userID string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, UserID: userID})
}

func (f *fixture) mkUsers(app string, ids ...string) {
	f.t.Helper()
	for _, id := range ids {
		if _, err := f.Users.CreateUser(server(app), &tidings.User{ID: id}); err != nil {
			f.t.Fatalf("create user %s/%s: %v", app, id, err)
		}
	}
}

// mkConv creates a conversation as owner with the other users as members.
func (f *fixture) mkConv(app, owner string, nc tidings.NewConversation, members ...string) *tidings.Conversation {
	f.t.Helper()
	for _, m := range members {
		nc.Participants = append(nc.Participants, tidings.NewParticipant{UserID: m})
	}
	c, err := f.Conversations.CreateConversation(as(app, owner), nc)
	if err != nil {
		f.t.Fatalf("create conversation: %v", err)
	}
	return c
}

func text(s string) []tidings.Part { return []tidings.Part{{Type: "text/plain", Data: s}} }

func (f *fixture) send(app, sender, convID, s string) *tidings.Message {
	f.t.Helper()
	m, created, err := f.Messages.SendMessage(as(app, sender), convID, tidings.NewMessage{Parts: text(s)})
	if err != nil || !created {
		f.t.Fatalf("%s sends %q: created %v, %v", sender, s, created, err)
	}
	return m
}

// stream returns the whole stream of a user after a ref, read in small
// pages so that paging is exercised too.
func (f *fixture) stream(app, userID string, after int64) []*tidings.Event {
	f.t.Helper()
	var all []*tidings.Event
	for {
		evs, err := f.EventLog.UserEvents(context.Background(), app, userID, after, 3)
		if err != nil {
			f.t.Fatalf("stream of %s/%s after %d: %v", app, userID, after, err)
		}
		if len(evs) > 3 {
			f.t.Fatalf("UserEvents returned %d events, more than the limit 3", len(evs))
		}
		for _, e := range evs {
			if e.Seq <= after {
				f.t.Fatalf("stream of %s/%s: event %d (%s) does not follow %d", app, userID, e.Seq, e.Name, after)
			}
			after = e.Seq
		}
		all = append(all, evs...)
		if len(evs) < 3 {
			return all
		}
	}
}

func (f *fixture) lastSeq() int64 {
	f.t.Helper()
	seq, err := f.EventLog.LastEventSeq(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return seq
}

// convEvents keeps the events of one conversation.
func convEvents(evs []*tidings.Event, convID string) []*tidings.Event {
	var out []*tidings.Event
	for _, e := range evs {
		if e.ConversationID == convID {
			out = append(out, e)
		}
	}
	return out
}

// describe names events as "name/userId" (userId when set), or
// "name:text" for message events, so that a stream reads as a story.
func describe(evs []*tidings.Event) []string {
	var out []string
	for _, e := range evs {
		d := e.Name
		switch {
		case strings.HasPrefix(e.Name, "conversationMessage.") && e.Name != tidings.EventMessageDelivered && e.Name != tidings.EventMessageRead:
			var p tidings.MessagePayload
			if err := unmarshal(e.Payload, &p); err == nil && p.Message != nil && len(p.Parts) > 0 {
				d += ":" + p.Parts[0].Data
			}
		case e.UserID != "":
			d += "/" + e.UserID
		}
		out = append(out, d)
	}
	return out
}

func wantCode(t testing.TB, what string, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Errorf("%s: error code %q (%v), want %q", what, got, err, code)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantNames(t testing.TB, what string, got []*tidings.Event, want ...string) {
	t.Helper()
	if g := describe(got); !slices.Equal(g, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, g, want)
	}
}

func seqs(evs []*tidings.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%d ", e.Seq)
	}
	return b.String()
}

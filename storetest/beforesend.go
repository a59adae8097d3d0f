package storetest

import (
	"context"
	"testing"

	"github.com/tidings/tidings"
)

// TestBeforeSend: the before-send hook's settings
// (tidings.BeforeSendService) and the sender's side
// (tidings.BeforeSendStore): off by default; only the server key sets
// them; bad settings are refused; the default timeout; a secret made, or
// given, and kept when a change omits it; each app has its own; removing
// twice is not an error; FindSentMessage finds the message the caller
// sent with a client id, and no one else's; ConversationForSend shows
// the conversation to its participants only. Skipped when the store has no
// before-send hooks.
func TestBeforeSend(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	if f.BeforeSend == nil || f.BeforeSendStore == nil {
		t.Skip("the store has no before-send hooks")
	}
	hooks, store := f.BeforeSend, f.BeforeSendStore
	ctx := context.Background()
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")

	// Off by default.
	_, err := hooks.FindBeforeSend(server("a"))
	wantCode(t, "the hook of an app without one", err, tidings.ENotFound)
	if h, err := store.AppBeforeSend(ctx, "a"); err != nil || h != nil {
		t.Fatalf("AppBeforeSend of an app without a hook: %+v, %v; want nil, nil", h, err)
	}

	// Only the server key; bad settings are refused.
	_, err = hooks.SetBeforeSend(as("a", "alice"), tidings.BeforeSendConfig{URL: "https://example.com/hook"})
	wantCode(t, "a user sets the hook", err, tidings.EForbidden)
	_, err = hooks.FindBeforeSend(as("a", "alice"))
	wantCode(t, "a user reads the hook", err, tidings.EForbidden)
	wantCode(t, "a user removes the hook", hooks.DeleteBeforeSend(as("a", "alice")), tidings.EForbidden)
	for _, cfg := range []tidings.BeforeSendConfig{
		{URL: "example.com/hook"},
		{URL: "ftp://example.com/hook"},
		{URL: "https://user:pw@example.com/hook"},
		{URL: "https://example.com/hook", Secret: "whsec_c2hvcnQ="},
		{URL: "https://example.com/hook", TimeoutMS: 99},
		{URL: "https://example.com/hook", TimeoutMS: 10001},
		{URL: "https://example.com/hook", TimeoutMS: -1},
	} {
		_, err := hooks.SetBeforeSend(server("a"), cfg)
		wantCode(t, "set "+cfg.URL, err, tidings.EInvalid)
	}

	// Set: the default timeout, fail-closed, a secret made.
	h := must[*tidings.BeforeSendHook](t)(hooks.SetBeforeSend(server("a"), tidings.BeforeSendConfig{URL: " https://example.com/hook "}))
	if h.AppID != "a" || h.URL != "https://example.com/hook" || h.TimeoutMS != 2000 || h.FailOpen || h.CreatedAt.IsZero() {
		t.Errorf("a new hook: %+v; want the URL trimmed, timeoutMs 2000, fail-closed", h)
	}
	if _, err := tidings.WebhookSecretKey(h.Secret); err != nil {
		t.Errorf("the generated secret %q: %v", h.Secret, err)
	}
	read := must[*tidings.BeforeSendHook](t)(hooks.FindBeforeSend(server("a")))
	same := func(what string, got, want *tidings.BeforeSendHook) {
		t.Helper()
		if got == nil || got.AppID != want.AppID || got.URL != want.URL || got.Secret != want.Secret || got.TimeoutMS != want.TimeoutMS ||
			got.FailOpen != want.FailOpen || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("%s: %+v; want %+v", what, got, want)
		}
	}
	same("the hook read back", read, h)
	same("AppBeforeSend", must[*tidings.BeforeSendHook](t)(store.AppBeforeSend(ctx, "a")), h)

	// Each app has its own.
	if other, err := store.AppBeforeSend(ctx, "b"); err != nil || other != nil {
		t.Errorf("app b's hook after a's was set: %+v, %v; want none", other, err)
	}
	_, err = hooks.FindBeforeSend(server("b"))
	wantCode(t, "app b's hook", err, tidings.ENotFound)

	// A change without a secret keeps it; with one, takes it.
	h2 := must[*tidings.BeforeSendHook](t)(hooks.SetBeforeSend(server("a"), tidings.BeforeSendConfig{URL: "http://10.0.0.1:9000/x", TimeoutMS: 10000, FailOpen: true}))
	if h2.Secret != h.Secret || h2.URL != "http://10.0.0.1:9000/x" || h2.TimeoutMS != 10000 || !h2.FailOpen || !h2.CreatedAt.Equal(h.CreatedAt) || h2.UpdatedAt.Before(h.UpdatedAt) {
		t.Errorf("a change without a secret: %+v; want the secret %q kept, created at %v", h2, h.Secret, h.CreatedAt)
	}
	same("the changed hook read back", must[*tidings.BeforeSendHook](t)(store.AppBeforeSend(ctx, "a")), h2)
	own := tidings.NewWebhookSecret()
	h3 := must[*tidings.BeforeSendHook](t)(hooks.SetBeforeSend(server("a"), tidings.BeforeSendConfig{URL: "https://example.com/hook", Secret: own, TimeoutMS: 100}))
	if h3.Secret != own || h3.TimeoutMS != 100 || h3.FailOpen {
		t.Errorf("a change with a secret: %+v; want secret %q, timeoutMs 100, fail-closed", h3, own)
	}
	same("the hook with its own secret read back", must[*tidings.BeforeSendHook](t)(hooks.FindBeforeSend(server("a"))), h3)

	// Removed, twice.
	for i := 0; i < 2; i++ {
		if err := hooks.DeleteBeforeSend(server("a")); err != nil {
			t.Fatalf("remove the hook (%d): %v", i+1, err)
		}
	}
	if h, err := store.AppBeforeSend(ctx, "a"); err != nil || h != nil {
		t.Errorf("AppBeforeSend after removal: %+v, %v; want nil, nil", h, err)
	}

	// FindSentMessage: the caller's own message by client id, none
	// otherwise.
	m, _, err := f.Messages.SendMessage(as("a", "alice"), "c", tidings.NewMessage{ClientID: "k1", Parts: text("hi")})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	got := must[*tidings.Message](t)(store.FindSentMessage(as("a", "alice"), "c", "k1"))
	if got == nil || got.ID != m.ID || got.Seq != m.Seq || got.ClientID != "k1" || got.Sender.ID != "alice" || len(got.Parts) != 1 || got.Parts[0].Data != "hi" {
		t.Errorf("FindSentMessage of alice's k1: %+v; want %+v", got, m)
	}
	for _, c := range []struct {
		what           string
		ctx            context.Context
		conv, clientID string
	}{
		{"bob's k1", as("a", "bob"), "c", "k1"},
		{"the server's k1", server("a"), "c", "k1"},
		{"alice's k2", as("a", "alice"), "c", "k2"},
		{"alice's k1 in another conversation", as("a", "alice"), "d", "k1"},
		{"alice's k1 in another app", as("b", "alice"), "c", "k1"},
		{"no client id", as("a", "alice"), "c", ""},
	} {
		if got, err := store.FindSentMessage(c.ctx, c.conv, c.clientID); err != nil || got != nil {
			t.Errorf("FindSentMessage of %s: %+v, %v; want nil, nil", c.what, got, err)
		}
	}
	// ConversationForSend: the conversation as its participants see it,
	// with their role; not found for anyone else.
	for _, c := range []struct {
		who  string
		role tidings.Role
	}{{"alice", tidings.RoleOwner}, {"bob", tidings.RoleMember}} {
		conv, err := store.ConversationForSend(as("a", c.who), "c")
		if err != nil || conv.ID != "c" || conv.Role != c.role || tidings.CanSendMessage("c", conv) != nil {
			t.Errorf("ConversationForSend for %s: %+v, %v; want c with role %s, which may send", c.who, conv, err, c.role)
		}
	}
	f.mkUsers("a", "carol")
	_, err = store.ConversationForSend(as("a", "carol"), "c")
	wantCode(t, "ConversationForSend for someone not in the private conversation", err, tidings.ENotFound)
	_, err = store.ConversationForSend(as("b", "alice"), "c")
	wantCode(t, "ConversationForSend in another app", err, tidings.ENotFound)
}

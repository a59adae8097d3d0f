package storetest

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"testing"

	"github.com/tidings/tidings"
)

// PushStore is what a store implements for push notifications: the API's
// side and the dispatcher's.
type PushStore interface {
	tidings.PushService
	tidings.PushStore
}

// pushFixture is a fixture with push, alice and bob in a conversation of
// app "a", and eve, in none.
func pushFixture(t *testing.T, newStores Factory) (*fixture, PushStore, string) {
	t.Helper()
	f := newFixture(t, newStores)
	if f.Push == nil {
		t.Skip("the store has no push notifications (Stores.Push)")
	}
	f.mkUsers("a", "alice", "bob", "eve")
	c := f.mkConv("a", "alice", tidings.NewConversation{}, "bob")
	return f, f.Push, c.ID
}

// webPushTarget returns a valid Web Push subscription at endpoint.
func webPushTarget(t *testing.T, endpoint string) tidings.NewPushTarget {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	return tidings.NewPushTarget{Device: "laptop", Kind: tidings.PushWebPush, Endpoint: endpoint,
		Keys: &tidings.PushKeys{P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
			Auth: base64.RawURLEncoding.EncodeToString(auth)}}
}

// TestPushTargets: targets are the caller's own, unique per address in an
// app (registering one again moves it, with its id), at most
// MaxPushTargets a user, and the candidates of a conversation are its
// participants with a target.
func TestPushTargets(t *testing.T, newStores Factory) {
	_, push, conv := pushFixture(t, newStores)
	ctx := as("a", "bob")
	wp := must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, webPushTarget(t, "https://push.example/sub/1")))
	apns := must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "abcd"}))
	if wp.Kind != tidings.PushWebPush || wp.Keys == nil || wp.UserID != "bob" || wp.Endpoint != "https://push.example/sub/1" || apns.Token != "abcd" {
		t.Fatalf("registered %+v and %+v", wp, apns)
	}
	list := must[[]*tidings.PushTarget](t)(push.ListPushTargets(ctx))
	if len(list) != 2 || list[0].ID != wp.ID || list[1].ID != apns.ID {
		t.Fatalf("bob's targets %+v", list)
	}
	if got := must[[]*tidings.PushTarget](t)(push.ListPushTargets(as("a", "alice"))); len(got) != 0 {
		t.Fatalf("alice sees %d targets", len(got))
	}
	wantCode(t, "alice deletes bob's target", push.DeletePushTarget(as("a", "alice"), wp.ID), tidings.ENotFound)
	_, err := push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushWebPush, Endpoint: "http://insecure.example/"})
	wantCode(t, "an http endpoint", err, tidings.EInvalid)
	_, err = push.RegisterPushTarget(server("a"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "x"})
	wantCode(t, "a target for the server key", err, tidings.EForbidden)

	// The same token registered by alice is hers now, with the same id;
	// another app's same token is another target.
	moved := must[*tidings.PushTarget](t)(push.RegisterPushTarget(as("a", "alice"), tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "abcd"}))
	if moved.ID != apns.ID || moved.UserID != "alice" {
		t.Fatalf("re-registered %+v", moved)
	}
	if got := must[[]string](t)(push.PushCandidates(context.Background(), "a", conv, "alice")); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("candidates %v, want bob", got)
	}
	if err := push.DeletePushTarget(ctx, wp.ID); err != nil {
		t.Fatal(err)
	}
	if got := must[[]string](t)(push.PushCandidates(context.Background(), "a", conv, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v after bob's last target went", got)
	}
	for i := range tidings.MaxPushTargets + 3 {
		must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "t" + string(rune('a'+i))}))
	}
	list = must[[]*tidings.PushTarget](t)(push.ListPushTargets(ctx))
	if len(list) != tidings.MaxPushTargets || list[len(list)-1].Token != "t"+string(rune('a'+tidings.MaxPushTargets+2)) || list[0].Token != "td" {
		t.Fatalf("%d targets, from %+v to %+v", len(list), list[0], list[len(list)-1])
	}
	if err := push.RemovePushTargets(context.Background(), "a", []string{list[0].ID, list[1].ID}); err != nil {
		t.Fatal(err)
	}
	if got := must[[]*tidings.PushTarget](t)(push.ListPushTargets(ctx)); len(got) != tidings.MaxPushTargets-2 {
		t.Fatalf("%d targets after removing 2", len(got))
	}
}

// TestPushRecipient: settings, mutes and unread counts as the dispatcher
// reads them.
func TestPushRecipient(t *testing.T, newStores Factory) {
	f, push, conv := pushFixture(t, newStores)
	other := f.mkConv("a", "alice", tidings.NewConversation{}, "bob").ID
	bob := as("a", "bob")
	must[*tidings.PushTarget](t)(push.RegisterPushTarget(bob, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "tok"}))
	f.send("a", "alice", conv, "one")
	f.send("a", "alice", conv, "two")
	f.send("a", "alice", other, "three")
	ctx := context.Background()
	r := must[*tidings.PushRecipient](t)(push.PushRecipient(ctx, "a", "bob", conv))
	if r.Unread != 2 || r.Badge != 3 || r.Muted || r.Disabled || len(r.Targets) != 1 || r.Targets[0].Token != "tok" {
		t.Fatalf("recipient %+v", r)
	}
	if err := push.MuteConversation(bob, conv, true); err != nil {
		t.Fatal(err)
	}
	if err := push.MuteConversation(bob, conv, true); err != nil {
		t.Fatalf("muting twice: %v", err)
	}
	wantCode(t, "eve mutes a conversation she is not in", push.MuteConversation(as("a", "eve"), conv, true), tidings.ENotFound)
	off := false
	st := must[*tidings.PushSettings](t)(push.UpdatePushSettings(bob, tidings.PushSettingsUpdate{Enabled: &off}))
	if st.Enabled || !slices.Equal(st.MutedConversations, []string{conv}) {
		t.Fatalf("settings %+v", st)
	}
	r = must[*tidings.PushRecipient](t)(push.PushRecipient(ctx, "a", "bob", conv))
	if !r.Muted || !r.Disabled {
		t.Fatalf("recipient %+v, want muted and disabled", r)
	}
	if got := must[[]string](t)(push.PushCandidates(ctx, "a", other, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v with pushes off", got)
	}
	on := true
	must[*tidings.PushSettings](t)(push.UpdatePushSettings(bob, tidings.PushSettingsUpdate{Enabled: &on}))
	if got := must[[]string](t)(push.PushCandidates(ctx, "a", conv, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v of a muted conversation", got)
	}
	if got := must[[]string](t)(push.PushCandidates(ctx, "a", other, "alice")); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("candidates %v of the conversation not muted", got)
	}
	if err := push.MuteConversation(bob, conv, false); err != nil {
		t.Fatal(err)
	}
	if got := must[[]string](t)(push.PushCandidates(ctx, "a", conv, "alice")); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("candidates %v once unmuted", got)
	}
	if _, err := f.Messages.MarkRead(bob, conv, 0); err != nil {
		t.Fatal(err)
	}
	r = must[*tidings.PushRecipient](t)(push.PushRecipient(ctx, "a", "bob", conv))
	if r.Unread != 0 || r.Badge != 1 {
		t.Fatalf("after reading: %+v", r)
	}
	// Left: nothing unread there.
	if err := f.Conversations.Leave(bob, other); err != nil {
		t.Fatal(err)
	}
	r = must[*tidings.PushRecipient](t)(push.PushRecipient(ctx, "a", "bob", other))
	if r.Unread != 0 || r.Badge != 0 {
		t.Fatalf("after leaving: %+v", r)
	}
}

// TestPushConfig: a VAPID key pair per app, made once; the configuration
// is the server's.
func TestPushConfig(t *testing.T, newStores Factory) {
	_, push, _ := pushFixture(t, newStores)
	ctx := context.Background()
	pub := must[string](t)(push.VAPIDPublicKey(as("a", "alice")))
	if b, err := base64.RawURLEncoding.DecodeString(pub); err != nil || len(b) != 65 {
		t.Fatalf("public key %q: %v", pub, err)
	}
	cfg := must[*tidings.PushConfig](t)(push.AppPushConfig(ctx, "a"))
	priv, err := base64.RawURLEncoding.DecodeString(cfg.VAPIDPrivateKey)
	if err != nil || cfg.VAPIDPublicKey != pub {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil || base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()) != pub {
		t.Fatalf("the private key does not match the public one: %v", err)
	}
	if cfg.VAPIDSubject != tidings.DefaultVAPIDSubject || cfg.AlertTemplate != tidings.DefaultPushAlertTemplate ||
		cfg.BurstTemplate != tidings.DefaultPushBurstTemplate {
		t.Fatalf("defaults %+v", cfg)
	}
	if other := must[*tidings.PushConfig](t)(push.AppPushConfig(ctx, "b")); other.VAPIDPublicKey == pub {
		t.Fatal("two apps share a VAPID key")
	}
	_, err = push.PushConfig(as("a", "alice"))
	wantCode(t, "a user reads the push configuration", err, tidings.EForbidden)
	subj, tmpl, empty := "mailto:ops@example.com", "{sender} wrote", ""
	cfg = must[*tidings.PushConfig](t)(push.UpdatePushConfig(server("a"), tidings.PushConfigUpdate{VAPIDSubject: &subj, AlertTemplate: &tmpl, BurstTemplate: &empty}))
	if cfg.VAPIDSubject != subj || cfg.AlertTemplate != tmpl || cfg.BurstTemplate != tidings.DefaultPushBurstTemplate || cfg.VAPIDPublicKey != pub {
		t.Fatalf("updated %+v", cfg)
	}
	if got := must[*tidings.PushConfig](t)(push.PushConfig(server("a"))); got.AlertTemplate != tmpl || got.VAPIDPrivateKey != cfg.VAPIDPrivateKey {
		t.Fatalf("read back %+v", got)
	}
	bad := "ops@example.com"
	_, err = push.UpdatePushConfig(server("a"), tidings.PushConfigUpdate{VAPIDSubject: &bad})
	wantCode(t, "a subject that is no URL", err, tidings.EInvalid)
}

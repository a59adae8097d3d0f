package sqlite_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// webPushTarget returns a valid Web Push subscription at endpoint.
func webPushTarget(t *testing.T, endpoint string) tidings.NewPushTarget {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return tidings.NewPushTarget{Device: "laptop", Kind: tidings.PushWebPush, Endpoint: endpoint,
		Keys: &tidings.PushKeys{P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
			Auth: base64.RawURLEncoding.EncodeToString(auth)}}
}

func TestPushTargetsAreTheCallersOwn(t *testing.T) {
	e, conv := pair(t)
	push := sqlite.NewPushService(e.db)
	ctx := user("a", "bob")
	wp := must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, webPushTarget(t, "https://push.example/sub/1")))
	apns := must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "abcd"}))
	if wp.Kind != tidings.PushWebPush || wp.Keys == nil || wp.UserID != "bob" || apns.Token != "abcd" {
		t.Fatalf("registered %+v and %+v", wp, apns)
	}
	list := must[[]*tidings.PushTarget](t)(push.ListPushTargets(ctx))
	if len(list) != 2 || list[0].ID != wp.ID || list[1].ID != apns.ID {
		t.Fatalf("bob's targets %+v", list)
	}
	if got := must[[]*tidings.PushTarget](t)(push.ListPushTargets(user("a", "alice"))); len(got) != 0 {
		t.Fatalf("alice sees %d targets", len(got))
	}
	wantCode(t, push.DeletePushTarget(user("a", "alice"), wp.ID), tidings.ENotFound)
	_, err := push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushWebPush, Endpoint: "http://insecure.example/"})
	wantCode(t, err, tidings.EInvalid)
	_, err = push.RegisterPushTarget(server("a"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "x"})
	wantCode(t, err, tidings.EForbidden)

	// The same token registered by alice is hers now (a device that
	// changed hands), with the same id.
	moved := must[*tidings.PushTarget](t)(push.RegisterPushTarget(user("a", "alice"), tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "abcd"}))
	if moved.ID != apns.ID || moved.UserID != "alice" {
		t.Fatalf("re-registered %+v", moved)
	}
	if got := must[[]string](t)(push.PushCandidates(t.Context(), "a", conv, "alice")); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("candidates %v, want bob", got)
	}
	if err := push.DeletePushTarget(ctx, wp.ID); err != nil {
		t.Fatal(err)
	}
	if got := must[[]string](t)(push.PushCandidates(t.Context(), "a", conv, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v after bob's last target went", got)
	}
	for i := range tidings.MaxPushTargets + 3 {
		must[*tidings.PushTarget](t)(push.RegisterPushTarget(ctx, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "t" + string(rune('a'+i))}))
	}
	list = must[[]*tidings.PushTarget](t)(push.ListPushTargets(ctx))
	if len(list) != tidings.MaxPushTargets || list[len(list)-1].Token != "t"+string(rune('a'+tidings.MaxPushTargets+2)) {
		t.Fatalf("%d targets, the last %+v", len(list), list[len(list)-1])
	}
}

func TestPushRecipientSettingsMutesAndBadge(t *testing.T) {
	e, conv := pair(t)
	other := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}}).ID
	push := sqlite.NewPushService(e.db)
	bob := user("a", "bob")
	must[*tidings.PushTarget](t)(push.RegisterPushTarget(bob, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "tok"}))
	e.send(t, "alice", conv, "one")
	e.send(t, "alice", conv, "two")
	e.send(t, "alice", other, "three")
	r := must[*tidings.PushRecipient](t)(push.PushRecipient(t.Context(), "a", "bob", conv))
	if r.Unread != 2 || r.Badge != 3 || r.Muted || r.Disabled || len(r.Targets) != 1 {
		t.Fatalf("recipient %+v", r)
	}
	if err := push.MuteConversation(bob, conv, true); err != nil {
		t.Fatal(err)
	}
	wantCode(t, push.MuteConversation(user("a", "eve"), conv, true), tidings.ENotFound)
	off := false
	st := must[*tidings.PushSettings](t)(push.UpdatePushSettings(bob, tidings.PushSettingsUpdate{Enabled: &off}))
	if st.Enabled || !slices.Equal(st.MutedConversations, []string{conv}) {
		t.Fatalf("settings %+v", st)
	}
	r = must[*tidings.PushRecipient](t)(push.PushRecipient(t.Context(), "a", "bob", conv))
	if !r.Muted || !r.Disabled {
		t.Fatalf("recipient %+v, want muted and disabled", r)
	}
	if got := must[[]string](t)(push.PushCandidates(t.Context(), "a", other, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v with pushes off", got)
	}
	on := true
	must[*tidings.PushSettings](t)(push.UpdatePushSettings(bob, tidings.PushSettingsUpdate{Enabled: &on}))
	if got := must[[]string](t)(push.PushCandidates(t.Context(), "a", conv, "alice")); len(got) != 0 {
		t.Fatalf("candidates %v of a muted conversation", got)
	}
	if err := push.MuteConversation(bob, conv, false); err != nil {
		t.Fatal(err)
	}
	if got := must[[]string](t)(push.PushCandidates(t.Context(), "a", conv, "alice")); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("candidates %v once unmuted", got)
	}
	if _, err := e.messages.MarkRead(bob, conv, 0); err != nil {
		t.Fatal(err)
	}
	r = must[*tidings.PushRecipient](t)(push.PushRecipient(t.Context(), "a", "bob", conv))
	if r.Unread != 0 || r.Badge != 1 {
		t.Fatalf("after reading: %+v", r)
	}
	if err := push.RemovePushTargets(t.Context(), "a", []string{r.Targets[0].ID}); err != nil {
		t.Fatal(err)
	}
	if got := must[[]*tidings.PushTarget](t)(push.ListPushTargets(bob)); len(got) != 0 {
		t.Fatalf("targets left: %+v", got)
	}
}

func TestPushConfigMadeOnceAndUpdated(t *testing.T) {
	e := newEnv(t)
	push := sqlite.NewPushService(e.db)
	e.mkUsers(t, "a", "alice")
	pub := must[string](t)(push.VAPIDPublicKey(user("a", "alice")))
	if b, err := base64.RawURLEncoding.DecodeString(pub); err != nil || len(b) != 65 {
		t.Fatalf("public key %q: %v", pub, err)
	}
	cfg := must[*tidings.PushConfig](t)(push.AppPushConfig(t.Context(), "a"))
	priv, err := base64.RawURLEncoding.DecodeString(cfg.VAPIDPrivateKey)
	if err != nil || cfg.VAPIDPublicKey != pub {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil || base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()) != pub {
		t.Fatalf("the private key does not match the public one: %v", err)
	}
	if other := must[*tidings.PushConfig](t)(push.AppPushConfig(t.Context(), "b")); other.VAPIDPublicKey == pub {
		t.Fatal("two apps share a VAPID key")
	}
	_, err = push.PushConfig(user("a", "alice"))
	wantCode(t, err, tidings.EForbidden)
	subj, tmpl := "mailto:ops@example.com", "{sender} wrote"
	cfg = must[*tidings.PushConfig](t)(push.UpdatePushConfig(server("a"), tidings.PushConfigUpdate{VAPIDSubject: &subj, AlertTemplate: &tmpl}))
	if cfg.VAPIDSubject != subj || cfg.AlertTemplate != tmpl || cfg.BurstTemplate != tidings.DefaultPushBurstTemplate || cfg.VAPIDPublicKey != pub {
		t.Fatalf("updated %+v", cfg)
	}
	bad := "ops@example.com"
	_, err = push.UpdatePushConfig(server("a"), tidings.PushConfigUpdate{VAPIDSubject: &bad})
	wantCode(t, err, tidings.EInvalid)
}

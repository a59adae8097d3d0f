package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/tidings/tidings"
)

func unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsonCompact(dst *bytes.Buffer, b []byte) error { return json.Compact(dst, b) }

func ptr[T any](v T) *T { return &v }

// TestApps: apps are created with a server key shown once, found by it,
// rotated (the old key stops working at once) and updated.
func TestApps(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	ctx := context.Background()
	app := must[*tidings.App](t)(f.Apps.CreateApp(ctx, "", "shop"))
	if app.ID == "" || app.ServerKey == "" || app.SigningSecret == "" || app.Name != "shop" {
		t.Fatalf("created app %+v: want an id, a server key and a signing secret", app)
	}
	if !slices.Equal(app.UserEditableFields, tidings.DefaultUserEditableFields) {
		t.Errorf("new app's user-editable fields %v, want the defaults %v", app.UserEditableFields, tidings.DefaultUserEditableFields)
	}
	found := must[*tidings.App](t)(f.Apps.FindAppByServerKey(ctx, app.ServerKey))
	if found.ID != app.ID || found.ServerKey != "" || found.SigningSecret != app.SigningSecret {
		t.Errorf("found by key %+v: want the app, without its key", found)
	}
	byID := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, app.ID))
	if byID.ServerKey != "" || byID.Name != "shop" {
		t.Errorf("found by id %+v: want the app, without its key", byID)
	}
	_, err := f.Apps.CreateApp(ctx, app.ID, "again")
	wantCode(t, "create an app with a taken id", err, tidings.EConflict)
	_, err = f.Apps.FindAppByID(ctx, "nope")
	wantCode(t, "find an unknown app", err, tidings.ENotFound)
	_, err = f.Apps.FindAppByServerKey(ctx, "tsk_nope")
	wantCode(t, "find by an unknown key", err, tidings.EUnauthenticated)

	rotated := must[*tidings.App](t)(f.Apps.RotateServerKey(ctx, app.ID))
	if rotated.ServerKey == "" || rotated.ServerKey == app.ServerKey {
		t.Fatalf("rotated key %q: want a new one", rotated.ServerKey)
	}
	_, err = f.Apps.FindAppByServerKey(ctx, app.ServerKey)
	wantCode(t, "find by the rotated-out key", err, tidings.EUnauthenticated)
	if got := must[*tidings.App](t)(f.Apps.FindAppByServerKey(ctx, rotated.ServerKey)); got.ID != app.ID {
		t.Errorf("the new key finds %q, want %q", got.ID, app.ID)
	}

	fields := []string{tidings.FieldDisplayName}
	upd := must[*tidings.App](t)(f.Apps.UpdateApp(ctx, app.ID, tidings.AppUpdate{Name: ptr("boutique"), UserEditableFields: &fields}))
	if upd.Name != "boutique" || !slices.Equal(upd.UserEditableFields, fields) {
		t.Errorf("updated app %+v", upd)
	}
	if got := must[*tidings.App](t)(f.Apps.FindAppByID(ctx, app.ID)); got.Name != "boutique" || !slices.Equal(got.UserEditableFields, fields) {
		t.Errorf("app read back after update %+v", got)
	}
	_, err = f.Apps.UpdateApp(ctx, app.ID, tidings.AppUpdate{UserEditableFields: &[]string{"shoeSize"}})
	wantCode(t, "make an unknown field editable", err, tidings.EInvalid)
	_, err = f.Apps.UpdateApp(ctx, "nope", tidings.AppUpdate{Name: ptr("x")})
	wantCode(t, "update an unknown app", err, tidings.ENotFound)

	apps := must[[]*tidings.App](t)(f.Apps.ListApps(ctx))
	var ids []string
	for _, a := range apps {
		ids = append(ids, a.ID)
		if a.ServerKey != "" {
			t.Errorf("listed app %s carries its server key", a.ID)
		}
	}
	if !slices.Equal(ids, []string{"a", "b", app.ID}) {
		t.Errorf("apps %v, want oldest first [a b %s]", ids, app.ID)
	}
}

// TestUsers: the app server creates and lists users; users find each
// other within their app; a profile is changed by the server or by its
// user, for the fields the app allows; identifiers are unique per kind.
func TestUsers(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	alice := must[*tidings.User](t)(f.Users.CreateUser(server("a"), &tidings.User{ID: "alice"}))
	if alice.DisplayName != "alice" || alice.CreatedAt.IsZero() {
		t.Errorf("created %+v: want the display name to default to the id, and a creation time", alice)
	}
	f.mkUsers("a", "carol", "bob", "dave")
	_, err := f.Users.CreateUser(server("a"), &tidings.User{ID: "alice"})
	wantCode(t, "create a taken id", err, tidings.EConflict)
	_, err = f.Users.CreateUser(server("a"), &tidings.User{ID: "-alice"})
	wantCode(t, "create a bad id", err, tidings.EInvalid)
	_, err = f.Users.CreateUser(as("a", "alice"), &tidings.User{ID: "mallory"})
	wantCode(t, "a user creates a user", err, tidings.EForbidden)

	if got := must[*tidings.User](t)(f.Users.FindUserByID(as("a", "bob"), "alice")); got.ID != "alice" {
		t.Errorf("bob finds %+v", got)
	}
	_, err = f.Users.FindUserByID(as("a", "bob"), "zoe")
	wantCode(t, "find an unknown user", err, tidings.ENotFound)

	page := must[[]*tidings.User](t)(f.Users.ListUsers(server("a"), tidings.UserFilter{Limit: 2}))
	next := must[[]*tidings.User](t)(f.Users.ListUsers(server("a"), tidings.UserFilter{After: page[len(page)-1].ID, Limit: 2}))
	var ids []string
	for _, u := range append(page, next...) {
		ids = append(ids, u.ID)
	}
	if !slices.Equal(ids, []string{"alice", "bob", "carol", "dave"}) {
		t.Errorf("users in two pages of 2: %v, want ordered by id", ids)
	}
	_, err = f.Users.ListUsers(as("a", "alice"), tidings.UserFilter{})
	wantCode(t, "a user lists users", err, tidings.EForbidden)

	// A user changes the fields their app lets them change, and only
	// their own profile.
	upd := must[*tidings.User](t)(f.Users.UpdateUser(as("a", "alice"), "alice", tidings.UserUpdate{DisplayName: ptr("Alice")}))
	if upd.DisplayName != "Alice" || upd.UpdatedAt.Before(upd.CreatedAt) {
		t.Errorf("updated %+v", upd)
	}
	if got := must[*tidings.User](t)(f.Users.FindUserByID(as("a", "bob"), "alice")); got.DisplayName != "Alice" {
		t.Errorf("read back %+v", got)
	}
	email := &tidings.Identifier{Value: "alice@example.com", Kind: "email"}
	_, err = f.Users.UpdateUser(as("a", "alice"), "alice", tidings.UserUpdate{Identifier: email})
	wantCode(t, "a user sets their identifier", err, tidings.EForbidden)
	_, err = f.Users.UpdateUser(as("a", "bob"), "alice", tidings.UserUpdate{DisplayName: ptr("Bob was here")})
	wantCode(t, "a user changes another's profile", err, tidings.EForbidden)
	must[*tidings.User](t)(f.Users.UpdateUser(server("a"), "alice", tidings.UserUpdate{Identifier: email}))
	_, err = f.Users.UpdateUser(server("a"), "bob", tidings.UserUpdate{Identifier: email})
	wantCode(t, "give bob alice's e-mail", err, tidings.EConflict)
	must[*tidings.User](t)(f.Users.UpdateUser(server("a"), "bob", tidings.UserUpdate{Identifier: &tidings.Identifier{Value: "alice@example.com", Kind: "login"}}))
	// Another app may have the same identifier.
	f.mkUsers("b", "alice2")
	must[*tidings.User](t)(f.Users.UpdateUser(server("b"), "alice2", tidings.UserUpdate{Identifier: email}))

	// The app may let users change their identifier.
	fields := []string{tidings.FieldDisplayName, tidings.FieldIdentifier}
	must[*tidings.App](t)(f.Apps.UpdateApp(context.Background(), "a", tidings.AppUpdate{UserEditableFields: &fields}))
	got := must[*tidings.User](t)(f.Users.UpdateUser(as("a", "carol"), "carol", tidings.UserUpdate{Identifier: &tidings.Identifier{Value: "carol@example.com", Kind: "email"}}))
	if got.Identifier == nil || got.Identifier.Value != "carol@example.com" {
		t.Errorf("carol's identifier %+v", got.Identifier)
	}
	_, err = f.Users.UpdateUser(as("a", "carol"), "carol", tidings.UserUpdate{AvatarURL: ptr("https://example.com/c.png")})
	wantCode(t, "a user sets a field the app no longer lets them", err, tidings.EForbidden)
	_, err = f.Users.UpdateUser(server("a"), "zoe", tidings.UserUpdate{DisplayName: ptr("Zoe")})
	wantCode(t, "update an unknown user", err, tidings.ENotFound)
}

// TestProfileEvents: profile.update is emitted on creation (without actor)
// and on every change, and reaches the user themself only.
func TestProfileEvents(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkConv("a", "alice", tidings.NewConversation{}, "bob")
	f.mkConv("a", "alice", tidings.NewConversation{}, "bob") // a second shared conversation: still once each
	must[*tidings.User](t)(f.Users.UpdateUser(as("a", "alice"), "alice", tidings.UserUpdate{DisplayName: ptr("Alice")}))
	must[*tidings.User](t)(f.Users.UpdateUser(server("a"), "alice", tidings.UserUpdate{AvatarURL: ptr("https://example.com/a.png")}))

	var profile []*tidings.Event
	for _, e := range f.stream("a", "alice", 0) {
		if e.Name == tidings.EventProfileUpdate {
			profile = append(profile, e)
		}
	}
	if len(profile) != 3 {
		t.Fatalf("alice's profile events: %q, want creation and two updates", describe(profile))
	}
	if profile[0].Actor != nil {
		t.Errorf("creation's actor %+v, want none (the server)", profile[0].Actor)
	}
	if profile[1].Actor == nil || profile[1].Actor.ID != "alice" || profile[2].Actor != nil {
		t.Errorf("actors %+v, %+v: want alice, then none (the server)", profile[1].Actor, profile[2].Actor)
	}
	var p tidings.ProfilePayload
	if err := unmarshal(profile[2].Payload, &p); err != nil || p.ProfileID != "alice" || p.User == nil ||
		p.User.DisplayName != "Alice" || p.User.AvatarURL != "https://example.com/a.png" {
		t.Errorf("last profile payload %s: want the whole profile after the change", profile[2].Payload)
	}
	// Those who share a conversation with alice get her changes made
	// since, once each; those who share none get nothing about her.
	var aboutAlice []*tidings.Event
	for _, e := range f.stream("a", "bob", 0) {
		if e.Name == tidings.EventProfileUpdate && e.UserID == "alice" {
			aboutAlice = append(aboutAlice, e)
		}
	}
	if len(aboutAlice) != 2 || aboutAlice[0].Seq != profile[1].Seq || aboutAlice[1].Seq != profile[2].Seq {
		t.Errorf("bob's events about alice: %q, want her two changes made while they share conversations, once each", describe(aboutAlice))
	}
	for _, e := range f.stream("a", "carol", 0) {
		if e.Name == tidings.EventProfileUpdate && e.UserID != "carol" {
			t.Errorf("carol, who shares no conversation, received %s about %s", e.Name, e.UserID)
		}
	}
}

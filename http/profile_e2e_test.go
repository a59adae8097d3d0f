package http_test

import (
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// A user cannot pass for someone else: the identifier and the metadata are
// the app server's unless the app lets users set them, and an identifier
// belongs to one user.
func TestUsersCannotImpersonateThroughTheirProfile(t *testing.T) {
	w := newWorld(t)
	key := w.acme.ServerKey
	w.call("POST", "/v1/users", key, map[string]any{"id": "alice",
		"identifier": map[string]string{"value": "alice@corp.example", "kind": "email"}}).ok(t, 201, nil)
	mallory := w.createUser(w.acme, "mallory")

	for field, body := range map[string]map[string]any{
		"identifier": {"identifier": map[string]string{"value": "alice@corp.example", "kind": "email"}},
		"metadata":   {"displayName": "Alice", "metadata": map[string]any{"verified": true}},
	} {
		msg := w.call("PATCH", "/v1/users/mallory", mallory, body).fails(t, 403, tidings.EForbidden)
		if !strings.Contains(msg, field) || !strings.Contains(msg, "server key") {
			t.Errorf("setting %s: message %q does not name the field and who may set it", field, msg)
		}
	}
	var u tidings.User
	w.call("GET", "/v1/users/mallory", mallory, nil).ok(t, 200, &u)
	if u.Identifier != nil || u.Metadata != nil || u.DisplayName != "Mallory" {
		t.Fatalf("mallory's profile changed: %+v", u)
	}
	// Their display name and avatar stay theirs.
	w.call("PATCH", "/v1/users/mallory", mallory, map[string]any{"displayName": "Mal", "avatarUrl": "https://example.com/m.png"}).ok(t, 200, &u)

	// Identifiers are unique, even for the server.
	w.call("PATCH", "/v1/users/mallory", key, map[string]any{
		"identifier": map[string]string{"value": "alice@corp.example", "kind": "email"}}).fails(t, 409, tidings.EConflict)
	w.call("POST", "/v1/users", key, map[string]any{"id": "eve",
		"identifier": map[string]string{"value": "alice@corp.example", "kind": "email"}}).fails(t, 409, tidings.EConflict)
	w.call("PATCH", "/v1/users/mallory", key, map[string]any{"metadata": map[string]any{"verified": false}}).ok(t, 200, nil)

	// The app decides: GET and PATCH /v1/app, with the server key only.
	var app tidings.App
	w.call("GET", "/v1/app", key, nil).ok(t, 200, &app)
	if app.ID != "acme" || strings.Join(app.UserEditableFields, ",") != "displayName,avatarUrl,presenceHidden" {
		t.Fatalf("GET /v1/app = %+v", app)
	}
	w.call("GET", "/v1/app", mallory, nil).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/app", mallory, map[string]any{"userEditableFields": []string{"metadata"}}).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/app", key, map[string]any{"userEditableFields": []string{"email"}}).fails(t, 400, tidings.EInvalid)
	w.call("PATCH", "/v1/app", key, map[string]any{"userEditableFields": []string{"displayName", "metadata"}}).ok(t, 200, &app)
	if strings.Join(app.UserEditableFields, ",") != "displayName,metadata" {
		t.Fatalf("PATCH /v1/app = %+v", app)
	}
	w.call("PATCH", "/v1/users/mallory", mallory, map[string]any{"metadata": map[string]any{"mood": "happy"}}).ok(t, 200, nil)
	w.call("PATCH", "/v1/users/mallory", mallory, map[string]any{"avatarUrl": ""}).fails(t, 403, tidings.EForbidden)
	// Another app is left alone.
	w.call("GET", "/v1/app", w.globex.ServerKey, nil).ok(t, 200, &app)
	if app.ID != "globex" || strings.Join(app.UserEditableFields, ",") != "displayName,avatarUrl,presenceHidden" {
		t.Fatalf("GET /v1/app of globex = %+v", app)
	}
}

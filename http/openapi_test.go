package http

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// doc is the parsed OpenAPI document, walked as plain JSON.
type doc map[string]any

func parseOpenAPI(t *testing.T) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal(openAPI, &d); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return d
}

// resolve follows a local $ref ("#/components/…") if v is one.
func (d doc) resolve(t *testing.T, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var cur any = map[string]any(d)
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		next, ok := cur.(map[string]any)[part]
		if !ok {
			t.Fatalf("$ref %q does not resolve", ref)
		}
		cur = next
	}
	return cur.(map[string]any)
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operation is one operation of the document.
type operation struct {
	method, path string
	op           map[string]any
	params       []map[string]any // path-level and operation-level, resolved
}

func (d doc) operations(t *testing.T) []operation {
	t.Helper()
	var ops []operation
	for path, item := range d["paths"].(map[string]any) {
		item := item.(map[string]any)
		var common []map[string]any
		for _, p := range asSlice(item["parameters"]) {
			common = append(common, d.resolve(t, p))
		}
		for _, m := range httpMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			o := operation{method: strings.ToUpper(m), path: path, op: op, params: slices.Clone(common)}
			for _, p := range asSlice(op["parameters"]) {
				o.params = append(o.params, d.resolve(t, p))
			}
			ops = append(ops, o)
		}
	}
	return ops
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// TestOpenAPIMatchesRoutes checks that the document describes exactly the
// routes the server serves (ServeMux's {name} wildcards are written as
// OpenAPI's path templates), no more, no less.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := parseOpenAPI(t)
	if v, _ := d["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Errorf("openapi version = %q", v)
	}
	documented := map[string]bool{}
	for _, o := range d.operations(t) {
		documented[o.method+" "+o.path] = true
	}
	served := map[string]bool{}
	for _, rt := range (&Server{}).routes() {
		served[rt.method+" "+rt.pattern] = true
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("openapi.json documents %s, which the server does not serve", r)
		}
	}
}

// TestOpenAPIOperationsAreDocumented checks what every operation must
// say for a client author to rely on it.
func TestOpenAPIOperationsAreDocumented(t *testing.T) {
	d := parseOpenAPI(t)
	auth := map[string]authKind{}
	for _, rt := range (&Server{}).routes() {
		auth[rt.method+" "+rt.pattern] = rt.auth
	}
	wantSecurity := map[authKind][]string{
		authNone:   nil,
		authServer: {"serverKey"},
		authUser:   {"userToken"},
		authAny:    {"serverKey", "userToken"},
	}
	ids := map[string]bool{}
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)

	for _, o := range d.operations(t) {
		name := o.method + " " + o.path
		op := o.op

		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", name)
		} else if ids[id] {
			t.Errorf("%s: operationId %q is used twice", name, id)
		}
		ids[id] = true
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", name)
		}
		if s, _ := op["description"].(string); s == "" {
			t.Errorf("%s has no description", name)
		}

		// Security must say which credential the route takes.
		security, ok := op["security"]
		if !ok {
			security = d["security"]
		}
		var schemes []string
		for _, req := range asSlice(security) {
			for scheme := range req.(map[string]any) {
				if _, ok := d.resolve(t, map[string]any{"$ref": "#/components/securitySchemes/" + scheme})["scheme"]; !ok {
					t.Errorf("%s: security scheme %q is not bearer", name, scheme)
				}
				schemes = append(schemes, scheme)
			}
		}
		slices.Sort(schemes)
		if want := wantSecurity[auth[name]]; !slices.Equal(schemes, want) {
			t.Errorf("%s: security %v; the route takes %v", name, schemes, want)
		}

		// Responses: a success, and every error in the error shape.
		responses, _ := op["responses"].(map[string]any)
		success := false
		var errs []string
		for status, resp := range responses {
			if strings.HasPrefix(status, "2") || status == "101" { // 101: the WebSocket upgrade
				success = true
				continue
			}
			errs = append(errs, status)
			r := d.resolve(t, resp)
			content, _ := r["content"].(map[string]any)
			media, _ := content["application/json"].(map[string]any)
			schema, _ := media["schema"].(map[string]any)
			if schema["$ref"] != "#/components/schemas/Error" {
				t.Errorf("%s: response %s is not documented as an Error", name, status)
			}
			if desc, _ := r["description"].(string); desc == "" {
				t.Errorf("%s: response %s has no description", name, status)
			}
		}
		if !success {
			t.Errorf("%s documents no success response", name)
		}
		need := []string{"500"}
		if auth[name] != authNone {
			need = append(need, "401", "403")
			if !freeRoutes[name] {
				need = append(need, "429")
			}
		}
		if pathParam.MatchString(o.path) {
			need = append(need, "404")
		}
		if body, ok := op["requestBody"].(map[string]any); ok {
			if _, isJSON := body["content"].(map[string]any)["application/json"]; isJSON {
				need = append(need, "400", "413", "415")
			}
		}
		for _, p := range o.params {
			if p["in"] == "query" {
				need = append(need, "400")
			}
		}
		for _, status := range need {
			if !slices.Contains(errs, status) {
				t.Errorf("%s does not document its %s response", name, status)
			}
		}

		// Every path wildcard is a documented, required path parameter.
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			found := false
			for _, p := range o.params {
				if p["in"] == "path" && p["name"] == m[1] && p["required"] == true {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: path parameter %q is not documented as required", name, m[1])
			}
		}
		for _, p := range o.params {
			if desc, _ := p["description"].(string); desc == "" {
				t.Errorf("%s: parameter %v has no description", name, p["name"])
			}
		}
	}
}

// TestOpenAPIRefsResolve walks the whole document and resolves every $ref.
func TestOpenAPIRefsResolve(t *testing.T) {
	d := parseOpenAPI(t)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"]; ok {
				d.resolve(t, v)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(map[string]any(d))
}

// TestOpenAPISchemasMatchDomain checks that the schemas of the domain's
// types have exactly the JSON fields of the Go types, so that a field
// added to the domain cannot go undocumented.
func TestOpenAPISchemasMatchDomain(t *testing.T) {
	d := parseOpenAPI(t)
	schemas := d["components"].(map[string]any)["schemas"].(map[string]any)
	for name, v := range map[string]any{
		"App":                tidings.App{},
		"AppUpdate":          tidings.AppUpdate{},
		"User":               tidings.User{},
		"Identifier":         tidings.Identifier{},
		"Profile":            tidings.Profile{},
		"UserUpdate":         tidings.UserUpdate{},
		"NewUser":            newUserRequest{},
		"UserPage":           userPage{},
		"TokenRequest":       tokenRequest{},
		"Token":              tokenResponse{},
		"DevTokenRequest":    devTokenRequest{},
		"Conversation":       tidings.Conversation{},
		"NewConversation":    tidings.NewConversation{},
		"ConversationUpdate": tidings.ConversationUpdate{},
		"ConversationPage":   tidings.ConversationPage{},
		"Roles":              tidings.Roles{},
		"RolePermissions":    tidings.RolePermissions{},
		"NewParticipant":     tidings.NewParticipant{},
		"RoleUpdate":         roleRequest{},
		"Participant":        tidings.Participant{},
		"ParticipantList":    tidings.ParticipantPage{},
		"Part":               tidings.Part{},
		"Message":            tidings.Message{},
		"NewMessage":         tidings.NewMessage{},
		"MessageEdit":        tidings.MessageEdit{},
		"MessagePage":        tidings.MessagePage{},
		"MarkRequest":        markRequest{},
		"MessageStatus":      tidings.MessageStatus{},
		"File":               tidings.File{},
		"BeforeSendHook":     tidings.BeforeSendHook{},
		"BeforeSendConfig":   tidings.BeforeSendConfig{},
		"WebhookEndpoint":    tidings.WebhookEndpoint{},
		"NewWebhook":         tidings.NewWebhook{},
		"WebhookUpdate":      tidings.WebhookUpdate{},
		"WebhookReplay":      tidings.WebhookReplay{},
		"WebhookAttempt":     tidings.WebhookAttempt{},
		"WebhookList":        webhookList{},
		"WebhookAttemptList": attemptList{},
		"Error":              errorResponse{},
		"Status":             status{},
		"PushTarget":         tidings.PushTarget{},
		"PushKeys":           tidings.PushKeys{},
		"NewPushTarget":      tidings.NewPushTarget{},
		"PushTargetList":     pushTargetList{},
		"PushSettings":       tidings.PushSettings{},
		"PushSettingsUpdate": tidings.PushSettingsUpdate{},
		"VAPIDPublicKey":     vapidKey{},
		"PushConfig":         tidings.PushConfig{},
		"PushConfigUpdate":   tidings.PushConfigUpdate{},
	} {
		schema, ok := schemas[name].(map[string]any)
		if !ok {
			t.Errorf("components/schemas has no %s", name)
			continue
		}
		var documented []string
		for p := range schema["properties"].(map[string]any) {
			documented = append(documented, p)
		}
		slices.Sort(documented)
		if fields := jsonFields(reflect.TypeOf(v)); !slices.Equal(documented, fields) {
			t.Errorf("schema %s has properties %v; the Go type has %v", name, documented, fields)
		}
	}
}

// jsonFields returns the sorted JSON names of the fields of struct type t.
func jsonFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func TestOpenAPIIsServed(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.do("GET", "/v1/openapi.json", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(resp.body, openAPI) {
		t.Error("served document differs from openapi.json")
	}
}

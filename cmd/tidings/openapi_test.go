package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// apiDoc is the OpenAPI document a server serves, walked as plain JSON,
// to check the server's answers against it.
type apiDoc struct {
	root  map[string]any
	paths []apiPath
}

type apiPath struct {
	template string
	re       *regexp.Regexp
	item     map[string]any
}

func fetchAPIDoc(t *testing.T, url string) *apiDoc {
	t.Helper()
	resp, err := http.Get(url + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d := &apiDoc{}
	if err := json.NewDecoder(resp.Body).Decode(&d.root); err != nil {
		t.Fatalf("GET /v1/openapi.json: %v", err)
	}
	wildcard := regexp.MustCompile(`\\\{[^}]+\\\}`)
	for template, item := range d.root["paths"].(map[string]any) {
		re := "^" + wildcard.ReplaceAllString(regexp.QuoteMeta(template), "[^/]+") + "$"
		d.paths = append(d.paths, apiPath{template, regexp.MustCompile(re), item.(map[string]any)})
	}
	// Literal paths before templates that also match them.
	slices.SortFunc(d.paths, func(a, b apiPath) int {
		return strings.Count(a.template, "{") - strings.Count(b.template, "{")
	})
	return d
}

// resolve follows a local $ref if v is one.
func (d *apiDoc) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var cur any = d.root
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		cur = cur.(map[string]any)[part]
	}
	return d.resolve(cur)
}

// operation returns the operation that answers method path, and its
// parameters (resolved); nil if none does.
func (d *apiDoc) operation(method, path string) (map[string]any, []map[string]any) {
	path, _, _ = strings.Cut(path, "?")
	for _, p := range d.paths {
		if !p.re.MatchString(path) {
			continue
		}
		op, _ := p.item[strings.ToLower(method)].(map[string]any)
		if op == nil {
			return nil, nil
		}
		var params []map[string]any
		for _, list := range []any{p.item["parameters"], op["parameters"]} {
			l, _ := list.([]any)
			for _, param := range l {
				params = append(params, d.resolve(param))
			}
		}
		return op, params
	}
	return nil, nil
}

// check returns how an answer of the server to method path departs from
// the document: a status it does not list for the operation, a body that
// does not fit the schema, a documented header missing.
func (d *apiDoc) check(method, path string, status int, header http.Header, body []byte) []string {
	op, _ := d.operation(method, path)
	if op == nil {
		return []string{"no operation documented"}
	}
	resp, ok := op["responses"].(map[string]any)[fmt.Sprint(status)]
	if !ok {
		return []string{fmt.Sprintf("status %d is not documented", status)}
	}
	r := d.resolve(resp)
	var problems []string
	headers, _ := r["headers"].(map[string]any)
	for name := range headers {
		if header.Get(name) == "" {
			problems = append(problems, fmt.Sprintf("documented header %s is missing", name))
		}
	}
	content, _ := r["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) != 0 {
			problems = append(problems, fmt.Sprintf("documented without a body, has %q", body))
		}
		return problems
	}
	media, ok := content["application/json"].(map[string]any)
	if !ok {
		return problems // a file, metrics: any bytes
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		problems = append(problems, fmt.Sprintf("Content-Type %q, documented application/json", ct))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return append(problems, fmt.Sprintf("body is not JSON: %v", err))
	}
	return append(problems, d.validate(media["schema"], v, "body")...)
}

// validate checks v against schema, with the keywords the document uses.
// Objects are closed: a property the schema does not list is reported,
// unless additionalProperties allows it.
func (d *apiDoc) validate(schema any, v any, at string) []string {
	s := d.resolve(schema)
	if s == nil {
		return nil
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, at+": "+fmt.Sprintf(format, args...))
	}
	if c, ok := s["const"]; ok && c != v {
		bad("%v, documented %v", v, c)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		bad("%v is not one of %v", v, enum)
	}
	switch s["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("%s, documented an object", jsonKind(v))
			break
		}
		required, _ := s["required"].([]any)
		for _, name := range required {
			if _, ok := obj[name.(string)]; !ok {
				bad("required property %q is missing", name)
			}
		}
		props, _ := s["properties"].(map[string]any)
		if props == nil && s["additionalProperties"] == nil {
			break // any object
		}
		for name, pv := range obj {
			if ps, ok := props[name]; ok {
				problems = append(problems, d.validate(ps, pv, at+"."+name)...)
				continue
			}
			switch extra := s["additionalProperties"].(type) {
			case bool:
				if !extra {
					bad("property %q is not documented", name)
				}
			case map[string]any:
				problems = append(problems, d.validate(extra, pv, at+"."+name)...)
			default:
				bad("property %q is not documented", name)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("%s, documented an array", jsonKind(v))
			break
		}
		for i, item := range arr {
			problems = append(problems, d.validate(s["items"], item, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("%s, documented a string", jsonKind(v))
			break
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			bad("%q does not match %s", str, p)
		}
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		}
	case "integer":
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) {
			bad("%s, documented an integer", jsonKind(v))
			break
		}
		if m, ok := s["minimum"].(float64); ok && n < m {
			bad("%v is below the minimum %v", n, m)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("%s, documented a boolean", jsonKind(v))
		}
	}
	return problems
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", v)
	case float64, bool:
		return fmt.Sprintf("%T %v", v, v)
	default:
		return fmt.Sprintf("%T", v)
	}
}

// apiCaller sends requests to a server and checks every answer against
// its OpenAPI document.
type apiCaller struct {
	t   *testing.T
	url string
	doc *apiDoc
}

type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// call sends body (JSON unless contentType says otherwise; none if empty)
// with the credential cred ("" for none), checks the answer against the
// document and that its status is want, and returns it.
func (c *apiCaller) call(want int, method, path, cred, contentType, body string) apiAnswer {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	return c.do(want, req)
}

func (c *apiCaller) do(want int, req *http.Request) apiAnswer {
	c.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b []byte
	if resp.StatusCode != http.StatusSwitchingProtocols { // a WebSocket: no body to read
		if b, err = io.ReadAll(resp.Body); err != nil {
			c.t.Fatal(err)
		}
	}
	a := apiAnswer{resp.StatusCode, resp.Header, b}
	method, path := req.Method, req.URL.RequestURI()
	if a.header.Get("X-Request-Id") == "" && a.status != http.StatusSwitchingProtocols {
		c.t.Errorf("%s %s → %d: no X-Request-Id", method, path, a.status)
	}
	for _, p := range c.doc.check(method, path, a.status, a.header, a.body) {
		c.t.Errorf("%s %s → %d: %s", method, path, a.status, p)
	}
	if a.status != want {
		c.t.Errorf("%s %s: status %d, want %d; body %s", method, path, a.status, want, b)
	}
	return a
}

// checkQuery calls GET path (whose query, if any, ends with "&") with each
// integer or boolean query parameter it documents: at its documented
// bounds, which must be accepted, and past them or of the wrong type,
// which must be 400.
func (c *apiCaller) checkQuery(path, cred string) {
	c.t.Helper()
	_, params := c.doc.operation("GET", path)
	sep := "?"
	if strings.Contains(path, "?") {
		sep = ""
	}
	n := 0
	for _, p := range params {
		if p["in"] != "query" {
			continue
		}
		s := c.doc.resolve(p["schema"])
		name := p["name"].(string)
		good, bad := []string{}, []string{"x"}
		switch s["type"] {
		case "integer":
			for _, bound := range []struct {
				key  string
				past float64
			}{{"minimum", -1}, {"maximum", 1}} {
				if b, ok := s[bound.key].(float64); ok {
					good = append(good, fmt.Sprint(b))
					bad = append(bad, fmt.Sprint(b+bound.past))
				}
			}
		case "boolean":
			good = []string{"true", "false"}
		default:
			continue
		}
		n++
		for _, v := range good {
			c.call(200, "GET", path+sep+name+"="+v, cred, "", "")
		}
		for _, v := range bad {
			if a := c.call(400, "GET", path+sep+name+"="+v, cred, "", ""); a.errorCode() != "invalid_argument" {
				c.t.Errorf("GET %s%s%s=%s: code %q, want invalid_argument", path, sep, name, v, a.errorCode())
			}
		}
	}
	if n == 0 {
		c.t.Errorf("GET %s documents no integer or boolean query parameter", path)
	}
}

// callHeader sends a request with the headers h and no body, and
// checks the answer as call does.
func (c *apiCaller) callHeader(want int, method, path string, h http.Header) apiAnswer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header = h
	return c.do(want, req)
}

// field returns the string field name of a JSON answer.
func (a apiAnswer) field(t *testing.T, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %s: %v", a.body, err)
	}
	s, _ := m[name].(string)
	return s
}

// errorCode returns the code of an error answer.
func (a apiAnswer) errorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// TestServedAPIMatchesOpenAPI drives every operation of a real server, as
// "tidings serve" runs it, through its successes and its common errors, and
// checks every answer against the OpenAPI document the server serves:
// each status is one the operation documents, each JSON body fits the
// documented schema (with no undocumented property), each documented
// header is there.
func TestServedAPIMatchesOpenAPI(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir, "--max-body-bytes", "100KiB")
	t.Cleanup(func() { stop() })
	c := &apiCaller{t: t, url: url, doc: fetchAPIDoc(t, url)}
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]

	// Health, metrics, the document itself: no credential.
	c.call(200, "GET", "/healthz", "", "", "")
	c.call(200, "GET", "/readyz", "", "", "")
	c.call(200, "GET", "/metrics", "", "", "")
	c.call(200, "GET", "/v1/openapi.json", "", "", "")
	c.call(404, "POST", "/v1/dev/token", "", "", `{"userId":"alice"}`) // not in development mode

	// Users, with the server key.
	c.call(201, "POST", "/v1/users", key, "", `{"id":"alice","displayName":"Alice","identifier":{"value":"alice@example.com","kind":"email"},"metadata":{"plan":"pro"}}`)
	c.call(201, "POST", "/v1/users", key, "", `{"id":"bob","displayName":"Bob"}`)
	c.call(201, "POST", "/v1/users", key, "", `{"id":"carol"}`)
	c.call(409, "POST", "/v1/users", key, "", `{"id":"bob"}`)
	c.call(200, "GET", "/v1/users?limit=2", key, "", "")
	c.call(200, "GET", "/v1/users?after=alice", key, "", "")
	c.call(400, "GET", "/v1/users?limit=nope", key, "", "")
	c.call(200, "GET", "/v1/users/alice", key, "", "")
	c.call(404, "GET", "/v1/users/nobody", key, "", "")
	c.call(200, "PATCH", "/v1/users/bob", key, "", `{"displayName":"Robert"}`)
	c.call(404, "PATCH", "/v1/users/nobody", key, "", `{"displayName":"X"}`)
	alice := c.call(201, "POST", "/v1/users/alice/tokens", key, "", "").field(t, "token")
	bob := c.call(201, "POST", "/v1/users/bob/tokens", key, "", `{"ttlSeconds":3600}`).field(t, "token")
	carol := c.call(201, "POST", "/v1/users/carol/tokens", key, "", "").field(t, "token")
	c.call(404, "POST", "/v1/users/nobody/tokens", key, "", "")
	c.call(400, "POST", "/v1/users/alice/tokens", key, "", `{"ttlSeconds":-1}`)

	// The common errors, documented on every operation that can have
	// them: 401 with WWW-Authenticate, 403, 400, 413, 415.
	// A signature changed in its first character, which carries six bits
	// of it: never the one minted (changing its last characters could
	// leave it as it was).
	sig := strings.LastIndexByte(alice, '.') + 1
	first := "A"
	if alice[sig] == 'A' {
		first = "B"
	}
	tampered := alice[:sig] + first + alice[sig+1:]
	for _, cred := range []string{"", "nonsense", "tsk_nonsense", tampered} {
		a := c.call(401, "GET", "/v1/users", cred, "", "")
		if a.header.Get("WWW-Authenticate") != "Bearer" || a.errorCode() != "unauthenticated" {
			t.Errorf("credential %q: WWW-Authenticate %q, code %q", cred, a.header.Get("WWW-Authenticate"), a.errorCode())
		}
		c.call(401, "GET", "/v1/me", cred, "", "")
	}
	for _, a := range []apiAnswer{
		c.call(403, "GET", "/v1/users", alice, "", ""),
		c.call(403, "POST", "/v1/users/bob/tokens", alice, "", ""),
		c.call(403, "GET", "/v1/me", key, "", ""),
		c.call(403, "POST", "/v1/conversations/nope/read", key, "", `{"seq":1}`),
		c.call(403, "PATCH", "/v1/users/bob", alice, "", `{"displayName":"Bobby"}`),
	} {
		if a.errorCode() != "forbidden" {
			t.Errorf("403 with code %q", a.errorCode())
		}
	}
	for _, tc := range []struct {
		status            int
		code, ctype, body string
	}{
		{400, "invalid_json", "", `{"id":"dave","nickname":"D"}`},
		{400, "invalid_json", "", `{"id":"dave",}`},
		{400, "invalid_argument", "", `{"id":"-dave"}`},
		{413, "too_large", "", `{"id":"dave","displayName":"` + strings.Repeat("x", 100<<10) + `"}`},
		{415, "unsupported_media_type", "text/plain", `{"id":"dave"}`},
	} {
		if a := c.call(tc.status, "POST", "/v1/users", key, tc.ctype, tc.body); a.errorCode() != tc.code {
			t.Errorf("POST /v1/users %.40s: code %q, want %q", tc.body, a.errorCode(), tc.code)
		}
	}
	c.call(200, "GET", "/v1/me", alice, "", "")
	c.call(200, "GET", "/v1/users/bob", alice, "", "")
	c.call(200, "PATCH", "/v1/users/alice", alice, "", `{"avatarUrl":"https://example.com/alice.png"}`)

	// Conversations.
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"lunch","name":"Lunch","participants":[{"userId":"bob"}]}`)
	c.call(409, "POST", "/v1/conversations", alice, "", `{"id":"lunch"}`)
	c.call(404, "POST", "/v1/conversations", alice, "", `{"participants":[{"userId":"nobody"}]}`)
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"square","name":"Town square","isPublic":true}`)
	c.call(200, "GET", "/v1/conversations", bob, "", "")
	c.call(200, "GET", "/v1/conversations?limit=1&includeDeleted=true", alice, "", "")
	c.call(400, "GET", "/v1/conversations?limit=0", alice, "", "")
	c.call(200, "GET", "/v1/conversations/lunch", bob, "", "")
	c.call(404, "GET", "/v1/conversations/nope", bob, "", "")
	c.call(404, "GET", "/v1/conversations/lunch", carol, "", "")
	c.call(200, "PATCH", "/v1/conversations/lunch", alice, "", `{"name":"Lunch at noon"}`)
	c.call(403, "PATCH", "/v1/conversations/lunch", bob, "", `{"name":"Bob's lunch"}`)
	c.call(200, "GET", "/v1/conversations/lunch/participants", bob, "", "")
	c.call(201, "POST", "/v1/conversations/lunch/participants", alice, "", `{"userId":"carol"}`)
	c.call(409, "POST", "/v1/conversations/lunch/participants", alice, "", `{"userId":"carol"}`)
	c.call(200, "PATCH", "/v1/conversations/lunch/participants/carol", alice, "", `{"role":"admin"}`)
	c.call(204, "DELETE", "/v1/conversations/lunch/participants/carol", alice, "", "")
	c.call(404, "DELETE", "/v1/conversations/lunch/participants/carol", alice, "", "")
	c.call(200, "POST", "/v1/conversations/square/join", bob, "", "")
	c.call(204, "POST", "/v1/conversations/square/leave", bob, "", "")
	c.call(404, "POST", "/v1/conversations/lunch/join", carol, "", "")

	// Messages and marks.
	c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", `{"clientId":"m1","parts":[{"type":"text/plain","data":"hi bob"}],"metadata":{"k":"v"},"alert":"Alice: hi bob"}`)
	c.call(200, "POST", "/v1/conversations/lunch/messages", alice, "", `{"clientId":"m1","parts":[{"type":"text/plain","data":"hi bob"}]}`)
	m := c.call(201, "POST", "/v1/conversations/lunch/messages", bob, "", `{"parts":[{"type":"text/plain","data":"hi"}]}`).field(t, "id")
	c.call(400, "POST", "/v1/conversations/lunch/messages", bob, "", `{"parts":[]}`)
	c.call(404, "POST", "/v1/conversations/nope/messages", bob, "", `{"parts":[{"type":"text/plain","data":"hi"}]}`)
	c.call(200, "GET", "/v1/conversations/lunch/messages?limit=1", bob, "", "")
	c.call(200, "GET", "/v1/conversations/lunch/messages?after=0", bob, "", "")
	c.call(400, "GET", "/v1/conversations/lunch/messages?before=2&after=0", bob, "", "")
	c.call(400, "GET", "/v1/conversations/lunch/messages?before=x", bob, "", "")
	c.call(200, "GET", "/v1/conversations/lunch/messages/"+m, alice, "", "")
	c.call(404, "GET", "/v1/conversations/lunch/messages/nope", alice, "", "")
	c.call(200, "PATCH", "/v1/conversations/lunch/messages/"+m, bob, "", `{"parts":[{"type":"text/plain","data":"hello"}]}`)
	c.call(403, "PATCH", "/v1/conversations/lunch/messages/"+m, alice, "", `{"parts":[{"type":"text/plain","data":"hacked"}]}`)
	c.call(200, "POST", "/v1/conversations/lunch/delivered", alice, "", `{"seq":2}`)
	c.call(200, "POST", "/v1/conversations/lunch/read", alice, "", `{"seq":2}`)
	c.call(200, "POST", "/v1/conversations/lunch/read", bob, "", `{}`)
	c.call(400, "POST", "/v1/conversations/lunch/read", alice, "", `{"seq":99}`)
	c.call(204, "DELETE", "/v1/conversations/lunch/messages/"+m, bob, "", "")

	// Files.
	f := c.call(201, "POST", "/v1/conversations/lunch/files?name=menu.txt", bob, "text/plain", "soup, bread").field(t, "id")
	c.call(200, "GET", "/v1/conversations/lunch/files/"+f, alice, "", "")
	c.call(404, "GET", "/v1/conversations/lunch/files/nope", alice, "", "")
	c.call(404, "POST", "/v1/conversations/nope/files?name=x.txt", bob, "text/plain", "x")

	// Realtime, for clients without a WebSocket.
	c.call(200, "GET", "/v1/realtime/poll?device=laptop", bob, "", "")
	c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", `{"parts":[{"type":"text/plain","data":"news"}]}`)
	ref := c.call(200, "GET", "/v1/realtime/poll?device=laptop&wait=5&limit=10", bob, "", "").field(t, "lastRef")
	// Polling does not move the device's cursor; a reply does.
	if a := c.call(200, "GET", "/v1/realtime/poll?device=laptop", bob, "", ""); !strings.Contains(string(a.body), `"ref":"`+ref+`"`) {
		t.Errorf("a second poll before the reply: %s; want update %s again", a.body, ref)
	}
	c.call(204, "POST", "/v1/realtime/replies", bob, "", `{"device":"laptop","ref":"`+ref+`"}`)
	if a := c.call(200, "GET", "/v1/realtime/poll?device=laptop", bob, "", ""); a.field(t, "lastRef") != ref || strings.Contains(string(a.body), `"ref":"`) {
		t.Errorf("a poll after the reply: %s; want no update, and lastRef %s", a.body, ref)
	}
	c.call(400, "POST", "/v1/realtime/replies", bob, "", `{"device":"laptop","ref":"not a ref"}`)
	c.call(400, "GET", "/v1/realtime/poll?wait=61", bob, "", "")
	c.call(400, "GET", "/v1/realtime/poll?device=a%20b", bob, "", "")
	c.call(204, "POST", "/v1/conversations/lunch/typing", bob, "", `{"typing":true}`)
	c.call(400, "POST", "/v1/conversations/lunch/typing", bob, "", `{}`)
	c.call(200, "GET", "/v1/conversations/lunch/presence", alice, "", "")
	c.call(400, "GET", "/v1/realtime", "", "", "") // not a WebSocket handshake
	handshake := func(extra ...string) http.Header {
		h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {"tidings.v1"}}
		for i := 0; i < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	c.callHeader(101, "GET", "/v1/realtime", handshake())
	c.callHeader(403, "GET", "/v1/realtime", handshake("Origin", "https://elsewhere.example"))
	c.callHeader(400, "GET", "/v1/realtime", handshake("Sec-Websocket-Protocol", "tidings.v0"))
	c.callHeader(400, "GET", "/v1/realtime", handshake("Sec-Websocket-Version", "8"))
	c.call(404, "GET", "/v1/conversations/nope/presence", alice, "", "")

	// The query parameters, at and past their documented bounds; the poll
	// from the start of the stream, which answers at once even with wait.
	c.checkQuery("/v1/users", key)
	c.checkQuery("/v1/conversations", bob)
	c.checkQuery("/v1/conversations/lunch/messages", bob)
	c.checkQuery("/v1/realtime/poll?after=0&", bob)
	c.call(200, "GET", "/v1/realtime/poll?after=latest&device="+strings.Repeat("d", 64), bob, "", "")
	c.call(400, "GET", "/v1/realtime/poll?device="+strings.Repeat("d", 65), bob, "", "")
	c.call(400, "GET", "/v1/realtime/poll?after=x", bob, "", "")
	if a := c.call(410, "GET", "/v1/realtime/poll?after=999999", bob, "", ""); a.errorCode() != "resync_required" || !strings.Contains(string(a.body), `"ref":"`) {
		t.Errorf("a poll after a ref the server never gave: %s; want resync_required with the newest ref", a.body)
	}

	// Limit's default: 50.
	for i := range 50 {
		c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", fmt.Sprintf(`{"parts":[{"type":"text/plain","data":"%d"}]}`, i))
	}
	var page struct {
		Messages []json.RawMessage `json:"messages"`
		HasMore  bool              `json:"hasMore"`
	}
	if err := json.Unmarshal(c.call(200, "GET", "/v1/conversations/lunch/messages", bob, "", "").body, &page); err != nil || len(page.Messages) != 50 || !page.HasMore {
		t.Errorf("a page of messages without limit: %d messages, hasMore %v, %v; want the documented default, 50, and more", len(page.Messages), page.HasMore, err)
	}

	// Credentials are never taken from the URL.
	for _, q := range []string{"access_token", "token", "key"} {
		c.call(401, "GET", "/v1/me?"+q+"="+alice, "", "", "")
	}

	// Webhooks, with the server key.
	hook := c.call(201, "POST", "/v1/webhooks", key, "", `{"url":"http://127.0.0.1:9/hook","events":["conversationMessage.*"]}`).field(t, "id")
	c.call(201, "POST", "/v1/webhooks", key, "", `{"url":"https://example.com/hook","secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","disabled":true}`)
	c.call(400, "POST", "/v1/webhooks", key, "", `{"url":"ftp://example.com/hook"}`)
	c.call(400, "POST", "/v1/webhooks", key, "", `{"url":"https://example.com/hook","events":["conversation.participantTyping"]}`)
	c.call(400, "POST", "/v1/webhooks", key, "", `{"url":"https://example.com/hook","secret":"nope"}`)
	c.call(403, "POST", "/v1/webhooks", alice, "", `{"url":"https://example.com/hook"}`)
	c.call(200, "GET", "/v1/webhooks", key, "", "")
	c.call(200, "GET", "/v1/webhooks/"+hook, key, "", "")
	c.call(404, "GET", "/v1/webhooks/nope", key, "", "")
	c.call(200, "PATCH", "/v1/webhooks/"+hook, key, "", `{"events":["*"]}`)
	c.call(400, "PATCH", "/v1/webhooks/"+hook, key, "", `{"url":""}`)
	c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", `{"parts":[{"type":"text/plain","data":"for the hook"}]}`)
	deadline := time.Now().Add(30 * time.Second)
	for { // nothing listens on port 9: the attempts fail, without an answer
		var list struct{ Attempts []map[string]any }
		if err := json.Unmarshal(c.call(200, "GET", "/v1/webhooks/"+hook+"/attempts?limit=5", key, "", "").body, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Attempts) > 0 {
			if list.Attempts[0]["status"] != 0.0 || list.Attempts[0]["error"] == "" {
				t.Errorf("an attempt to a closed port: %v", list.Attempts[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no webhook attempt within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.call(400, "GET", "/v1/webhooks/"+hook+"/attempts?limit=101", key, "", "")
	c.call(404, "GET", "/v1/webhooks/nope/attempts", key, "", "")
	c.call(200, "POST", "/v1/webhooks/"+hook+"/replay", key, "", `{"fromSeq":1}`)
	c.call(400, "POST", "/v1/webhooks/"+hook+"/replay", key, "", `{}`)
	c.call(404, "POST", "/v1/webhooks/"+hook+"/replay", key, "", `{"fromEventId":"nope"}`)
	c.call(204, "DELETE", "/v1/webhooks/"+hook, key, "", "")
	c.call(404, "DELETE", "/v1/webhooks/"+hook, key, "", "")

	// Deleting a conversation, and undoing it.
	c.call(403, "DELETE", "/v1/conversations/lunch", bob, "", "")
	c.call(204, "DELETE", "/v1/conversations/lunch", alice, "", "")
	c.call(200, "POST", "/v1/conversations/lunch/undelete", alice, "", "")
	c.call(200, "POST", "/v1/conversations/lunch/undelete", alice, "", "") // already undone
}

// The checker itself finds what it is there to find.
func TestAPIDocCheck(t *testing.T) {
	var d apiDoc
	if err := json.Unmarshal([]byte(`{
		"paths": {"/v1/things/{id}": {"get": {"responses": {
			"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
			"204": {"headers": {"X-Count": {}}}
		}}}},
		"components": {"schemas": {"Thing": {"type": "object", "required": ["id"], "properties": {
			"id": {"type": "string", "pattern": "^[a-z]+$"},
			"n": {"type": "integer", "minimum": 0},
			"at": {"type": "string", "format": "date-time"},
			"kind": {"type": "string", "enum": ["a", "b"]},
			"tags": {"type": "array", "items": {"type": "string"}},
			"meta": {"type": "object", "additionalProperties": true}
		}}}}
	}`), &d.root); err != nil {
		t.Fatal(err)
	}
	d.paths = []apiPath{{"/v1/things/{id}", regexp.MustCompile(`^/v1/things/[^/]+$`), d.root["paths"].(map[string]any)["/v1/things/{id}"].(map[string]any)}}
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	if p := d.check("GET", "/v1/things/x?q=1", 200, jsonHeader,
		[]byte(`{"id":"x","n":1,"at":"2026-01-02T03:04:05.5Z","kind":"a","tags":["t"],"meta":{"any":[1]}}`)); len(p) != 0 {
		t.Errorf("a valid answer: %v", p)
	}
	for body, want := range map[string]string{
		`{"n":1}`:               `required property "id"`,
		`{"id":"x","extra":1}`:  `property "extra" is not documented`,
		`{"id":"X"}`:            "does not match",
		`{"id":"x","n":1.5}`:    "documented an integer",
		`{"id":"x","n":-1}`:     "minimum",
		`{"id":"x","at":"now"}`: "not a date-time",
		`{"id":"x","kind":"c"}`: "not one of",
		`{"id":"x","tags":[1]}`: "body.tags[0]",
		`{"id":null}`:           "null, documented a string",
		`[]`:                    "documented an object",
	} {
		if p := strings.Join(d.check("GET", "/v1/things/x", 200, jsonHeader, []byte(body)), "; "); !strings.Contains(p, want) {
			t.Errorf("%s: problems %q, want one mentioning %q", body, p, want)
		}
	}
	for _, tc := range []struct {
		method, path string
		status       int
		header       http.Header
		body, want   string
	}{
		{"GET", "/v1/things/x", 404, nil, "", "status 404 is not documented"},
		{"POST", "/v1/things/x", 200, nil, "", "no operation"},
		{"GET", "/v1/other", 200, nil, "", "no operation"},
		{"GET", "/v1/things/x", 204, nil, "", "header X-Count is missing"},
		{"GET", "/v1/things/x", 204, http.Header{"X-Count": {"1"}}, "x", "without a body"},
		{"GET", "/v1/things/x", 200, http.Header{"Content-Type": {"text/plain"}}, `{"id":"x"}`, "Content-Type"},
	} {
		if p := strings.Join(d.check(tc.method, tc.path, tc.status, tc.header, []byte(tc.body)), "; "); !strings.Contains(p, tc.want) {
			t.Errorf("%s %s %d: problems %q, want one mentioning %q", tc.method, tc.path, tc.status, p, tc.want)
		}
	}
}

// schemaNumber returns the number keyword of a property of a schema of
// the document, e.g. ("NewConversation", "name", "maxLength").
func (d *apiDoc) schemaNumber(t *testing.T, schema, property, keyword string) int {
	t.Helper()
	s := d.resolve(map[string]any{"$ref": "#/components/schemas/" + schema})
	if property != "" {
		props, _ := s["properties"].(map[string]any)
		s = d.resolve(props[property])
	}
	n, ok := s[keyword].(float64)
	if !ok {
		t.Fatalf("openapi.json: %s.%s has no %s", schema, property, keyword)
	}
	return int(n)
}

// TestServedAPIRequestLimits checks the limits openapi.json sets on
// request bodies on a real server: a value at the limit is accepted, one
// past it refused.
func TestServedAPIRequestLimits(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	t.Cleanup(func() { stop() })
	c := &apiCaller{t: t, url: url, doc: fetchAPIDoc(t, url)}
	d := c.doc
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	c.call(201, "POST", "/v1/users", key, "", `{"id":"alice"}`)
	alice := c.call(201, "POST", "/v1/users/alice/tokens", key, "", "").field(t, "token")
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"lunch"}`)
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	// Text limits count bytes of UTF-8: "é" is two.
	for _, tc := range []struct {
		schema, property, method, path, body string
		created                              bool
	}{
		{"NewConversation", "name", "POST", "/v1/conversations", `{"name":%s}`, true},
		{"NewConversation", "description", "POST", "/v1/conversations", `{"description":%s}`, true},
		{"ConversationUpdate", "name", "PATCH", "/v1/conversations/lunch", `{"name":%s}`, false},
		{"ConversationUpdate", "description", "PATCH", "/v1/conversations/lunch", `{"description":%s}`, false},
		{"NewMessage", "alert", "POST", "/v1/conversations/lunch/messages", `{"parts":[{"type":"text/plain","data":"x"}],"alert":%s}`, true},
	} {
		n := d.schemaNumber(t, tc.schema, tc.property, "maxLength")
		ok := 200
		if tc.created {
			ok = 201
		}
		c.call(ok, tc.method, tc.path, alice, "", fmt.Sprintf(tc.body, quote(strings.Repeat("x", n))))
		c.call(ok, tc.method, tc.path, alice, "", fmt.Sprintf(tc.body, quote(strings.Repeat("é", n/2))))
		c.call(400, tc.method, tc.path, alice, "", fmt.Sprintf(tc.body, quote(strings.Repeat("x", n+1))))
		c.call(400, tc.method, tc.path, alice, "", fmt.Sprintf(tc.body, quote(strings.Repeat("é", n/2+1))))
	}

	// Ids: 1 to 128 letters, digits and . _ @ : -, not starting with
	// punctuation.
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"`+strings.Repeat("c", 128)+`"}`)
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"a.b_c@d:e-f"}`)
	for _, id := range []string{strings.Repeat("c", 129), "-c", ".c", "c d", "c/d", "ç"} {
		c.call(400, "POST", "/v1/conversations", alice, "", `{"id":`+quote(id)+`}`)
	}

	// Parts: minItems and maxItems, on sending and editing.
	parts := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = `{"type":"text/plain","data":"x"}`
		}
		return `{"parts":[` + strings.Join(p, ",") + `]}`
	}
	for _, schema := range []string{"NewMessage", "MessageEdit"} {
		lo, hi := d.schemaNumber(t, schema, "parts", "minItems"), d.schemaNumber(t, schema, "parts", "maxItems")
		m := c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", parts(hi)).field(t, "id")
		c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", parts(lo))
		c.call(400, "POST", "/v1/conversations/lunch/messages", alice, "", parts(hi+1))
		c.call(400, "POST", "/v1/conversations/lunch/messages", alice, "", parts(lo-1))
		c.call(200, "PATCH", "/v1/conversations/lunch/messages/"+m, alice, "", parts(hi))
		c.call(400, "PATCH", "/v1/conversations/lunch/messages/"+m, alice, "", parts(hi+1))
	}
	n := d.schemaNumber(t, "NewConversation", "participants", "maxItems")
	many := make([]string, n+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"userId":"u%d"}`, i)
	}
	c.call(400, "POST", "/v1/conversations", alice, "", `{"participants":[`+strings.Join(many, ",")+`]}`)

	// Numbers with a minimum.
	c.call(400, "POST", "/v1/users/alice/tokens", key, "", fmt.Sprintf(`{"ttlSeconds":%d}`, d.schemaNumber(t, "TokenRequest", "ttlSeconds", "minimum")-1))
	c.call(400, "POST", "/v1/conversations/lunch/read", alice, "", fmt.Sprintf(`{"seq":%d}`, d.schemaNumber(t, "MarkRequest", "seq", "minimum")-1))
	c.call(400, "POST", "/v1/realtime/replies", alice, "", `{"device":"`+strings.Repeat("d", 65)+`","ref":"1"}`)
	c.call(400, "POST", "/v1/realtime/replies", alice, "", `{"device":"laptop"}`) // ref is required

	// Metadata: 16 KiB encoded on a user; on a message, what the
	// message's size limit (64 KiB by default, parts and alert included)
	// leaves.
	meta := func(n int) string { // an object of n bytes encoded
		return `{"k":"` + strings.Repeat("x", n-8) + `"}`
	}
	c.call(201, "POST", "/v1/users", key, "", `{"id":"bob","metadata":`+meta(16<<10)+`}`)
	if a := c.call(413, "POST", "/v1/users", key, "", `{"id":"carol","metadata":`+meta(16<<10+1)+`}`); a.errorCode() != "too_large" {
		t.Errorf("user metadata past 16 KiB: %s", a.body)
	}
	m := c.call(201, "POST", "/v1/conversations/lunch/messages", alice, "", `{"parts":[{"type":"text/plain","data":"x"}],"metadata":`+meta(32<<10)+`}`).field(t, "id")
	c.call(200, "PATCH", "/v1/conversations/lunch/messages/"+m, alice, "", `{"parts":[{"type":"text/plain","data":"y"}],"metadata":`+meta(48<<10)+`}`)
	if a := c.call(413, "PATCH", "/v1/conversations/lunch/messages/"+m, alice, "", `{"parts":[{"type":"text/plain","data":"y"}],"metadata":`+meta(64<<10)+`}`); a.errorCode() != "too_large" {
		t.Errorf("an edit past 64 KiB: %s", a.body)
	}
	if a := c.call(413, "POST", "/v1/conversations/lunch/messages", alice, "", `{"parts":[{"type":"text/plain","data":"x"}],"metadata":`+meta(64<<10)+`}`); a.errorCode() != "too_large" {
		t.Errorf("a message past 64 KiB: %s", a.body)
	}
}

// TestServedAPIBehavesAsDocumented checks, on a real server, what the
// descriptions of the operations in openapi.json promise.
func TestServedAPIBehavesAsDocumented(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	t.Cleanup(func() { stop() })
	c := &apiCaller{t: t, url: url, doc: fetchAPIDoc(t, url)}
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		c.call(201, "POST", "/v1/users", key, "", `{"id":"`+u+`"}`)
		tokens[u] = c.call(201, "POST", "/v1/users/"+u+"/tokens", key, "", "").field(t, "token")
	}
	alice, bob, carol := tokens["alice"], tokens["bob"], tokens["carol"]
	decode := func(a apiAnswer, v any) {
		t.Helper()
		if err := json.Unmarshal(a.body, v); err != nil {
			t.Fatalf("%s: %v", a.body, err)
		}
	}
	type conv struct {
		ID          string  `json:"id"`
		LastSeq     int64   `json:"lastSeq"`
		ReadSeq     int64   `json:"readSeq"`
		UnreadCount int64   `json:"unreadCount"`
		DeletedAt   *string `json:"deletedAt"`
	}
	send := func(tok, conv, text string) apiAnswer {
		t.Helper()
		return c.call(201, "POST", "/v1/conversations/"+conv+"/messages", tok, "", `{"parts":[{"type":"text/plain","data":"`+text+`"}]}`)
	}

	// The users list pages by id; a page that is not full has no nextAfter.
	var users struct {
		Users     []struct{ ID string } `json:"users"`
		NextAfter string                `json:"nextAfter"`
	}
	decode(c.call(200, "GET", "/v1/users?limit=2", key, "", ""), &users)
	if len(users.Users) != 2 || users.Users[0].ID != "alice" || users.NextAfter == "" {
		t.Errorf("first page of 2 users: %+v", users)
	}
	after := users.NextAfter
	users.NextAfter = ""
	decode(c.call(200, "GET", "/v1/users?limit=2&after="+after, key, "", ""), &users)
	if len(users.Users) != 1 || users.Users[0].ID != "carol" || users.NextAfter != "" {
		t.Errorf("last page of users: %+v", users)
	}

	// Sending moves the sender's own marks; the list is most recently
	// active first.
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"lunch","participants":[{"userId":"bob"}]}`)
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"dinner","participants":[{"userId":"bob"}]}`)
	send(alice, "lunch", "one")
	send(alice, "lunch", "two")
	var got conv
	decode(c.call(200, "GET", "/v1/conversations/lunch", alice, "", ""), &got)
	if got.LastSeq != 2 || got.ReadSeq != 2 || got.UnreadCount != 0 {
		t.Errorf("the sender's view after sending: %+v; want read up to 2", got)
	}
	var list struct{ Conversations []conv }
	decode(c.call(200, "GET", "/v1/conversations", bob, "", ""), &list)
	if len(list.Conversations) != 2 || list.Conversations[0].ID != "lunch" {
		t.Errorf("bob's conversations: %+v; want lunch, the most recently active, first", list.Conversations)
	}

	// Marks: the body is optional (the newest), never move back, and a
	// seq beyond the newest is 400.
	type marks struct{ DeliveredSeq, ReadSeq, UnreadCount int64 }
	var m marks
	decode(c.call(200, "POST", "/v1/conversations/lunch/delivered", bob, "", ""), &m)
	if m.DeliveredSeq != 2 || m.ReadSeq != 0 {
		t.Errorf("delivered without a body: %+v; want delivered 2", m)
	}
	decode(c.call(200, "POST", "/v1/conversations/lunch/read", bob, "", `{"seq":2}`), &m)
	decode(c.call(200, "POST", "/v1/conversations/lunch/read", bob, "", `{"seq":1}`), &m)
	if m.ReadSeq != 2 || m.UnreadCount != 0 {
		t.Errorf("read back to 1: %+v; want the mark to stay at 2", m)
	}
	c.call(400, "POST", "/v1/conversations/lunch/delivered", bob, "", `{"seq":3}`)

	// A deleted message keeps its seq, without content; deleting it again
	// is not an error.
	id := send(bob, "lunch", "oops").field(t, "id")
	c.call(204, "DELETE", "/v1/conversations/lunch/messages/"+id, bob, "", "")
	c.call(204, "DELETE", "/v1/conversations/lunch/messages/"+id, bob, "", "")
	a := c.call(200, "GET", "/v1/conversations/lunch/messages/"+id, alice, "", "")
	if a.field(t, "deletedAt") == "" || strings.Contains(string(a.body), "oops") || !strings.Contains(string(a.body), `"seq":3`) {
		t.Errorf("a deleted message: %s", a.body)
	}
	c.call(409, "PATCH", "/v1/conversations/lunch/messages/"+id, bob, "", `{"parts":[{"type":"text/plain","data":"again"}]}`)

	// Roles: the last owner can be neither demoted nor leave while others
	// remain.
	c.call(409, "PATCH", "/v1/conversations/lunch/participants/alice", alice, "", `{"role":"member"}`)
	c.call(409, "POST", "/v1/conversations/lunch/leave", alice, "", "")
	c.call(403, "PATCH", "/v1/conversations/lunch/participants/bob", bob, "", `{"role":"owner"}`)

	// Public conversations: visible to all, joined as member, joining
	// twice changes nothing.
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"square","isPublic":true}`)
	c.call(200, "GET", "/v1/conversations/square", carol, "", "")
	if a := c.call(200, "POST", "/v1/conversations/square/join", carol, "", ""); a.field(t, "role") != "member" {
		t.Errorf("joined as %s", a.body)
	}
	c.call(200, "POST", "/v1/conversations/square/join", carol, "", "")
	c.call(404, "POST", "/v1/conversations/dinner/join", carol, "", "")

	// A deleted conversation: still returned to its participants, closed
	// to messages and joins; undeleted, open again.
	c.call(204, "DELETE", "/v1/conversations/square", alice, "", "")
	var sq conv
	decode(c.call(200, "GET", "/v1/conversations/square", carol, "", ""), &sq)
	if sq.DeletedAt == nil {
		t.Errorf("a deleted conversation to a participant: %+v; want deletedAt", sq)
	}
	c.call(409, "POST", "/v1/conversations/square/messages", carol, "", `{"parts":[{"type":"text/plain","data":"hello?"}]}`)
	c.call(409, "POST", "/v1/conversations/square/files?name=a.txt", carol, "text/plain", "a")
	c.call(200, "POST", "/v1/conversations/square/undelete", alice, "", "")
	send(carol, "square", "hello")

	// Files: the file's type, always as an attachment.
	f := c.call(201, "POST", "/v1/conversations/lunch/files?name=menu.txt", bob, "text/csv", "soup,bread").field(t, "id")
	a = c.call(200, "GET", "/v1/conversations/lunch/files/"+f, alice, "", "")
	if ct, cd := a.header.Get("Content-Type"), a.header.Get("Content-Disposition"); !strings.HasPrefix(ct, "text/csv") || !strings.HasPrefix(cd, "attachment") || string(a.body) != "soup,bread" {
		t.Errorf("download: Content-Type %q, Content-Disposition %q, body %q", ct, cd, a.body)
	}
	c.call(404, "GET", "/v1/conversations/lunch/files/"+f, carol, "", "")

	// Replies: a cursor never moves back.
	c.call(200, "GET", "/v1/realtime/poll?device=phone", bob, "", "")
	send(alice, "lunch", "news")
	ref := c.call(200, "GET", "/v1/realtime/poll?device=phone", bob, "", "").field(t, "lastRef")
	c.call(204, "POST", "/v1/realtime/replies", bob, "", `{"device":"phone","ref":"`+ref+`"}`)
	c.call(204, "POST", "/v1/realtime/replies", bob, "", `{"device":"phone","ref":"1"}`)
	if a := c.call(200, "GET", "/v1/realtime/poll?device=phone", bob, "", ""); strings.Contains(string(a.body), `"ref":"`) {
		t.Errorf("after acknowledging an older ref, a poll answers %s; want nothing again", a.body)
	}
}

package http

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

// devTokenRequest is the body of POST /v1/dev/token.
type devTokenRequest struct {
	UserID      string `json:"userId"`
	DisplayName string `json:"displayName"`
}

// handleDevToken signs a person in without credentials, for development:
// it creates the user if missing and mints an access token for them. It
// answers only when the server runs in development mode (DevApp set), and
// only to requests from pages of this machine (see devAllowed).
func (s *Server) handleDevToken(w http.ResponseWriter, r *http.Request) error {
	if s.DevApp == "" {
		return tidings.Errorf(tidings.ENotFound, "development sign-in is off: start the server with --dev to use it")
	}
	if err := s.devAllowed(r); err != nil {
		return err
	}
	var req devTokenRequest
	if err := s.decodeJSON(w, r, &req, bodyRequired); err != nil {
		return err
	}
	ctx := tidings.NewContextWithCaller(r.Context(), tidings.Caller{AppID: s.DevApp, Server: true})
	infoFromContext(ctx).appID = s.DevApp
	u, err := s.Users.FindUserByID(ctx, req.UserID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		name := req.DisplayName
		if name == "" {
			name = req.UserID
		}
		u, err = s.Users.CreateUser(ctx, &tidings.User{ID: req.UserID, DisplayName: name})
		if tidings.ErrorCode(err) == tidings.EConflict { // created meanwhile
			u, err = s.Users.FindUserByID(ctx, req.UserID)
		}
	}
	if err != nil {
		return err
	}
	app, err := s.Apps.FindAppByID(ctx, s.DevApp)
	if err != nil {
		return err
	}
	tok, exp, err := token.Mint(app, u.ID, s.maxTokenTTL(), s.now())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, tokenResponse{Token: tok, ExpiresAt: exp, UserID: u.ID})
	return nil
}

// fromLoopback reports whether r came from the loopback interface. Behind a
// reverse proxy on the same machine every request does: development mode
// is for a server on a developer's machine, never one behind a proxy.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// devStatus is the answer of GET /v1/dev.
type devStatus struct {
	Dev bool `json:"dev"`
}

// handleDevStatus says whether development sign-in is on and open to the
// caller, so that a page can offer it without trying it (and without an
// error in the browser's console when it is off).
func (s *Server) handleDevStatus(w http.ResponseWriter, r *http.Request) error {
	s.writeJSON(w, r, http.StatusOK, devStatus{Dev: s.DevApp != "" && s.devAllowed(r) == nil})
	return nil
}

// devAllowed says why r may not use development sign-in (nil if it may).
// Coming from the loopback interface is not enough: a page of any site
// that a DNS record points at 127.0.0.1 (DNS rebinding) would reach the
// server from there too. So the Host must name this machine (localhost, a
// loopback address, or the address the server listens on), which the
// rebound name does not; and a browser's Origin, when there is one, must
// be a page of this machine or an origin listed in AllowedOrigins ("*"
// does not count: it would let any site sign in as anyone).
func (s *Server) devAllowed(r *http.Request) error {
	if !fromLoopback(r) {
		return tidings.Errorf(tidings.EForbidden, "development sign-in is only allowed from the loopback interface")
	}
	if !s.localHost(r.Host) {
		return tidings.Errorf(tidings.EForbidden,
			"development sign-in is refused at the host %q: open the page at localhost or a loopback address (pages of other sites that point their name at this machine must not sign in)", r.Host)
	}
	if origin := r.Header.Get("Origin"); origin != "" && !s.devOrigin(origin) {
		return tidings.Errorf(tidings.EForbidden,
			"development sign-in is only allowed from pages of this machine or of the allowed origins (--allowed-origins), not from %s", origin)
	}
	return nil
}

// localHost reports whether hostport (a Host header, or the host and port
// of an origin) names this machine: localhost or a loopback IP address,
// with any port, or the address the server listens on.
func (s *Server) localHost(hostport string) bool {
	if hostport == "" {
		return false
	}
	if s.Addr != "" && strings.EqualFold(hostport, s.Addr) {
		if h, _, err := net.SplitHostPort(s.Addr); err == nil && h != "" {
			return true
		}
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// devOrigin reports whether a page of origin may use development sign-in.
func (s *Server) devOrigin(origin string) bool {
	if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") && s.localHost(u.Host) {
		return true
	}
	for _, o := range s.AllowedOrigins {
		if o != "*" && strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

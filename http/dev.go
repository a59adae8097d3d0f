package http

import (
	"net"
	"net/http"
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
// only to requests from the loopback interface.
func (s *Server) handleDevToken(w http.ResponseWriter, r *http.Request) error {
	if s.DevApp == "" {
		return tidings.Errorf(tidings.ENotFound, "development sign-in is off: start the server with --dev to use it")
	}
	if !fromLoopback(r) {
		return tidings.Errorf(tidings.EForbidden, "development sign-in is only allowed from the loopback interface")
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

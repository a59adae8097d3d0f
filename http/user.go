package http

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

// newUserRequest is the body of POST /v1/users: the fields of a User a
// caller may choose.
type newUserRequest struct {
	ID          string              `json:"id"`
	DisplayName string              `json:"displayName"`
	AvatarURL   string              `json:"avatarUrl"`
	Identifier  *tidings.Identifier `json:"identifier"`
	Metadata    json.RawMessage     `json:"metadata"`
	// PresenceHidden hides the user's presence from other users.
	PresenceHidden bool `json:"presenceHidden"`
}

// userPage is the body of GET /v1/users.
type userPage struct {
	Users []*tidings.User `json:"users"`
	// NextAfter is the after parameter of the next page; set only when
	// this page is full, so more users may follow.
	NextAfter string `json:"nextAfter,omitempty"`
}

// tokenRequest is the body of POST /v1/users/{userId}/tokens.
type tokenRequest struct {
	TTLSeconds *int64 `json:"ttlSeconds"`
}

// tokenResponse is the answer of POST /v1/users/{userId}/tokens.
type tokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	UserID    string    `json:"userId"`
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) error {
	var req newUserRequest
	if err := s.decodeJSON(w, r, &req, bodyRequired); err != nil {
		return err
	}
	u, err := s.Users.CreateUser(r.Context(), &tidings.User{
		ID:          req.ID,
		DisplayName: req.DisplayName,
		AvatarURL:   req.AvatarURL,
		Identifier:  req.Identifier,
		Metadata:    req.Metadata,

		PresenceHidden: req.PresenceHidden,
	})
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, u)
	return nil
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryLimit(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if len(q.Get("q")) > tidings.MaxDisplayNameLen {
		return tidings.Errorf(tidings.EInvalid, "q is longer than %d bytes", tidings.MaxDisplayNameLen)
	}
	users, err := s.Users.ListUsers(r.Context(), tidings.UserFilter{
		After:    q.Get("after"),
		Limit:    limit,
		IDPrefix: q.Get("prefix"),
		Search:   q.Get("q"),
	})
	if err != nil {
		return err
	}
	page := userPage{Users: users}
	if page.Users == nil {
		page.Users = []*tidings.User{}
	}
	if len(users) == limit {
		page.NextAfter = users[len(users)-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, page)
	return nil
}

func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.Users.FindUserByID(r.Context(), r.PathValue("userId"))
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

func (s *Server) handleUpdateUser(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("userId")
	if c, _ := tidings.CallerFromContext(r.Context()); c.IsUser() && c.UserID != id {
		return tidings.Errorf(tidings.EForbidden, "users may only update their own profile")
	}
	var upd tidings.UserUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	u, err := s.Users.UpdateUser(r.Context(), id, upd)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if err := s.decodeJSON(w, r, &req, bodyOptional); err != nil {
		return err
	}
	ttl := s.maxTokenTTL()
	if req.TTLSeconds != nil {
		max := int64(ttl / time.Second)
		if *req.TTLSeconds < 1 || *req.TTLSeconds > max {
			return tidings.Errorf(tidings.EInvalid, "ttlSeconds must be from 1 to %d", max)
		}
		ttl = time.Duration(*req.TTLSeconds) * time.Second
	}

	ctx := r.Context()
	u, err := s.Users.FindUserByID(ctx, r.PathValue("userId"))
	if err != nil {
		return err
	}
	caller, _ := tidings.CallerFromContext(ctx)
	app, err := s.Apps.FindAppByID(ctx, caller.AppID)
	if err != nil {
		return err
	}
	if u.DeactivatedAt != nil {
		return tidings.Errorf(tidings.EConflict, "user %q is deactivated: reactivate them before minting a token", u.ID)
	}
	// Right after a revocation, a token issued now would fall in the
	// revoked second (token times are whole seconds): it is issued at the
	// not-before time instead, a fraction of a second ahead.
	issued := s.now()
	if nb := u.TokensNotBefore; nb != nil && issued.Before(*nb) {
		issued = *nb
	}
	tok, exp, err := token.Mint(app, u.ID, ttl, issued)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, tokenResponse{Token: tok, ExpiresAt: exp, UserID: u.ID})
	return nil
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) error {
	caller, _ := tidings.CallerFromContext(r.Context())
	u, err := s.Users.FindUserByID(r.Context(), caller.UserID)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, u)
	return nil
}

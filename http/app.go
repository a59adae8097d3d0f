package http

import (
	"net/http"

	"github.com/tidings/tidings"
)

func (s *Server) handleGetApp(w http.ResponseWriter, r *http.Request) error {
	caller, _ := tidings.CallerFromContext(r.Context())
	app, err := s.Apps.FindAppByID(r.Context(), caller.AppID)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, app)
	return nil
}

func (s *Server) handleUpdateApp(w http.ResponseWriter, r *http.Request) error {
	var upd tidings.AppUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	caller, _ := tidings.CallerFromContext(r.Context())
	app, err := s.Apps.UpdateApp(r.Context(), caller.AppID, upd)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, app)
	return nil
}

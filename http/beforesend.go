package http

import (
	"net/http"

	"github.com/tidings/tidings"
)

// beforeSend returns the before-send service, or not_found when the
// server has none.
func (s *Server) beforeSend() (tidings.BeforeSendService, error) {
	if s.BeforeSend == nil {
		return nil, tidings.Errorf(tidings.ENotFound, "before-send hooks are not available on this server")
	}
	return s.BeforeSend, nil
}

// beforeSendChanged tells the senders that the caller's app's hook
// changed.
func (s *Server) beforeSendChanged(r *http.Request) {
	if s.BeforeSendChanged != nil {
		caller, _ := tidings.CallerFromContext(r.Context())
		s.BeforeSendChanged(caller.AppID)
	}
}

func (s *Server) handleGetBeforeSend(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.beforeSend()
	if err != nil {
		return err
	}
	h, err := svc.FindBeforeSend(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, h)
	return nil
}

func (s *Server) handleSetBeforeSend(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.beforeSend()
	if err != nil {
		return err
	}
	var cfg tidings.BeforeSendConfig
	if err := s.decodeJSON(w, r, &cfg, bodyRequired); err != nil {
		return err
	}
	h, err := svc.SetBeforeSend(r.Context(), cfg)
	if err != nil {
		return err
	}
	s.beforeSendChanged(r)
	s.writeJSON(w, r, http.StatusOK, h)
	return nil
}

func (s *Server) handleDeleteBeforeSend(w http.ResponseWriter, r *http.Request) error {
	svc, err := s.beforeSend()
	if err != nil {
		return err
	}
	if err := svc.DeleteBeforeSend(r.Context()); err != nil {
		return err
	}
	s.beforeSendChanged(r)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

package http

import (
	"net/http"

	"github.com/tidings/tidings"
)

// The push routes (docs/push.md): a user's push targets and settings, a
// conversation's mute, the app's VAPID public key and push configuration.
// Without a PushService they are 404.

func (s *Server) pushService() (tidings.PushService, error) {
	if s.Push == nil {
		return nil, tidings.Errorf(tidings.ENotFound, "push notifications are not enabled on this server")
	}
	return s.Push, nil
}

func (s *Server) handleRegisterPushTarget(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	var nt tidings.NewPushTarget
	if err := s.decodeJSON(w, r, &nt, bodyRequired); err != nil {
		return err
	}
	t, err := p.RegisterPushTarget(r.Context(), nt)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusCreated, t)
	return nil
}

// pushTargetList is the answer of GET /v1/push/targets.
type pushTargetList struct {
	Targets []*tidings.PushTarget `json:"targets"`
}

func (s *Server) handleListPushTargets(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	ts, err := p.ListPushTargets(r.Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []*tidings.PushTarget{}
	}
	s.writeJSON(w, r, http.StatusOK, pushTargetList{Targets: ts})
	return nil
}

func (s *Server) handleDeletePushTarget(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	if err := p.DeletePushTarget(r.Context(), r.PathValue("targetId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// vapidKey is the answer of GET /v1/push/vapid-public-key.
type vapidKey struct {
	PublicKey string `json:"publicKey"`
}

func (s *Server) handleVAPIDPublicKey(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	key, err := p.VAPIDPublicKey(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, vapidKey{PublicKey: key})
	return nil
}

func (s *Server) handleGetPushSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	st, err := p.PushSettings(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, st)
	return nil
}

func (s *Server) handleUpdatePushSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	var upd tidings.PushSettingsUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	st, err := p.UpdatePushSettings(r.Context(), upd)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, st)
	return nil
}

func (s *Server) handleMute(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	if err := p.MuteConversation(r.Context(), r.PathValue("conversationId"), r.Method == http.MethodPut); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleGetPushConfig(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	cfg, err := p.PushConfig(r.Context())
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, cfg)
	return nil
}

func (s *Server) handleUpdatePushConfig(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pushService()
	if err != nil {
		return err
	}
	var upd tidings.PushConfigUpdate
	if err := s.decodeJSON(w, r, &upd, bodyRequired); err != nil {
		return err
	}
	cfg, err := p.UpdatePushConfig(r.Context(), upd)
	if err != nil {
		return err
	}
	s.writeJSON(w, r, http.StatusOK, cfg)
	return nil
}

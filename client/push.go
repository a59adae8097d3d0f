package client

import (
	"context"

	"github.com/tidings/tidings"
)

// Push notifications (docs/push.md): where the user's pushes go, and
// their settings. A device registers its target once it has one (an APNs
// or FCM token from the platform, a Web Push subscription from the
// browser), and again when the platform gives it a new one; it removes it
// when the user logs out of the device.

// RegisterPushTarget registers a push target of the user: an APNs or FCM
// device token (Kind and Token) or a Web Push subscription (Endpoint and
// Keys). Registering the same token again updates it.
func (u *calls) RegisterPushTarget(ctx context.Context, t tidings.NewPushTarget) (*tidings.PushTarget, error) {
	return apiCall[tidings.PushTarget](ctx, u, "POST", "/v1/push/targets", nil, t)
}

// ListPushTargets returns the user's push targets, oldest first.
func (u *calls) ListPushTargets(ctx context.Context) ([]*tidings.PushTarget, error) {
	list, err := apiCall[struct {
		Targets []*tidings.PushTarget `json:"targets"`
	}](ctx, u, "GET", "/v1/push/targets", nil, nil)
	if err != nil {
		return nil, err
	}
	return list.Targets, nil
}

// DeletePushTarget removes one of the user's push targets.
func (u *calls) DeletePushTarget(ctx context.Context, targetID string) error {
	return u.api(ctx, "DELETE", "/v1/push/targets/"+seg(targetID), nil, nil, nil)
}

// PushSettings returns the user's push settings.
func (u *calls) PushSettings(ctx context.Context) (*tidings.PushSettings, error) {
	return apiCall[tidings.PushSettings](ctx, u, "GET", "/v1/push/settings", nil, nil)
}

// SetPushEnabled turns the user's pushes on or off.
func (u *calls) SetPushEnabled(ctx context.Context, enabled bool) (*tidings.PushSettings, error) {
	return apiCall[tidings.PushSettings](ctx, u, "PATCH", "/v1/push/settings", nil, tidings.PushSettingsUpdate{Enabled: &enabled})
}

// MuteConversation mutes (or, with muted false, unmutes) a conversation's
// pushes for the user.
func (u *calls) MuteConversation(ctx context.Context, conversationID string, muted bool) error {
	method := "PUT"
	if !muted {
		method = "DELETE"
	}
	return u.api(ctx, method, "/v1/conversations/"+seg(conversationID)+"/mute", nil, nil, nil)
}

// VAPIDPublicKey returns the app's VAPID public key (base64url), which
// browsers subscribe to Web Push with.
func (u *calls) VAPIDPublicKey(ctx context.Context) (string, error) {
	k, err := apiCall[struct {
		PublicKey string `json:"publicKey"`
	}](ctx, u, "GET", "/v1/push/vapid-public-key", nil, nil)
	if err != nil {
		return "", err
	}
	return k.PublicKey, nil
}

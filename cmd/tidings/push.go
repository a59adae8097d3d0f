package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push"
)

// pushConfig holds the settings of push notifications (docs/push.md).
type pushConfig struct {
	Window    time.Duration
	NoWebPush bool

	APNsKeyFile string
	APNsKeyID   string
	APNsTeamID  string
	APNsTopic   string
	APNsURL     string

	FCMCredentials string
	FCMURL         string
}

func defaultPushConfig() pushConfig {
	return pushConfig{Window: 2 * time.Second, APNsURL: push.APNsProduction, FCMURL: push.FCMBaseURL}
}

// addPushFlags registers the settings of push notifications.
func addPushFlags(fs *flag.FlagSet, cfg *pushConfig) {
	fs.Var((*durationValue)(&cfg.Window), "push-window",
		"messages of one conversation that come within this `duration` of the first make one push")
	fs.BoolVar(&cfg.NoWebPush, "no-web-push", cfg.NoWebPush,
		"send no Web Push notifications (those go to the push service each browser chose)")
	fs.StringVar(&cfg.APNsKeyFile, "apns-key-file", cfg.APNsKeyFile,
		"the .p8 `file` of the APNs authentication key; empty sends no APNs pushes")
	fs.StringVar(&cfg.APNsKeyID, "apns-key-id", cfg.APNsKeyID,
		"the `id` of the APNs authentication key (10 characters)")
	fs.StringVar(&cfg.APNsTeamID, "apns-team-id", cfg.APNsTeamID,
		"the Apple developer team `id` the APNs key belongs to")
	fs.StringVar(&cfg.APNsTopic, "apns-topic", cfg.APNsTopic,
		"the `bundle id` of the iOS app (the apns-topic of every APNs push)")
	fs.StringVar(&cfg.APNsURL, "apns-url", cfg.APNsURL,
		"the `URL` of the APNs provider API (https://api.sandbox.push.apple.com for development builds)")
	fs.StringVar(&cfg.FCMCredentials, "fcm-credentials", cfg.FCMCredentials,
		"the JSON key `file` of the Firebase service account; empty sends no FCM pushes")
	fs.StringVar(&cfg.FCMURL, "fcm-url", cfg.FCMURL,
		"the `URL` of the FCM HTTP v1 API")
}

func (cfg *pushConfig) check() error {
	switch {
	case cfg.Window < 0:
		return errors.New("--push-window must not be negative")
	case cfg.APNsKeyFile != "" && (cfg.APNsKeyID == "" || cfg.APNsTeamID == "" || cfg.APNsTopic == ""):
		return errors.New("--apns-key-file needs --apns-key-id, --apns-team-id and --apns-topic")
	}
	return nil
}

// webPushClient, when set, sends the Web Push requests instead of
// push.WebPush's own client (public addresses only): the tests set one
// that reaches their local Web Push service.
var webPushClient *http.Client

// newPushDispatcher returns the push dispatcher cfg configures, with the
// providers whose credentials are given.
func newPushDispatcher(cfg pushConfig, store tidings.PushStore, presence push.Presence, log *slog.Logger) (*push.Dispatcher, error) {
	d := &push.Dispatcher{Store: store, Presence: presence, Window: cfg.Window, Logger: log,
		Providers: map[string]push.Provider{}}
	if d.Window == 0 {
		d.Window = time.Millisecond // no coalescing
	}
	var kinds []string
	if !cfg.NoWebPush {
		d.Providers[tidings.PushWebPush] = &push.WebPush{Client: webPushClient}
		kinds = append(kinds, tidings.PushWebPush)
	}
	if cfg.APNsKeyFile != "" {
		key, err := push.LoadAPNsKey(cfg.APNsKeyFile)
		if err != nil {
			return nil, err
		}
		d.Providers[tidings.PushAPNs] = &push.APNs{TeamID: cfg.APNsTeamID, KeyID: cfg.APNsKeyID, Key: key,
			Topic: cfg.APNsTopic, BaseURL: cfg.APNsURL}
		kinds = append(kinds, tidings.PushAPNs)
	}
	if cfg.FCMCredentials != "" {
		sa, err := push.LoadServiceAccount(cfg.FCMCredentials)
		if err != nil {
			return nil, err
		}
		d.Providers[tidings.PushFCM] = &push.FCM{ProjectID: sa.ProjectID, Tokens: sa, BaseURL: cfg.FCMURL}
		kinds = append(kinds, tidings.PushFCM)
	}
	log.Info(fmt.Sprintf("push notifications: %v", kinds), "window", d.Window)
	return d, nil
}

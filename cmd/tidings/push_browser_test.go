package main

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"
)

// TestSDKWebPush: in a real browser, registerWebPush registers the
// server's service worker (/sw.js), subscribes with the app's VAPID key
// and registers the subscription as the user's push target; a push
// delivered to the service worker is shown as a notification of its
// conversation. (Headless Chromium has no push service to subscribe to:
// the test stands in for pushManager's subscription, and delivers the
// push through the DevTools protocol.)
func TestSDKWebPush(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	t.Cleanup(func() { stop() })
	pg := b.newProfile("push").open(url + "/")
	bob := mintDevToken(t, url, "bob")
	c := chromedp.FromContext(pg.ctx)
	ctx, cancel := context.WithTimeout(pg.ctx, 60*time.Second)
	defer cancel()

	// The user allows notifications.
	if _, err := cdp.Call(ctx, c.Browser, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted,
		Origin: url, BrowserContextID: c.BrowserContextID}); err != nil {
		t.Fatal(err)
	}
	// The service worker's registration, for delivering a push to it.
	registrations := make(chan serviceworker.RegistrationID, 16)
	go func() {
		for ev, err := range cdp.Events(ctx, c.Target, serviceworker.WorkerRegistrationUpdated) {
			if err != nil {
				return
			}
			for _, r := range ev.Registrations {
				if r.ScopeURL == url+"/" && !r.IsDeleted {
					registrations <- r.RegistrationID
				}
			}
		}
	}()
	if _, err := cdp.Call(ctx, c.Target, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}

	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sub := map[string]any{"endpoint": "https://push.example.com/send/bob-chromium", "keys": map[string]string{
		"p256dh": base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(make([]byte, 16)),
	}}
	subJSON, _ := json.Marshal(sub)
	var got struct {
		Target struct {
			ID, Kind, Device, Endpoint string
			Keys                       map[string]string
		}
		Key, Script, Error string
		Targets            int
	}
	pg.eval(sdkScript(`
		const out = {};
		const sub = `+string(subJSON)+`;
		PushManager.prototype.getSubscription = async () => null;
		PushManager.prototype.subscribe = async opts => {
			const k = new Uint8Array(opts.applicationServerKey);
			out.key = btoa(String.fromCharCode(...k)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
			return { options: { applicationServerKey: k.buffer }, toJSON: () => sub, unsubscribe: async () => true };
		};
		const c = new Client(location.origin, { mode: 'manual', token: `+js(bob)+`, device: 'chromium' });
		try {
			out.target = await c.registerWebPush('/sw.js', { device: 'chromium' });
			out.script = (await navigator.serviceWorker.ready).active.scriptURL;
			out.targets = (await c.listPushTargets()).length;
		} catch (e) {
			out.error = String(e);
		}
		c.close();
		return out;
	`), &got)
	if got.Error != "" {
		t.Fatalf("registerWebPush: %s", got.Error)
	}
	vapid := vapidKeyOf(t, url, bob)
	if got.Key != vapid || got.Script != url+"/sw.js" || got.Targets != 1 || got.Target.Kind != "webpush" ||
		got.Target.Device != "chromium" || got.Target.Endpoint != sub["endpoint"] ||
		got.Target.Keys["p256dh"] != sub["keys"].(map[string]string)["p256dh"] {
		t.Fatalf("registered %+v; the app's key %s", got, vapid)
	}

	// A push, as the browser's push service would deliver it.
	var reg serviceworker.RegistrationID
	select {
	case reg = <-registrations:
	case <-ctx.Done():
		t.Fatal("no service worker registration seen")
	}
	payload := `{"title":"Alice","body":"lunch at noon?","badge":3,"count":1,"appId":"default","conversationId":"lunch","messageId":"m1","seq":7,"senderId":"alice"}`
	deliver := func() error {
		_, err := cdp.Call(ctx, c.Target, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: url, RegistrationID: reg, Data: payload})
		return err
	}
	if err := deliver(); err != nil {
		t.Fatal(err)
	}
	// On a loaded machine Chromium may hand the first push to a worker not
	// yet running, and drop it: deliver it again every few seconds until
	// the notification shows (it has a tag, so it replaces itself).
	stopDelivering := make(chan struct{})
	delivering := make(chan struct{})
	go func() {
		defer close(delivering)
		for {
			select {
			case <-stopDelivering:
				return
			case <-time.After(5 * time.Second):
				deliver()
			}
		}
	}()
	defer func() {
		close(stopDelivering)
		<-delivering
	}()
	var shown []map[string]any
	pg.eval(sdkScript(`
		const reg = await navigator.serviceWorker.ready;
		let list = [];
		await until('the notification', () => list.length > 0 || (reg.getNotifications().then(l => { list = l; }), false));
		return list.map(n => ({ title: n.title, body: n.body, tag: n.tag, conversationId: n.data && n.data.conversationId }));
	`), &shown)
	if len(shown) != 1 || shown[0]["title"] != "Alice" || shown[0]["body"] != "lunch at noon?" ||
		shown[0]["tag"] != "tidings:default:lunch" || shown[0]["conversationId"] != "lunch" {
		t.Fatalf("notifications shown: %+v", shown)
	}
}

// vapidKeyOf returns the app's VAPID public key, read with the user's token.
func vapidKeyOf(t *testing.T, url, tok string) string {
	t.Helper()
	c := &apiCaller{t: t, url: url, doc: fetchAPIDoc(t, url)}
	k := c.call(200, "GET", "/v1/push/vapid-public-key", tok, "", "").field(t, "publicKey")
	if k == "" || strings.ContainsAny(k, "+/=") {
		t.Fatalf("VAPID public key %q", k)
	}
	return k
}

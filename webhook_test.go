package tidings_test

import (
	"testing"

	"github.com/tidings/tidings"
)

func TestNewWebhookValidateFillsDefaults(t *testing.T) {
	nw := tidings.NewWebhook{URL: "  https://example.com/hook \n"}
	if err := nw.Validate(); err != nil {
		t.Fatal(err)
	}
	if nw.URL != "https://example.com/hook" || len(nw.Events) != 1 || nw.Events[0] != "*" {
		t.Errorf("validated %+v; want the URL trimmed and every event", nw)
	}
	if _, err := tidings.WebhookSecretKey(nw.Secret); err != nil {
		t.Errorf("generated secret %q: %v", nw.Secret, err)
	}
	for what, bad := range map[string]tidings.NewWebhook{
		"no URL":           {},
		"ftp":              {URL: "ftp://example.com/"},
		"no events":        {URL: "https://example.com/", Events: []string{}},
		"a live event":     {URL: "https://example.com/", Events: []string{"typing.start"}},
		"a short secret":   {URL: "https://example.com/", Secret: "whsec_c2hvcnQ="},
		"a foreign secret": {URL: "https://example.com/", Secret: "secret"},
	} {
		if err := bad.Validate(); tidings.ErrorCode(err) != tidings.EInvalid {
			t.Errorf("%s: %v; want invalid", what, err)
		}
	}
}

func TestWebhookUpdateValidatesAndApplies(t *testing.T) {
	w := &tidings.WebhookEndpoint{URL: "https://old.example.com/", Events: []string{"*"}}
	url, events, off := " https://new.example.com/hook ", []string{"conversationMessage.*"}, true
	upd := tidings.WebhookUpdate{URL: &url, Events: &events, Disabled: &off}
	if err := upd.Validate(); err != nil {
		t.Fatal(err)
	}
	upd.Apply(w)
	if w.URL != "https://new.example.com/hook" || len(w.Events) != 1 || w.Events[0] != "conversationMessage.*" || !w.Disabled {
		t.Errorf("updated %+v", w)
	}
	// Fields left nil are left alone.
	on := false
	tidings.WebhookUpdate{Disabled: &on}.Apply(w)
	if w.URL != "https://new.example.com/hook" || w.Disabled {
		t.Errorf("after enabling only: %+v", w)
	}
	bad := "mailto:ops@example.com"
	if err := (&tidings.WebhookUpdate{URL: &bad}).Validate(); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("a mailto URL: %v; want invalid", err)
	}
	none := []string{}
	if err := (&tidings.WebhookUpdate{Events: &none}).Validate(); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("no events: %v; want invalid", err)
	}
}

func TestCheckWebhookCount(t *testing.T) {
	if err := tidings.CheckWebhookCount(tidings.MaxWebhooksPerApp - 1); err != nil {
		t.Errorf("one below the bound: %v", err)
	}
	if err := tidings.CheckWebhookCount(tidings.MaxWebhooksPerApp); tidings.ErrorCode(err) != tidings.EConflict {
		t.Errorf("at the bound: %v; want conflict", err)
	}
}

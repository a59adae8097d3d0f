package ws_test

import (
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// A profile change reaches, as one durable update each, the user and
// everyone who shares a conversation with them at the time: live, on
// resume after a disconnection, and through polling; not those who share
// nothing, nor a participant removed before the change.
func TestProfileChangeReachesThoseWhoShareAConversation(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol", "dave", "erin")
	s.mkUsers("b", "bob")
	c1 := s.conv("a", "alice", "bob", "dave")
	s.conv("a", "alice", "bob", "erin") // bob shares two conversations with alice
	c3 := s.conv("a", "carol", "dave")  // carol shares none
	if err := s.convs.RemoveParticipant(s.as("a", "alice"), c1, "dave"); err != nil {
		t.Fatal(err)
	}

	live := map[string]*client{}
	for _, who := range []string{"alice", "bob", "carol", "dave"} {
		c := dial(t, s)
		c.auth("default", s.token("a", who), protocol.AuthArgs{Device: "laptop", ResumeAfter: "latest"})
		live[who] = c
	}
	otherApp := dial(t, s)
	otherApp.auth("default", s.token("b", "bob"), protocol.AuthArgs{ResumeAfter: "latest"})
	before := s.lastRef()

	name := "Alice Smith"
	if _, err := s.users.UpdateUser(s.as("a", "alice"), "alice", tidings.UserUpdate{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	rename := s.lastRef()
	// Then an event each of them gets: what comes before it is all they
	// get of the change.
	s.send("a", "alice", c1, "after the change")
	s.send("a", "carol", c3, "after the change")
	s.send("b", "bob", s.conv("b", "bob"), "after the change")

	check := func(who string, us []update, want int) {
		t.Helper()
		got := named(us, tidings.EventProfileUpdate)
		if len(got) != want {
			t.Fatalf("%s got %d profile.update, want %d", who, len(got), want)
		}
		for _, u := range got {
			p := decodePayload[tidings.ProfilePayload](t, u)
			if u.Ref != rename || u.ev.UserID != "alice" || p.ProfileID != "alice" ||
				p.User == nil || p.User.DisplayName != name || !u.Silent {
				t.Fatalf("%s got %+v (payload %+v), want alice's new name with ref %s, silent", who, u.Frame, p, rename)
			}
		}
	}
	for who, want := range map[string]int{"alice": 1, "bob": 1, "carol": 0, "dave": 0} {
		us, _ := live[who].until(tidings.EventMessageSent)
		check(who, us, want)
	}
	us, _ := otherApp.until(tidings.EventMessageSent)
	check("app b's bob", us, 0)

	// Bob's phone, offline during the change, gets it on resume, once,
	// then what followed.
	phone := dial(t, s)
	phone.command("default", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), Device: "phone", ResumeAfter: before})
	us, m := phone.until(tidings.EventMessageSent)
	check("bob's phone on resume", us, 1)
	if m.text() != "after the change" {
		t.Fatalf("bob's phone then got %q", m.text())
	}
	phone.none()

	// Erin, who shares one conversation with alice, polls: once.
	us, _ = s.poll(s.token("a", "erin"), "device=poller&after="+before)
	check("erin polling", us, 1)
	// Carol polling from the same point: none.
	us, _ = s.poll(s.token("a", "carol"), "device=poller&after="+before)
	check("carol polling", us, 0)

	// A poll waiting for news gets the next change (live if it was
	// already waiting, else from the log).
	type polled struct {
		us  []update
		err error
	}
	waiting := make(chan polled, 1)
	latest := s.lastRef()
	go func() {
		us, _, err := s.pollE(s.token("a", "erin"), "device=poller&wait=30&after="+latest)
		waiting <- polled{us, err}
	}()
	avatar := "https://example.com/alice.png"
	if _, err := s.users.UpdateUser(s.as("a", "alice"), "alice", tidings.UserUpdate{AvatarURL: &avatar}); err != nil {
		t.Fatal(err)
	}
	got := <-waiting
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.us) != 1 || got.us[0].ev.Name != tidings.EventProfileUpdate || got.us[0].Ref != s.lastRef() ||
		decodePayload[tidings.ProfilePayload](t, got.us[0]).User.AvatarURL != avatar {
		t.Fatalf("erin's waiting poll returned %+v, want alice's new avatar (ref %s)", got.us, s.lastRef())
	}
}

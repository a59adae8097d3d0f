package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// The examples run against a whole server started on 127.0.0.1 by
// mustServer, with users made by mkUsers; token stands for your backend,
// which mints the users' access tokens.

// A client in auto mode: it connects as soon as it has a token, and every
// listener gets every update.
func Example() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice", "bob")
	ctx := context.Background()

	alice, err := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "alice", time.Hour)), client.WithDevice("laptop"))
	if err != nil {
		panic(err)
	}
	defer alice.Close()
	got := make(chan string, 10)
	alice.AddEventListener(func(e client.Event) {
		if m, ok := e.(*client.MessageSent); ok {
			got <- m.Message.Sender.DisplayName + ": " + m.Message.Parts[0].Data
		}
	})
	if err := alice.WaitConnected(ctx); err != nil {
		panic(err)
	}

	// Bob uses the REST API only.
	bob, _ := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "bob", time.Hour)), client.WithMode(client.ManualMode))
	defer bob.Close()
	conv, err := bob.CreateConversation(ctx, tidings.NewConversation{Name: "Lunch",
		Participants: []tidings.NewParticipant{{UserID: "alice"}}})
	if err != nil {
		panic(err)
	}
	for _, text := range []string{"Lunch at noon?", "At the usual place."} {
		if _, err := bob.SendMessage(ctx, conv.ID, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}}); err != nil {
			panic(err)
		}
	}
	fmt.Println(next(got))
	fmt.Println(next(got))
	// Output:
	// Bob: Lunch at noon?
	// Bob: At the usual place.
}

// In manual mode the application opens and closes the connection, and
// keeps it in the background by pinging.
func Example_manualMode() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice")
	ctx := context.Background()

	c, err := client.New(srv.URL(), client.WithMode(client.ManualMode))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println("connect before login:", c.Connect(ctx))
	me, err := c.Login(ctx, srv.token(panicker{}, "alice", time.Hour))
	if err != nil {
		panic(err)
	}
	fmt.Println("logged in as", me.DisplayName+";", "status:", c.Status())
	fmt.Println("ping:", c.Ping(ctx))
	fmt.Println("connect:", c.Connect(ctx), "; status:", c.Status())
	fmt.Println("connect again:", errors.Is(c.Connect(ctx), client.ErrAlreadyConnected))
	// In the background, ping at least every 30s to keep the connection.
	c.EnterBackground()
	fmt.Println("ping:", c.Ping(ctx))
	c.EnterForeground()
	fmt.Println("disconnect:", c.Disconnect(), "; status:", c.Status())
	// Output:
	// connect before login: client: not logged in
	// logged in as Alice; status: disconnected
	// ping: client: not connected
	// connect: <nil> ; status: connected
	// connect again: true
	// ping: <nil>
	// disconnect: <nil> ; status: disconnected
}

// Listeners receive typed events: switch on their type.
func ExampleClient_AddEventListener() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice", "bob")
	ctx := context.Background()

	alice, _ := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "alice", time.Hour)))
	defer alice.Close()
	lines := make(chan string, 10)
	remove := alice.AddEventListener(func(e client.Event) {
		switch e := e.(type) {
		case *client.ConversationCreate:
			lines <- fmt.Sprintf("%s created %q", e.Actor.DisplayName, e.Name)
		case *client.ParticipantAdded:
			lines <- fmt.Sprintf("%s joined as %s", e.ProfileID, e.Role)
		case *client.MessageSent:
			lines <- fmt.Sprintf("%s wrote %q", e.Message.Sender.DisplayName, e.Message.Parts[0].Data)
		case *client.UnknownEvent:
			lines <- "something new: " + e.Name
		}
	})
	defer remove()
	alice.WaitConnected(ctx)

	bob, _ := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "bob", time.Hour)))
	defer bob.Close()
	bob.WaitConnected(ctx)
	conv, _ := bob.CreateConversation(ctx, tidings.NewConversation{Name: "Books",
		Participants: []tidings.NewParticipant{{UserID: "alice"}}})
	// Over the realtime connection rather than the REST API.
	if _, err := bob.Socket().SendMessage(ctx, conv.ID, tidings.NewMessage{ClientID: "b-1",
		Parts: []tidings.Part{{Type: "text/plain", Data: "Read anything good?"}}}); err != nil {
		panic(err)
	}
	for range 4 {
		fmt.Println(next(lines))
	}
	// Output:
	// Bob created "Books"
	// bob joined as owner
	// alice joined as member
	// Bob wrote "Read anything good?"
}

// With a cursor store, a program that restarts resumes after the last
// update it processed: it gets what it missed, and nothing twice.
func ExampleWithCursorStore() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice", "bob")
	conv := srv.conv(panicker{}, "bob", "alice")
	dir, _ := os.MkdirTemp("", "cursor")
	defer os.RemoveAll(dir)
	store := client.NewFileCursor(filepath.Join(dir, "tidings-cursor.json"))

	run := func(want int, then func()) {
		c, _ := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "alice", time.Hour)),
			client.WithDevice("desktop"), client.WithCursorStore(store))
		defer c.Close()
		got := make(chan string, 10)
		c.AddEventListener(func(e client.Event) {
			if m, ok := e.(*client.MessageSent); ok {
				got <- m.Message.Parts[0].Data
			}
		})
		c.WaitConnected(context.Background())
		then()
		for range want {
			fmt.Println(next(got))
		}
	}
	run(1, func() { srv.send(panicker{}, "bob", conv, "one") })
	srv.send(panicker{}, "bob", conv, "two") // while the program is off
	srv.send(panicker{}, "bob", conv, "three")
	run(2, func() {})
	// Output:
	// one
	// two
	// three
}

// A token provider is called again before the token expires; the client
// refreshes the token of the open connection without reconnecting.
func ExampleWithTokenProvider() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice")

	provider := func(ctx context.Context) (string, error) {
		// Ask your backend for a token of the user.
		return srv.token(panicker{}, "alice", time.Hour), nil
	}
	c, err := client.New(srv.URL(), client.WithTokenProvider(provider), client.WithRefreshMargin(5*time.Minute))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.WaitConnected(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(c.UserID(), c.Status(), time.Until(c.TokenExpiry()).Round(time.Hour))
	// Output:
	// alice connected 1h0m0s
}

// One connection, two accounts: Alice's personal profile (the default
// account) and her work profile, a user of its own. Each update says which
// account it is for, and each account sends as its own user.
func ExampleClient_AddAccount() {
	srv := mustServer()
	defer srv.Close()
	srv.mkUsers(panicker{}, "alice", "alice-work", "bob")
	family := srv.conv(panicker{}, "bob", "alice")
	project := srv.conv(panicker{}, "bob", "alice-work")
	ctx := context.Background()

	c, err := client.New(srv.URL(), client.WithToken(srv.token(panicker{}, "alice", time.Hour)), client.WithDevice("laptop"))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	got := make(chan string, 10)
	c.AddEventListener(func(e client.Event) {
		if m, ok := e.(*client.MessageSent); ok {
			got <- fmt.Sprintf("[%s] %s: %s", e.Info().Account, m.Message.Sender.DisplayName, m.Message.Parts[0].Data)
		}
	})
	work, err := c.AddAccount(ctx, "work", client.WithToken(srv.token(panicker{}, "alice-work", time.Hour)))
	if err != nil {
		panic(err)
	}
	if err := work.WaitConnected(ctx); err != nil {
		panic(err)
	}
	for _, a := range c.Accounts() {
		fmt.Println(a.Name(), "is", a.UserID())
	}

	srv.send(panicker{}, "bob", family, "Dinner at 8?")
	fmt.Println(next(got))
	srv.send(panicker{}, "bob", project, "Is the report ready?")
	fmt.Println(next(got))
	if _, err := work.Socket().SendMessage(ctx, project, tidings.NewMessage{ClientID: "w-1",
		Parts: []tidings.Part{{Type: "text/plain", Data: "Tomorrow."}}}); err != nil {
		panic(err)
	}
	fmt.Println(next(got))

	// The work profile leaves; the personal one stays connected.
	work.Logout(ctx)
	srv.send(panicker{}, "bob", family, "Bring bread.")
	fmt.Println(next(got))
	// Output:
	// default is alice
	// work is alice-work
	// [default] Bob: Dinner at 8?
	// [work] Bob: Is the report ready?
	// [work] Alice-work: Tomorrow.
	// [default] Bob: Bring bread.
}

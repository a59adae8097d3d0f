package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/tidings/tidings"
)

const usersNote = `
The users commands open the database of the data directory directly,
which is safe while the server runs. The running server is not told,
though: connections the user holds stay open until they authenticate
again, when their token is refused. The API (with the server key) closes
them at once: POST /v1/users/{userId}/deactivate, DELETE
/v1/users/{userId}/tokens, DELETE /v1/users/{userId}?messages=…`

var usersDeactivateCommand = &command{
	name:  "users deactivate",
	args:  "[--app ID] [flags] USER",
	short: "deactivate (ban) a user: their tokens are refused",
	long: `
Users deactivate deactivates the user USER of the app (a ban): their
access tokens are refused, they cannot connect, and your backend cannot
act on their behalf, until "tidings users reactivate". Their profile,
conversations and messages stay; those who share a conversation with them
see that they are deactivated.` + usersNote,
	run: runUsersLife("users deactivate", func(ctx context.Context, users tidings.UserService, id string) (string, error) {
		u, err := users.DeactivateUser(ctx, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("user %s deactivated at %s", u.ID, u.DeactivatedAt.UTC().Format(time.RFC3339)), nil
	}),
}

var usersReactivateCommand = &command{
	name:  "users reactivate",
	args:  "[--app ID] [flags] USER",
	short: "end a user's deactivation",
	long: `
Users reactivate ends the deactivation of the user USER of the app: their
tokens work again, but those revoked.` + usersNote,
	run: runUsersLife("users reactivate", func(ctx context.Context, users tidings.UserService, id string) (string, error) {
		u, err := users.ReactivateUser(ctx, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("user %s is active", u.ID), nil
	}),
}

var usersRevokeTokensCommand = &command{
	name:  "users revoke-tokens",
	args:  "[--app ID] [flags] USER",
	short: "refuse every token of a user issued until now",
	long: `
Users revoke-tokens revokes every access token of the user USER of the
app issued until now, whoever minted it: they are refused from now on.
Tokens minted afterwards work (minted by your backend itself: from the
next second).` + usersNote,
	run: runUsersLife("users revoke-tokens", func(ctx context.Context, users tidings.UserService, id string) (string, error) {
		u, err := users.RevokeTokens(ctx, id)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("tokens of user %s issued before %s are refused", u.ID, u.TokensNotBefore.UTC().Format(time.RFC3339)), nil
	}),
}

var usersDeleteCommand = &command{
	name:  "users delete",
	args:  "--messages erase|anonymize [--app ID] [flags] USER",
	short: "delete a user and every trace of them",
	long: `
Users delete deletes the user USER of the app for good, and every trace of
them: profile, participations, marks, and the events that named them
(see DELETE /v1/users/{userId} in the API reference). --messages says what
becomes of their messages, and is required: erase empties them and
removes the files they uploaded (the server removes the files' contents
with the other unattached files); anonymize keeps them, without a
sender.` + usersNote,
	run: runUsersDelete,
}

// usersFlags returns the flag set of a users command and its --app.
func usersFlags(name string, cfg *config) (*flag.FlagSet, *string) {
	fs := dataFlags(name, cfg)
	return fs, fs.String("app", defaultAppID, "`id` of the user's app")
}

// runUsersLife returns the run function of a users command that calls do
// as the app's server on the user named by its argument, and prints what
// do says.
func runUsersLife(name string, do func(ctx context.Context, users tidings.UserService, id string) (string, error)) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		cfg := defaultConfig()
		fs, appID := usersFlags(name, &cfg)
		args, err := c.parse(fs, args)
		if err != nil {
			return err
		}
		if err := wantArgs(args, 1, 1, "user ID"); err != nil {
			return err
		}
		db, users, ctx, err := openUsers(ctx, cfg, c, *appID)
		if err != nil {
			return err
		}
		defer db.Close()
		out, err := do(ctx, users, args[0])
		if err != nil {
			return userError(err, args[0], *appID)
		}
		fmt.Fprintln(c.stdout, out)
		return db.Close()
	}
}

func runUsersDelete(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs, appID := usersFlags("users delete", &cfg)
	messages := fs.String("messages", "", "what becomes of the user's messages: `erase` or anonymize")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "user ID"); err != nil {
		return err
	}
	mode := tidings.MessagesOfDeleted(*messages)
	if mode != tidings.EraseMessages && mode != tidings.AnonymizeMessages {
		return usageErrorf("say what becomes of the user's messages: --messages erase or --messages anonymize")
	}
	db, users, ctx, err := openUsers(ctx, cfg, c, *appID)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := users.DeleteUser(ctx, args[0], mode); err != nil {
		return userError(err, args[0], *appID)
	}
	fmt.Fprintf(c.stdout, "user %s deleted (messages: %s)\n", args[0], mode)
	return db.Close()
}

// openUsers opens the store and returns the user service and a context
// of the app appID's server.
func openUsers(ctx context.Context, cfg config, c *cli, appID string) (*stores, tidings.UserService, context.Context, error) {
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return nil, nil, nil, err
	}
	if _, err := st.Apps.FindAppByID(ctx, appID); err != nil {
		st.Close()
		return nil, nil, nil, appError(err, appID)
	}
	ctx = tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: appID, Server: true})
	return st, st.Users, ctx, nil
}

// userError explains an error about the user id of app appID.
func userError(err error, id, appID string) error {
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return fmt.Errorf("there is no user %q in app %q", id, appID)
	}
	return err
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

var tokenCommand = &command{
	name:  "token",
	args:  "--user ID [--app ID] [--ttl DURATION] [flags]",
	short: "mint a user access token for development",
	long: `
Token mints an access token for a user of an app and prints only the
token, so that a shell can keep it:

  TOKEN=$(tidings token --user alice)

It signs the token with the app's signing secret, as your backend would
(or as POST /v1/users/{userId}/tokens does). The user need not exist yet,
but the API refuses the token until it does: token warns on stderr then. Unlike tokens minted through the
API, the lifetime is not capped by the server's --token-ttl.`,
	run: runToken,
}

func runToken(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("token", &cfg)
	userID := fs.String("user", "", "`id` of the user the token is for (required)")
	appID := fs.String("app", defaultAppID, "`id` of the user's app")
	ttl := 24 * time.Hour
	fs.Var((*durationValue)(&ttl), "ttl", "lifetime of the token (a `duration`)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	switch {
	case *userID == "":
		return usageErrorf("--user is required")
	case !tidings.ValidID(*userID):
		return usageErrorf("--user %q is not a valid user id: use 1 to 128 letters, digits and . _ @ : -", *userID)
	case ttl < time.Second:
		return usageErrorf("--ttl must be at least 1s")
	}

	db, err := openDB(cfg, c.stderr, false)
	if err != nil {
		return err
	}
	defer db.Close()
	app, err := sqlite.NewAppService(db).FindAppByID(ctx, *appID)
	if err != nil {
		return appError(err, *appID)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, Server: true})
	_, err = sqlite.NewUserService(db).FindUserByID(server, *userID)
	switch tidings.ErrorCode(err) {
	case "":
	case tidings.ENotFound:
		fmt.Fprintf(c.stderr, "tidings token: warning: user %q does not exist in app %q: the API refuses the token until the user is created (POST /v1/users)\n", *userID, app.ID)
	default:
		return fmt.Errorf("find user %q: %w", *userID, err)
	}
	tok, _, err := token.Mint(app, *userID, ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, tok)
	return db.Close()
}

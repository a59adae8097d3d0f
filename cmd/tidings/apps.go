package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tidings/tidings"
)

const appsNote = `
The apps commands open the database of the data directory directly, which
is safe while the server runs.`

var appsCreateCommand = &command{
	name:  "apps create",
	args:  "[--name NAME] [flags] [ID]",
	short: "create an app and print its credentials",
	long: `
Apps create creates an app (a tenant: nothing crosses between apps) and
prints its id, name, settings, server key and signing secret. The server
key is stored hashed: this is the only time it is shown (if it is lost,
"tidings apps rotate-key" makes a new one). Without ID, the app gets a
generated id. It creates the database if there is none yet.` + appsNote,
	run: runAppsCreate,
}

var appsListCommand = &command{
	name:  "apps list",
	args:  "[flags]",
	short: "list the apps",
	long: `
Apps list prints the id, name and creation time of every app, oldest
first. It prints no credentials.` + appsNote,
	run: runAppsList,
}

var appsShowCommand = &command{
	name:  "apps show",
	args:  "[flags] ID",
	short: "print an app's id, name, settings and signing secret",
	long: `
Apps show prints the id, name, creation time, settings and signing secret
of the app ID. The signing secret lets your backend mint user access
tokens itself: keep it secret. The server key, which authenticates your
backend to the API, is stored hashed and cannot be shown again: "tidings
apps rotate-key" makes a new one and prints it.` + appsNote,
	run: runAppsShow,
}

var appsRotateKeyCommand = &command{
	name:  "apps rotate-key",
	args:  "[flags] ID",
	short: "replace an app's server key and print the new one",
	long: `
Apps rotate-key gives the app ID a new server key, prints the app like
"apps show" with the new key (the only time it is shown), and makes the
old key stop working at once. The signing secret, and so the user access
tokens already minted, do not change.` + appsNote,
	run: runAppsRotateKey,
}

var appsRotateSecretCommand = &command{
	name:  "apps rotate-secret",
	args:  "[--overlap DURATION] [flags] ID",
	short: "replace an app's signing secret, the old one verifying for a while",
	long: `
Apps rotate-secret gives the app ID a new signing secret, which signs the
access tokens minted from now on, and prints the app like "apps show" with
it. The secret it replaces keeps verifying the tokens it signed for
--overlap (default 24h, the longest a token minted by the server lives;
0s: not at all), so that the users' tokens keep working while your
backend, if it mints tokens itself, moves to the new secret; after it,
tokens signed with the old secret are refused. A running server takes the
new secret at once for the tokens it mints, and verifies with both (its
cache of verified tokens keeps a token at most a minute).` + appsNote,
	run: runAppsRotateSecret,
}

var appsSetCommand = &command{
	name:  "apps set",
	args:  "[--name NAME] [--user-editable-fields FIELDS] [flags] ID",
	short: "change an app's name or settings",
	long: `
Apps set changes the settings of the app ID given by its flags, leaves the
others alone, and prints the app like "apps show".

--user-editable-fields lists, separated by commas, the profile fields
users may change in their own profile: displayName, avatarUrl,
identifier, metadata (by default displayName,avatarUrl). The others only
your backend may set, with the server key; "" lets users change none.
The same settings are at GET and PATCH /v1/app, with the server key.` + appsNote,
	run: runAppsSet,
}

// dataFlags returns the flag set of a command whose only settings are the
// data directory and the configuration file.
func dataFlags(name string, cfg *config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	addDataFlags(fs, cfg)
	return fs
}

func runAppsCreate(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps create", &cfg)
	name := fs.String("name", "", "the app's `name` (default: its id)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 1, "app ID"); err != nil {
		return err
	}
	id := ""
	if len(args) == 1 {
		id = args[0]
	}
	st, err := openAdminStores(cfg, c, true)
	if err != nil {
		return err
	}
	defer st.Close()
	app, err := st.Apps.CreateApp(ctx, id, *name)
	if err != nil {
		return err
	}
	printApp(c.stdout, app)
	return st.Close()
}

func runAppsList(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps list", &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	apps, err := st.Apps.ListApps(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCREATED")
	for _, app := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", app.ID, app.Name, app.CreatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return st.Close()
}

func runAppsShow(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps show", &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "app ID"); err != nil {
		return err
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	apps := st.Apps
	app, err := apps.FindAppByID(ctx, args[0])
	if err != nil {
		return appError(err, args[0])
	}
	app.ServerKey = firstKey(ctx, apps, cfg.Data, app.ID)
	printApp(c.stdout, app)
	return st.Close()
}

// firstKeyFile, in the data directory, keeps the server key of the app
// that serve creates on its first start, so that a fresh install can be
// used at once ("apps show default" prints it) until the key is rotated.
// It is readable by its owner only, like the database, which holds every
// app's signing secret (as powerful as a key) anyway.
const firstKeyFile = "default-server-key"

func saveFirstKey(data, key string) error {
	return os.WriteFile(filepath.Join(data, firstKeyFile), []byte(key+"\n"), 0o600)
}

// firstKey returns the key kept in firstKeyFile when it is still the
// server key of the app appID, else "".
func firstKey(ctx context.Context, apps tidings.AppService, data, appID string) string {
	if appID != defaultAppID {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(data, firstKeyFile))
	if err != nil {
		return ""
	}
	key := strings.TrimSpace(string(b))
	if app, err := apps.FindAppByServerKey(ctx, key); err != nil || app.ID != appID {
		return ""
	}
	return key
}

func runAppsRotateKey(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps rotate-key", &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "app ID"); err != nil {
		return err
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	app, err := st.Apps.RotateServerKey(ctx, args[0])
	if err != nil {
		return appError(err, args[0])
	}
	if app.ID == defaultAppID {
		// The first key is no longer valid: nothing left to keep in clear.
		if err := os.Remove(filepath.Join(cfg.Data, firstKeyFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(c.stderr, "tidings apps rotate-key: could not remove %s: %v\n", firstKeyFile, err)
		}
	}
	printApp(c.stdout, app)
	return st.Close()
}

func runAppsRotateSecret(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps rotate-secret", &cfg)
	overlap := fs.Duration("overlap", 24*time.Hour, "how long the old secret keeps verifying the tokens it signed")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "app ID"); err != nil {
		return err
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	app, err := st.Apps.RotateSigningSecret(ctx, args[0], *overlap)
	if err != nil {
		return appError(err, args[0])
	}
	printApp(c.stdout, app)
	return st.Close()
}

func runAppsSet(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps set", &cfg)
	var upd tidings.AppUpdate
	fs.Func("name", "the app's new `name`", func(v string) error {
		upd.Name = &v
		return nil
	})
	fs.Func("user-editable-fields", "comma-separated profile `fields` users may change themselves: displayName, avatarUrl, identifier, metadata", func(v string) error {
		fields := splitList(v)
		if fields == nil {
			fields = []string{}
		}
		upd.UserEditableFields = &fields
		return nil
	})
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "app ID"); err != nil {
		return err
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	app, err := st.Apps.UpdateApp(ctx, args[0], upd)
	if err != nil {
		return appError(err, args[0])
	}
	printApp(c.stdout, app)
	return st.Close()
}

// printApp prints an app with its settings and credentials, one "label:
// value" a line. The server key is known only when it was just made.
func printApp(w io.Writer, app *tidings.App) {
	fmt.Fprintf(w, "id:                   %s\n", app.ID)
	fmt.Fprintf(w, "name:                 %s\n", app.Name)
	fmt.Fprintf(w, "created:              %s\n", app.CreatedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "user-editable fields: %s\n", strings.Join(app.UserEditableFields, ","))
	if app.ServerKey != "" {
		fmt.Fprintf(w, "server key:           %s\n", app.ServerKey)
	} else {
		fmt.Fprintf(w, "server key:           (stored hashed, not shown: \"tidings apps rotate-key %s\" makes a new one)\n", app.ID)
	}
	fmt.Fprintf(w, "signing secret:       %s\n", app.SigningSecret)
	if secrets := app.VerifyingSecrets(time.Now()); len(secrets) > 1 {
		fmt.Fprintf(w, "previous secret:      verifies until %s\n", app.PreviousSecretUntil.UTC().Format(time.RFC3339))
	}
}

// appError explains an error finding the app id.
func appError(err error, id string) error {
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return fmt.Errorf("there is no app %q (see \"tidings apps list\")", id)
	}
	return err
}

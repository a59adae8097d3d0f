package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/token"
)

// The commands that talk to a running server as one of its users (listen,
// send, chat) find the server and the user's access token the same way,
// with the flags of remote.

// defaultServer is the server of "tidings serve" with its defaults.
const defaultServer = "http://" + defaultAddr

// clientSettings are the flags of remote that may also come from the
// environment (TIDINGS_SERVER, TIDINGS_TOKEN).
var clientSettings = []string{"server", "token"}

func isClientSetting(name string) bool { return slices.Contains(clientSettings, name) }

// mintedTTL is the lifetime of the tokens minted for --user; the client
// mints a new one before it expires.
const mintedTTL = time.Hour

// remote is where a client command connects, and as whom.
type remote struct {
	server string
	token  string
	user   string
	app    string
	cfg    config // the data directory, for --user
}

const remoteHelp = `

The server is --server (or TIDINGS_SERVER), http://127.0.0.1:8080 by
default. The user is the one of the access token given in TIDINGS_TOKEN or
with --token (your backend mints tokens: see POST /v1/users/{userId}/tokens,
or "tidings token"). Prefer the environment: command lines are visible to
other users of the machine. Tokens never go into URLs.

For development on the machine of the server, --user ID mints tokens for
that user with the signing secret of the app in the data directory (--data,
--app), as "tidings token" does, instead of --token.`

// addRemoteFlags registers the flags of r.
func addRemoteFlags(fs *flag.FlagSet, r *remote) {
	r.cfg = defaultConfig()
	fs.StringVar(&r.server, "server", defaultServer, "base `URL` of the Tidings server")
	fs.StringVar(&r.token, "token", "", "the user's access `token`")
	fs.StringVar(&r.user, "user", "", "for development: act as the user `id`, minting tokens with the signing secret of the data directory")
	fs.StringVar(&r.app, "app", defaultAppID, "`id` of the app of --user")
	addDataFlags(fs, &r.cfg)
}

// resolve completes r, after c.parse(fs), with the environment, and
// checks it.
func (r *remote) resolve(c *cli, fs *flag.FlagSet) error {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if v, ok := c.lookupEnv(envName("server")); ok && v != "" && !given["server"] {
		r.server = v
	}
	if u, err := url.Parse(r.server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErrorf("the server %q is not an http:// or https:// URL", r.server)
	}
	switch {
	case given["token"] && given["user"]:
		return usageErrorf("give --token or --user, not both")
	case given["user"]:
		if !tidings.ValidID(r.user) {
			return usageErrorf("--user %q is not a valid user id", r.user)
		}
	case given["token"]:
	default:
		r.token, _ = c.lookupEnv(envName("token"))
	}
	if r.user == "" && strings.TrimSpace(r.token) == "" {
		return usageErrorf("no access token: set TIDINGS_TOKEN (or give --token), or, for development, --user ID")
	}
	r.token = strings.TrimSpace(r.token)
	return nil
}

// credentials returns the option of the client that logs the user in.
func (r *remote) credentials(ctx context.Context, c *cli) (client.Option, error) {
	if r.user == "" {
		return client.WithToken(r.token), nil
	}
	app, err := r.localApp(ctx, c)
	if err != nil {
		return nil, err
	}
	return client.WithTokenProvider(func(context.Context) (string, error) {
		tok, _, err := token.Mint(app, r.user, mintedTTL, time.Now())
		return tok, err
	}), nil
}

// localApp reads the app of --user from the data directory, and checks
// that the user exists.
func (r *remote) localApp(ctx context.Context, c *cli) (*tidings.App, error) {
	st, err := openAdminStores(r.cfg, c, false)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	app, err := st.Apps.FindAppByID(ctx, r.app)
	if err != nil {
		return nil, appError(err, r.app)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, Server: true})
	_, err = st.Users.FindUserByID(server, r.user)
	switch tidings.ErrorCode(err) {
	case "":
	case tidings.ENotFound:
		return nil, fmt.Errorf("there is no user %q in app %q: create it first (POST /v1/users with the app's server key)", r.user, app.ID)
	default:
		return nil, fmt.Errorf("find user %q: %w", r.user, err)
	}
	return app, st.Close()
}

// newClient returns a client of the server, logged in as the user, with
// the options given.
func (r *remote) newClient(ctx context.Context, c *cli, opts ...client.Option) (*client.Client, error) {
	cred, err := r.credentials(ctx, c)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(r.server, append([]client.Option{cred}, opts...)...)
	if err != nil {
		return nil, usageError{err}
	}
	return cl, nil
}

// explain makes the error of a request to the server clear to a person:
// the server's own message, or that it could not be reached.
func (r *remote) explain(err error) error {
	switch {
	case err == nil:
		return nil
	case client.ErrorCode(err) == tidings.EUnauthenticated:
		return fmt.Errorf("the server refused the access token: %s", errorText(err))
	}
	if why, ok := unreachable(err); ok {
		return fmt.Errorf("cannot reach the server at %s: %s", r.server, why)
	}
	return err
}

// unreachable reports whether err says that the server could not be
// reached (rather than that it answered with an error), and why, in a few
// words for a person: "connection refused", "no such host"...
func unreachable(err error) (why string, ok bool) {
	var (
		uerr   *url.Error
		operr  *net.OpError
		dnserr *net.DNSError
		nerr   net.Error
	)
	switch {
	case err == nil || errors.Is(err, context.Canceled):
		return "", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the connection was reset", true
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to the host", true
	case errors.Is(err, syscall.ENETUNREACH):
		return "the network is unreachable", true
	case errors.As(err, &dnserr):
		if dnserr.IsNotFound {
			return "no such host", true
		}
		return "the name could not be resolved", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before the answer", true
	case errors.As(err, &nerr) && nerr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "no answer in time", true
	case errors.As(err, &operr):
		return operr.Err.Error(), true
	case errors.As(err, &uerr):
		return uerr.Err.Error(), true
	}
	return "", false
}

// input returns the standard input of the command (empty in tests that
// give none).
func (c *cli) input() io.Reader {
	if c.stdin == nil {
		return strings.NewReader("")
	}
	return c.stdin
}

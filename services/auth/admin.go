package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/ids"
	"shoplab/internal/pgdb"
)

const adminUsage = `usage: auth admin <command> [flags]

The operator's commands, run on the machine that runs auth with auth's own environment (DATABASE_URL and
AUTH_KEY_ENCRYPTION_KEY_FILE or AUTH_KEY_ENCRYPTION_KEY). No HTTP call can do any of this.

commands:
  grant  --email E            give the user the admin role (it is in their next token: log in again)
  revoke --email E            take it away; every session of the user is revoked at once
  list                        the users who hold the admin role
  token  --email E [--ttl D]  start a session for an admin and print its token (for tools: load, bench)`

// runAdmin is "auth admin …".
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, adminUsage)
		if len(args) == 0 {
			return errors.New("admin: no command given")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	fset := flag.NewFlagSet("admin "+cmd, flag.ContinueOnError)
	fset.SetOutput(stderr)
	email := fset.String("email", "", "the user's email")
	ttl := fset.Duration("ttl", 0, "token lifetime (token only; default and at most AUTH_TOKEN_TTL)")
	if err := fset.Parse(rest); err != nil {
		return fmt.Errorf("admin %s: %w", cmd, err)
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("admin %s: unexpected argument %q", cmd, fset.Arg(0))
	}
	switch cmd {
	case "grant", "revoke", "token":
		e, err := normalizeEmail(*email)
		if err != nil {
			return fmt.Errorf("admin %s: --email: %s", cmd, strings.TrimPrefix(err.Error(), "400 invalid_request: "))
		}
		*email = e
	case "list":
	default:
		fmt.Fprintln(stderr, adminUsage)
		return fmt.Errorf("admin: unknown command %q", cmd)
	}

	log := hclog.New(&hclog.LoggerOptions{Name: "auth-admin", Level: hclog.Warn, Output: stderr})
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dsn := getenv("DATABASE_URL")
	if dsn == "" {
		return errors.New("admin: DATABASE_URL is not set; run this with auth's environment (README: operators)")
	}
	db, err := pgdb.Open(ctx, dsn, 10*time.Second, log)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer db.Close()
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if _, err := pgdb.Migrate(ctx, db, migrations, log); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	store := &postgresStore{db: pgdb.Wrap(db)}

	switch cmd {
	case "grant", "revoke":
		u, revoked, err := store.SetRole(ctx, *email, authn.RoleAdmin, cmd == "grant")
		if errors.Is(err, errNotFound) {
			return fmt.Errorf("admin %s: no user with email %s (register first)", cmd, *email)
		}
		if err != nil {
			return fmt.Errorf("admin %s: %w", cmd, err)
		}
		if cmd == "grant" {
			fmt.Fprintf(stdout, "%s (%s) is an admin; the role is in the tokens of their next login\n", u.Email, u.ID)
		} else {
			fmt.Fprintf(stdout, "%s (%s) is no longer an admin; %d session(s) revoked\n", u.Email, u.ID, revoked)
		}
		return nil
	case "list":
		users, err := store.UsersWithRole(ctx, authn.RoleAdmin)
		if err != nil {
			return fmt.Errorf("admin list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EMAIL\tID\tNAME")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Email, u.ID, u.Name)
		}
		return tw.Flush()
	}

	// token: a session for an admin, signed with the current key, as a login would make it.
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if *ttl == 0 {
		*ttl = cfg.tokenTTL
	}
	if *ttl < time.Minute || *ttl > cfg.tokenTTL {
		return fmt.Errorf("admin token: --ttl must be from 1m to AUTH_TOKEN_TTL (%s): a longer token would outlive its signing key", cfg.tokenTTL)
	}
	u, _, err := store.UserByEmail(ctx, *email)
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("admin token: no user with email %s", *email)
	}
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if !u.hasRole(authn.RoleAdmin) {
		return fmt.Errorf("admin token: %s is not an admin; grant the role first: auth admin grant --email %s", u.Email, u.Email)
	}
	seal, err := newSealer(cfg.kek)
	if err != nil {
		return err
	}
	keys := newKeyRing(store, seal, cfg.policy(), log)
	if err := keys.refresh(ctx); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	sessionID := ids.New("ses")
	token, exp, err := newIssuer(keys, cfg.tokenTTL).issue(u.ID, sessionID, u.Roles, *ttl)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := store.CreateSession(ctx, sessionID, u.ID, exp); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	fmt.Fprintln(stdout, token)
	return nil
}

func (u user) hasRole(role string) bool {
	for _, r := range u.Roles {
		if r == role {
			return true
		}
	}
	return false
}

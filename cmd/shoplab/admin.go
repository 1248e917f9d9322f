package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"shoplab/lab"
	"shoplab/lab/proc"
)

const adminUsage = `usage: shoplab admin <grant|revoke|list|token> [--email E] [--ttl D] [--state DIR] [--bin DIR]

The operator's commands for the lab on this machine (make run): they run auth's own operator command with
auth's database, never an HTTP call.
  grant  --email E   make the user an admin (log in again to get a token with the role)
  revoke --email E   take the role away; every session of the user is refused at once
  list               the admins
  token  --email E   print a fresh token of an admin, for tools: SHOPLAB_ADMIN_TOKEN="$(…)" shoplab load
In the VM lab run the same on the auth VM: vagrant ssh auth-1 -c 'sudo shoplab-admin grant --email E'.`

// runAdmin is "shoplab admin …": it runs "auth admin …" against the running local lab.
func runAdmin(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	root, err := proc.RepoRoot()
	if err != nil {
		root, _ = os.Getwd()
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, adminUsage)
		if len(args) == 0 {
			return usageError{"admin: no command given"}
		}
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "grant", "revoke", "list", "token":
	default:
		fmt.Fprintln(stderr, adminUsage)
		return usageError{fmt.Sprintf("admin: unknown command %q", cmd)}
	}
	fs := flag.NewFlagSet("admin "+cmd, flag.ContinueOnError)
	state := fs.String("state", filepath.Join(root, ".lab"), "the lab's state directory")
	bin := fs.String("bin", filepath.Join(root, "bin"), "directory with the service binaries (make build)")
	email := fs.String("email", "", "the user's email")
	ttl := fs.String("ttl", "", "token lifetime (token only; default AUTH_TOKEN_TTL)")
	if err := parseFlags(fs, rest, stderr); err != nil {
		return err
	}
	if cmd != "list" && *email == "" {
		return usageError{"admin " + cmd + ": --email is required"}
	}
	env, err := lab.OperatorEnv(*state, "auth")
	if err != nil {
		return err
	}
	authArgs := []string{"admin", cmd}
	if *email != "" {
		authArgs = append(authArgs, "--email", *email)
	}
	if *ttl != "" {
		authArgs = append(authArgs, "--ttl", *ttl)
	}
	c := exec.CommandContext(ctx, filepath.Join(*bin, "auth"), authArgs...)
	c.Env = append(lab.ServiceEnv(os.Environ(), "auth"), env...)
	c.Stdout, c.Stderr = stdout, stderr
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("admin %s failed (see above)", cmd)
		}
		return fmt.Errorf("admin %s: %w (build the services with: make build)", cmd, err)
	}
	return nil
}

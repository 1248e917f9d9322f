// Package pgcluster runs a private PostgreSQL server from Debian's postgresql package: initdb into a directory
// of ours, the server on a loopback port with its socket in that directory, and one database and role per
// service. Tests use it for throwaway clusters, the local lab for its persistent one. No system service is used.
package pgcluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"

	"shoplab/lab/proc"
)

// InstallHint says how to get PostgreSQL on Debian.
const InstallHint = "install PostgreSQL 15 with: sudo apt-get install -y postgresql (or set SHOPLAB_PG_BIN to its bin directory)"

// BinDir finds the directory holding initdb and postgres: $SHOPLAB_PG_BIN, the newest
// /usr/lib/postgresql/*/bin, or the directory of initdb on PATH.
func BinDir() (string, error) {
	if d := os.Getenv("SHOPLAB_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("SHOPLAB_PG_BIN=%s has no initdb: %w", d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found; " + InstallHint)
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Options configures a cluster.
type Options struct {
	Dir       string // holds data/, run/ (the socket) and postgres.log
	Port      int    // 0 picks a free port
	Superuser string // default "shoplab"
	// Fast turns durability off (fsync, synchronous_commit, full_page_writes): for throwaway test clusters only.
	Fast bool
	// TrustHost lets any local TCP client in without a password (tests). Otherwise TCP needs a role's
	// password (scram-sha-256) and only the socket, private to the cluster's owner, trusts.
	TrustHost bool
}

// Cluster is a running server.
type Cluster struct {
	opts   Options
	Port   int
	proc   *proc.Process
	cred   *syscall.Credential
	admin  *sql.DB
	binDir string
}

// Credential returns the user to run PostgreSQL (and what runs it, such as Patroni) as: ourselves (nil), or
// the postgres user when we are root (PostgreSQL refuses to run as root).
func Credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as")
}

// ChownTree gives root and everything beneath it to cred's user (nothing when cred is nil).
func ChownTree(root string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

func (o Options) dataDir() string   { return filepath.Join(o.Dir, "data") }
func (o Options) socketDir() string { return filepath.Join(o.Dir, "run") }

// LogPath is the server's log file.
func (o Options) LogPath() string { return filepath.Join(o.Dir, "postgres.log") }

// Start initialises the cluster if its data directory is new, starts the server and waits until it answers
// (at most 60 s).
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Superuser == "" {
		o.Superuser = "shoplab"
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := Credential()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.socketDir(), 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := ChownTree(o.Dir, cred); err != nil {
		return nil, fmt.Errorf("give %s to the postgres user: %w", o.Dir, err)
	}
	c := &Cluster{opts: o, cred: cred, binDir: bin, Port: o.Port}
	if _, err := os.Stat(filepath.Join(o.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}
	if c.Port == 0 {
		if c.Port, err = proc.FreePort(); err != nil {
			return nil, err
		}
	} else if !proc.PortFree(fmt.Sprintf("127.0.0.1:%d", c.Port)) {
		return nil, fmt.Errorf("PostgreSQL port 127.0.0.1:%d is taken; stop what uses it or choose another port", c.Port)
	}
	args := []string{"-D", o.dataDir(), "-p", strconv.Itoa(c.Port), "-k", o.socketDir(),
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400", "-c", "logging_collector=off"}
	if o.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	c.proc, err = proc.Start(proc.Spec{
		Name: "postgres", Path: filepath.Join(bin, "postgres"), Args: args, LogPath: o.LogPath(),
		ParentDeath: syscall.SIGINT, Credential: cred,
	})
	if err != nil {
		return nil, err
	}
	c.admin, err = sql.Open("postgres", c.AdminDSN("postgres"))
	if err != nil {
		_ = c.Stop()
		return nil, err
	}
	c.admin.SetMaxOpenConns(4)
	err = proc.WaitFor(c.proc, 60*time.Second, 50*time.Millisecond, func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.admin.PingContext(pctx)
	})
	if err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return c, nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	hostAuth := "scram-sha-256"
	if c.opts.TrustHost {
		hostAuth = "trust"
	}
	args := []string{"-D", c.opts.dataDir(), "-U", c.opts.Superuser, "-E", "UTF8", "--locale=C",
		"--auth-local=trust", "--auth-host=" + hostAuth}
	if c.opts.Fast {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, "initdb"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.opts.dataDir(), err, out)
	}
	return nil
}

// AdminDSN connects as the superuser through the cluster's private socket.
func (c *Cluster) AdminDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.opts.socketDir(), c.Port, c.opts.Superuser, db)
}

// DSN is the TCP address of db for role (with password, when one is given), as a service uses it.
func (c *Cluster) DSN(db, role, password string) string {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", c.Port, role, db)
	if password != "" {
		dsn += " password='" + strings.ReplaceAll(password, "'", `\'`) + "'"
	}
	return dsn
}

// EnsureDatabase creates role (with password, when given) and a database it owns, if they do not exist, and
// makes the database reachable by that role alone. It returns the role's DSN.
func (c *Cluster) EnsureDatabase(ctx context.Context, db, role, password string) (string, error) {
	var exists bool
	if err := c.admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up role %s: %w", role, err)
	}
	pw := "NULL"
	if password != "" {
		pw = pq.QuoteLiteral(password)
	}
	stmt := "ALTER ROLE "
	if !exists {
		stmt = "CREATE ROLE "
	}
	if _, err := c.admin.ExecContext(ctx, stmt+pq.QuoteIdentifier(role)+" LOGIN PASSWORD "+pw); err != nil {
		return "", fmt.Errorf("role %s: %w", role, err)
	}
	if err := c.admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up database %s: %w", db, err)
	}
	if !exists {
		if _, err := c.admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(db)+" OWNER "+pq.QuoteIdentifier(role)); err != nil {
			return "", fmt.Errorf("create database %s: %w", db, err)
		}
	}
	if _, err := c.admin.ExecContext(ctx, "REVOKE ALL ON DATABASE "+pq.QuoteIdentifier(db)+" FROM PUBLIC"); err != nil {
		return "", fmt.Errorf("restrict database %s: %w", db, err)
	}
	return c.DSN(db, role, password), nil
}

// DropDatabase removes db, disconnecting its clients.
func (c *Cluster) DropDatabase(ctx context.Context, db string) error {
	_, err := c.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(db)+" WITH (FORCE)")
	return err
}

// PID is the server's process id.
func (c *Cluster) PID() int { return c.proc.PID() }

// Stop shuts the server down (fast shutdown: clients are disconnected, data is kept).
func (c *Cluster) Stop() error {
	if c.admin != nil {
		_ = c.admin.Close()
	}
	if c.proc == nil {
		return nil
	}
	return c.proc.Stop(syscall.SIGINT, 30*time.Second)
}

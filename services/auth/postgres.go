package main

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lib/pq"

	"shoplab/internal/pgdb"
)

// postgresStore is auth's database: users, sessions and signing keys. It is the only file with SQL.
type postgresStore struct {
	db *pgdb.DB
}

func (s *postgresStore) CreateUser(ctx context.Context, u user, hash []byte) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)`, u.ID, u.Email, u.Name, hash)
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "23505" {
		return errEmailTaken
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

func (s *postgresStore) UserByEmail(ctx context.Context, email string) (user, []byte, error) {
	var (
		u    user
		hash []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name, roles, password_hash FROM users WHERE email = $1`, email).
		Scan(&u.ID, &u.Email, &u.Name, pq.Array(&u.Roles), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, nil, errNotFound
	}
	if err != nil {
		return user{}, nil, fmt.Errorf("load user by email: %w", err)
	}
	return u, hash, nil
}

func (s *postgresStore) UserByID(ctx context.Context, id string) (user, error) {
	var u user
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name, roles FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Email, &u.Name, pq.Array(&u.Roles))
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errNotFound
	}
	if err != nil {
		return user{}, fmt.Errorf("load user %s: %w", id, err)
	}
	return u, nil
}

// SetRole grants (on) or takes away role from the user with email. Taking it away also revokes every session
// of the user, so tokens that carry the role are refused at once, as after a logout. It returns the user
// as stored afterwards and how many sessions were revoked.
func (s *postgresStore) SetRole(ctx context.Context, email, role string, on bool) (user, int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return user{}, 0, err
	}
	defer tx.Rollback()
	var u user
	q := `UPDATE users SET roles = array_remove(roles, $2) WHERE email = $1 RETURNING id, email, name, roles`
	if on {
		q = `UPDATE users SET roles = CASE WHEN $2 = ANY(roles) THEN roles ELSE array_append(roles, $2) END
		     WHERE email = $1 RETURNING id, email, name, roles`
	}
	err = tx.QueryRowContext(ctx, q, email, role).Scan(&u.ID, &u.Email, &u.Name, pq.Array(&u.Roles))
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, 0, errNotFound
	}
	if err != nil {
		return user{}, 0, fmt.Errorf("set role of %s: %w", email, err)
	}
	revoked := int64(0)
	if !on {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, u.ID)
		if err != nil {
			return user{}, 0, fmt.Errorf("revoke sessions of %s: %w", u.ID, err)
		}
		revoked, _ = res.RowsAffected()
	}
	return u, int(revoked), tx.Commit()
}

// UsersWithRole lists the users that hold role, by email.
func (s *postgresStore) UsersWithRole(ctx context.Context, role string) ([]user, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, email, name, roles FROM users WHERE $1 = ANY(roles) ORDER BY email`, role)
	if err != nil {
		return nil, fmt.Errorf("list users with role %s: %w", role, err)
	}
	defer rows.Close()
	var out []user
	for rows.Next() {
		var u user
		if err := rows.Scan(&u.ID, &u.Email, &u.Name, pq.Array(&u.Roles)); err != nil {
			return nil, fmt.Errorf("scan user: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (s *postgresStore) CreateSession(ctx context.Context, id, userID string, expires time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)`, id, userID, expires)
	if err != nil {
		return fmt.Errorf("insert session: %w", err)
	}
	return nil
}

func (s *postgresStore) RevokeSession(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// LimitState returns, for each key that has a row, its attempts in the current window, when the window
// started, and the database's clock (all limits are judged on one clock, whichever replica asks).
func (s *postgresStore) LimitState(ctx context.Context, keys []string) (map[string]limitWindow, time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key, hits, window_start, now() FROM rate_limits WHERE key = ANY($1)`, pq.Array(keys))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("read rate limits: %w", err)
	}
	defer rows.Close()
	out := make(map[string]limitWindow, len(keys))
	var now time.Time
	for rows.Next() {
		var (
			k string
			w limitWindow
		)
		if err := rows.Scan(&k, &w.hits, &w.start, &now); err != nil {
			return nil, time.Time{}, fmt.Errorf("scan rate limit: %w", err)
		}
		out[k] = w
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, err
	}
	if now.IsZero() {
		if err := s.db.QueryRowContext(ctx, `SELECT now()`).Scan(&now); err != nil {
			return nil, time.Time{}, fmt.Errorf("read the clock: %w", err)
		}
	}
	return out, now, nil
}

// Hit counts one attempt against key in a fixed window of the given length: a window that has ended starts
// over at one.
func (s *postgresStore) Hit(ctx context.Context, key string, window time.Duration) (limitWindow, time.Time, error) {
	var (
		w   limitWindow
		now time.Time
	)
	err := s.db.QueryRowWrite(ctx, `
		INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, now(), 1)
		ON CONFLICT (key) DO UPDATE SET
		  hits = CASE WHEN rate_limits.window_start <= now() - make_interval(secs => $2) THEN 1 ELSE rate_limits.hits + 1 END,
		  window_start = CASE WHEN rate_limits.window_start <= now() - make_interval(secs => $2) THEN now() ELSE rate_limits.window_start END
		RETURNING hits, window_start, now()`,
		key, window.Seconds()).Scan(&w.hits, &w.start, &now)
	if err != nil {
		return limitWindow{}, time.Time{}, fmt.Errorf("count attempt: %w", err)
	}
	return w, now, nil
}

// Forget deletes key's window.
func (s *postgresStore) Forget(ctx context.Context, key string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM rate_limits WHERE key = $1`, key); err != nil {
		return fmt.Errorf("forget attempts: %w", err)
	}
	return nil
}

// ForgetLimits deletes windows that ended more than olderThan ago.
func (s *postgresStore) ForgetLimits(ctx context.Context, olderThan time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM rate_limits WHERE window_start < now() - make_interval(secs => $1)`, olderThan.Seconds())
	if err != nil {
		return 0, fmt.Errorf("forget old rate limits: %w", err)
	}
	return res.RowsAffected()
}

// ActiveSession returns the user of session id if it is neither revoked nor expired, else errNotFound.
func (s *postgresStore) ActiveSession(ctx context.Context, id string) (string, time.Time, error) {
	var (
		userID  string
		expires time.Time
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT user_id, expires_at FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()`, id).
		Scan(&userID, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, errNotFound
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("load session: %w", err)
	}
	return userID, expires, nil
}

// MaintainKeys runs the signing-key lifecycle in one transaction under an advisory lock, so replicas that
// start or rotate together agree on one key (see keyStore).
func (s *postgresStore) MaintainKeys(ctx context.Context, candidate sealedKey, p keyPolicy, seal func(kid string, seed []byte) ([]byte, error)) (sealedKey, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return sealedKey{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('shoplab.auth.signing_keys'))`); err != nil {
		return sealedKey{}, fmt.Errorf("lock signing keys: %w", err)
	}
	// Seeds an earlier version stored in the clear are sealed, and the clear copy deleted.
	rows, err := tx.QueryContext(ctx, `SELECT kid, seed FROM signing_keys WHERE seed IS NOT NULL`)
	if err != nil {
		return sealedKey{}, fmt.Errorf("find clear seeds: %w", err)
	}
	clear := map[string][]byte{}
	for rows.Next() {
		var (
			kid  string
			seed []byte
		)
		if err := rows.Scan(&kid, &seed); err != nil {
			rows.Close()
			return sealedKey{}, fmt.Errorf("scan clear seed: %w", err)
		}
		clear[kid] = seed
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return sealedKey{}, err
	}
	for kid, seed := range clear {
		sealed, err := seal(kid, seed)
		if err != nil {
			return sealedKey{}, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE signing_keys SET sealed_seed = $1, seed = NULL WHERE kid = $2`, sealed, kid); err != nil {
			return sealedKey{}, fmt.Errorf("seal seed of %s: %w", kid, err)
		}
	}
	// A new key when none can sign or the newest is due for rotation; every other published key then gets
	// its retire time.
	var due bool
	if err := tx.QueryRowContext(ctx, `
		SELECT coalesce((SELECT sealed_seed IS NULL OR created_at <= now() - make_interval(secs => $1)
		                 FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1), true)`,
		p.rotation.Seconds()).Scan(&due); err != nil {
		return sealedKey{}, fmt.Errorf("check key rotation: %w", err)
	}
	if due {
		if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, public_key, sealed_seed, created_at) VALUES ($1, $2, $3, clock_timestamp())`,
			candidate.kid, []byte(candidate.public), candidate.sealed); err != nil {
			return sealedKey{}, fmt.Errorf("store signing key: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE signing_keys SET retire_at = now() + make_interval(secs => $1)
			WHERE kid <> $2 AND retired_at IS NULL AND retire_at IS NULL`, p.retireAfter.Seconds(), candidate.kid); err != nil {
			return sealedKey{}, fmt.Errorf("schedule key retirement: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `
		UPDATE signing_keys SET sealed_seed = NULL, seed = NULL, retired_at = now()
		WHERE retired_at IS NULL AND retire_at <= now()`); err != nil {
		return sealedKey{}, fmt.Errorf("retire keys: %w", err)
	}
	var k sealedKey
	var pub []byte
	err = tx.QueryRowContext(ctx, `
		SELECT kid, public_key, sealed_seed FROM signing_keys
		WHERE retired_at IS NULL AND sealed_seed IS NOT NULL ORDER BY created_at DESC, kid LIMIT 1`).Scan(&k.kid, &pub, &k.sealed)
	if err != nil {
		return sealedKey{}, fmt.Errorf("load signing key: %w", err)
	}
	k.public = ed25519.PublicKey(pub)
	return k, tx.Commit()
}

func (s *postgresStore) PublicKeys(ctx context.Context) ([]signingKeyPublic, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, public_key FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("load public keys: %w", err)
	}
	defer rows.Close()
	var keys []signingKeyPublic
	for rows.Next() {
		var (
			k   signingKeyPublic
			pub []byte
		)
		if err := rows.Scan(&k.kid, &pub); err != nil {
			return nil, fmt.Errorf("scan public key: %w", err)
		}
		k.public = ed25519.PublicKey(pub)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// revocation is one revoked session of the feed.
type revocation struct {
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Revocations returns the revocations after cursor whose tokens have not expired, in commit-safe order, and the
// cursor to ask with next. Those made by transactions that had all finished when it read (before the snapshot's
// xmin) come a page of limit at a time (more: a full page, ask again at once); after them, every revocation
// already committed by a newer transaction comes too, but the next cursor never passes that xmin — so a
// transaction still running now is read once it commits, and what came after it is read again (harmless:
// revoking is idempotent).
func (s *postgresStore) Revocations(ctx context.Context, after feedCursor, limit int) ([]revocation, feedCursor, bool, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, after, false, fmt.Errorf("begin reading revocations: %w", err)
	}
	defer tx.Rollback()
	var xmin uint64
	if err := tx.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&xmin); err != nil {
		return nil, after, false, fmt.Errorf("read the snapshot: %w", err)
	}
	type row struct {
		revocation
		feedCursor
	}
	read := func(query string, args ...any) ([]row, error) {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("read revocations: %w", err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.XID, &r.Seq, &r.SessionID, &r.ExpiresAt); err != nil {
				return nil, fmt.Errorf("scan revocation: %w", err)
			}
			r.ExpiresAt = r.ExpiresAt.UTC()
			out = append(out, r)
		}
		return out, rows.Err()
	}
	x, q := strconv.FormatUint(after.XID, 10), after.Seq
	done, err := read(`
		SELECT xid::text, seq, session_id, expires_at FROM revocations
		WHERE (xid, seq) > ($1::xid8, $2) AND xid < $3::xid8 AND expires_at > now()
		ORDER BY xid, seq LIMIT $4`, x, q, strconv.FormatUint(xmin, 10), limit)
	if err != nil {
		return nil, after, false, err
	}
	out := make([]revocation, 0, len(done))
	for _, r := range done {
		out = append(out, r.revocation)
	}
	if len(done) == limit {
		return out, done[len(done)-1].feedCursor, true, nil
	}
	newer, err := read(`
		SELECT xid::text, seq, session_id, expires_at FROM revocations
		WHERE xid >= $2::xid8 AND (xid, seq) > ($1::xid8, $3) AND expires_at > now()
		ORDER BY xid, seq`, x, strconv.FormatUint(xmin, 10), q)
	if err != nil {
		return nil, after, false, err
	}
	for _, r := range newer {
		out = append(out, r.revocation)
	}
	next := feedCursor{XID: xmin}
	if next.XID < after.XID || next.XID == after.XID && after.Seq > 0 {
		next = after // never backwards
	}
	return out, next, false, nil
}

// ForgetRevocations deletes revocations whose tokens expired more than grace ago.
func (s *postgresStore) ForgetRevocations(ctx context.Context, grace time.Duration) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM revocations WHERE expires_at < now() - make_interval(secs => $1)`, grace.Seconds())
	if err != nil {
		return 0, fmt.Errorf("forget old revocations: %w", err)
	}
	return res.RowsAffected()
}

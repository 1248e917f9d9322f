package main

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// postgresStore is auth's database: users, sessions and signing keys. It is the only file with SQL.
type postgresStore struct {
	db *sql.DB
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
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name, password_hash FROM users WHERE email = $1`, email).
		Scan(&u.ID, &u.Email, &u.Name, &hash)
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
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name FROM users WHERE id = $1`, id).Scan(&u.ID, &u.Email, &u.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errNotFound
	}
	if err != nil {
		return user{}, fmt.Errorf("load user %s: %w", id, err)
	}
	return u, nil
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

// SigningKey returns the newest key with a seed, storing candidate if there is none. An advisory lock makes
// replicas that start together agree on one key.
func (s *postgresStore) SigningKey(ctx context.Context, candidate signingKey) (signingKey, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return signingKey{}, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('shoplab.auth.signing_keys'))`); err != nil {
		return signingKey{}, fmt.Errorf("lock signing keys: %w", err)
	}
	var seed []byte
	err = tx.QueryRowContext(ctx, `SELECT seed FROM signing_keys WHERE seed IS NOT NULL ORDER BY created_at DESC LIMIT 1`).Scan(&seed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO signing_keys (kid, public_key, seed) VALUES ($1, $2, $3)`,
			candidate.kid, []byte(candidate.public()), candidate.seed()); err != nil {
			return signingKey{}, fmt.Errorf("store signing key: %w", err)
		}
		return candidate, tx.Commit()
	case err != nil:
		return signingKey{}, fmt.Errorf("load signing key: %w", err)
	}
	k, err := keyFromSeed(seed)
	if err != nil {
		return signingKey{}, err
	}
	return k, tx.Commit()
}

func (s *postgresStore) PublishKey(ctx context.Context, k signingKey) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (kid, public_key) VALUES ($1, $2) ON CONFLICT (kid) DO NOTHING`,
		k.kid, []byte(k.public()))
	if err != nil {
		return fmt.Errorf("publish key %s: %w", k.kid, err)
	}
	return nil
}

func (s *postgresStore) PublicKeys(ctx context.Context) ([]signingKeyPublic, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kid, public_key FROM signing_keys ORDER BY created_at DESC`)
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

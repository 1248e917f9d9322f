package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"shoplab/internal/idem"
	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

// postgresStore is payments' database: payments and the idempotency store. It is the only file with SQL.
type postgresStore struct {
	db *pgdb.DB
}

const paymentColumns = `id, order_id, status, amount_cents, currency, card_brand, card_last4, coalesce(decline_reason, ''), created_at`

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func scanPayment(row *sql.Row) (payment, error) {
	var (
		p            payment
		brand, last4 sql.NullString
	)
	err := row.Scan(&p.ID, &p.OrderID, &p.Status, &p.AmountCents, &p.Currency, &brand, &last4, &p.DeclineReason, &p.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return payment{}, errNotFound
	}
	if err != nil {
		return payment{}, fmt.Errorf("scan payment: %w", err)
	}
	if brand.Valid {
		p.Card = &cardSummary{Brand: brand.String, Last4: last4.String}
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

func paymentForOrder(ctx context.Context, q queryer, orderID string) (payment, error) {
	return scanPayment(q.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1`, orderID))
}

// insertPayment stores p unless its order already has a payment; it reports whether p was stored.
func insertPayment(ctx context.Context, tx *pgdb.Tx, p payment) (bool, error) {
	var brand, last4 any
	if p.Card != nil {
		brand, last4 = p.Card.Brand, p.Card.Last4
	}
	var reason any
	if p.DeclineReason != "" {
		reason = p.DeclineReason
	}
	res, err := tx.ExecContext(ctx, `
		INSERT INTO payments (id, order_id, status, amount_cents, currency, card_brand, card_last4, decline_reason, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (order_id) DO NOTHING`,
		p.ID, p.OrderID, p.Status, p.AmountCents, p.Currency, brand, last4, reason, p.CreatedAt)
	if err != nil {
		return false, fmt.Errorf("insert payment for order %s: %w", p.OrderID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// Charge stores payment p under key and the answer render makes of it, and reports whether p was created
// (false: the key's stored answer, or the order's earlier payment, is answered instead).
func (s *postgresStore) Charge(ctx context.Context, key string, fingerprint []byte, p payment, render func(payment, bool) (web.Answer, error)) (web.Answer, bool, error) {
	if a, ok, err := s.chargeFresh(ctx, key, fingerprint, p, render); err != nil || ok {
		return a, ok, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return web.Answer{}, false, err
	}
	defer tx.Rollback()

	// The key row goes in first, before any other work: a concurrent request with the same key waits here
	// until this transaction ends, then finds the stored answer.
	res, err := tx.ExecContext(ctx, `
		INSERT INTO idempotency_keys (key, request_hash, status_code, response_body) VALUES ($1, $2, 0, '')
		ON CONFLICT (key) DO NOTHING`, key, fingerprint)
	if err != nil {
		return web.Answer{}, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var (
			hash []byte
			a    web.Answer
		)
		if err := tx.QueryRowContext(ctx, `SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE key = $1`, key).
			Scan(&hash, &a.Status, &a.Body); err != nil {
			return web.Answer{}, false, fmt.Errorf("load idempotency key: %w", err)
		}
		if !idem.Same(hash, fingerprint) {
			return web.Answer{}, false, idem.ErrKeyReused
		}
		return a, false, tx.Commit()
	}

	fresh, err := insertPayment(ctx, tx, p)
	if err != nil {
		return web.Answer{}, false, err
	}
	if !fresh {
		if p, err = paymentForOrder(ctx, tx, p.OrderID); err != nil {
			return web.Answer{}, false, err
		}
	}
	a, err := render(p, fresh)
	if err != nil {
		return web.Answer{}, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE idempotency_keys SET status_code = $1, response_body = $2 WHERE key = $3`, a.Status, a.Body, key); err != nil {
		return web.Answer{}, false, fmt.Errorf("store idempotent answer: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return web.Answer{}, false, fmt.Errorf("commit payment: %w", err)
	}
	return a, fresh, nil
}

// chargeFresh is Charge's common case — a new key, for an order without a payment — in one round trip
// (payments_charge_fresh, migration 0002): the payment, and the key with its answer, go in together. ok is
// false (and nothing is stored) in any other case, for Charge to decide: a concurrent request for the same
// order waits on the payment's unique order and then finds it there.
func (s *postgresStore) chargeFresh(ctx context.Context, key string, fingerprint []byte, p payment, render func(payment, bool) (web.Answer, error)) (web.Answer, bool, error) {
	a, err := render(p, true)
	if err != nil {
		return web.Answer{}, false, err
	}
	var brand, last4, reason any
	if p.Card != nil {
		brand, last4 = p.Card.Brand, p.Card.Last4
	}
	if p.DeclineReason != "" {
		reason = p.DeclineReason
	}
	var fresh bool
	if err := s.db.QueryRowWrite(ctx, `SELECT payments_charge_fresh($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		p.ID, p.OrderID, p.Status, p.AmountCents, p.Currency, brand, last4, reason, p.CreatedAt,
		key, fingerprint, a.Status, a.Body).Scan(&fresh); err != nil {
		return web.Answer{}, false, fmt.Errorf("insert payment for order %s: %w", p.OrderID, err)
	}
	if !fresh {
		return web.Answer{}, false, nil // nothing stored: Charge's full path decides
	}
	return a, true, nil
}

func (s *postgresStore) Void(ctx context.Context, p payment) (payment, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return payment{}, err
	}
	defer tx.Rollback()
	if _, err := insertPayment(ctx, tx, p); err != nil {
		return payment{}, err
	}
	got, err := paymentForOrder(ctx, tx, p.OrderID)
	if err != nil {
		return payment{}, err
	}
	return got, tx.Commit()
}

func (s *postgresStore) Payment(ctx context.Context, id string) (payment, error) {
	return scanPayment(s.db.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
}

func (s *postgresStore) PaymentForOrder(ctx context.Context, orderID string) (payment, error) {
	return paymentForOrder(ctx, s.db, orderID)
}

// Refund marks an authorized payment refunded; refunding a refunded one again changes nothing.
func (s *postgresStore) Refund(ctx context.Context, id string) (payment, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return payment{}, err
	}
	defer tx.Rollback()
	p, err := scanPayment(tx.QueryRowContext(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return payment{}, err
	}
	switch p.Status {
	case "refunded":
		return p, tx.Commit()
	case "authorized":
	default:
		return payment{}, errNotRefundable
	}
	if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = 'refunded', updated_at = now() WHERE id = $1`, id); err != nil {
		return payment{}, fmt.Errorf("refund payment %s: %w", id, err)
	}
	p.Status = "refunded"
	return p, tx.Commit()
}

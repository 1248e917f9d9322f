package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

// postgresStore is orders' database: orders, their items and the idempotency keys. It is the only file with SQL.
type postgresStore struct {
	db *pgdb.DB
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const orderColumns = `id, user_id, status, step, total_cents, currency, ship_name, ship_line1, ship_city,
	ship_postal_code, ship_country, card_brand, card_last4, coalesce(payment_id, ''), coalesce(failure_reason, ''), created_at`

func scanOrder(row interface{ Scan(...any) error }) (order, error) {
	var o order
	a := &o.Shipping
	err := row.Scan(&o.ID, &o.UserID, &o.Status, &o.Step, &o.TotalCents, &o.Currency, &a.Name, &a.Line1, &a.City,
		&a.PostalCode, &a.Country, &o.CardBrand, &o.CardLast4, &o.PaymentID, &o.FailureReason, &o.CreatedAt)
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

// loadItems fills in the items of orders.
func loadItems(ctx context.Context, q querier, orders []order) error {
	if len(orders) == 0 {
		return nil
	}
	idx := make(map[string]int, len(orders))
	ids := make([]string, len(orders))
	for i, o := range orders {
		idx[o.ID], ids[i] = i, o.ID
	}
	rows, err := q.QueryContext(ctx, `
		SELECT order_id, product_id, name, quantity, unit_price_cents, coalesce(cart_version, 0) FROM order_items
		WHERE order_id = ANY($1) ORDER BY order_id, product_id`, pq.Array(ids))
	if err != nil {
		return fmt.Errorf("load order items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id string
			it orderItem
		)
		if err := rows.Scan(&id, &it.ProductID, &it.Name, &it.Quantity, &it.UnitPriceCents, &it.CartVersion); err != nil {
			return fmt.Errorf("scan order item: %w", err)
		}
		orders[idx[id]].Items = append(orders[idx[id]].Items, it)
	}
	return rows.Err()
}

func orderByID(ctx context.Context, q querier, id string) (order, error) {
	o, err := scanOrder(q.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return order{}, errNotFound
	}
	if err != nil {
		return order{}, fmt.Errorf("load order %s: %w", id, err)
	}
	one := []order{o}
	if err := loadItems(ctx, q, one); err != nil {
		return order{}, err
	}
	return one[0], nil
}

func (s *postgresStore) Order(ctx context.Context, userID, id string) (order, error) {
	o, err := orderByID(ctx, s.db, id)
	if err != nil {
		return order{}, err
	}
	if o.UserID != userID {
		return order{}, errNotFound // another user's order is not found, not forbidden: nothing leaks
	}
	return o, nil
}

// OrderAnyUser returns order id whoever owns it (the caller checks who may see it).
func (s *postgresStore) OrderAnyUser(ctx context.Context, id string) (order, error) {
	return orderByID(ctx, s.db, id)
}

// StartCancel moves a confirmed order into its cancellation (compare and set: of concurrent calls one moves
// it) and records who asked.
func (s *postgresStore) StartCancel(ctx context.Context, id, by string) error {
	if _, err := s.db.ExecContext(ctx, `
		UPDATE orders SET step = 'cancelling', cancelled_by = $2, updated_at = now()
		WHERE id = $1 AND step = 'done' AND status = 'confirmed'`, id, by); err != nil {
		return fmt.Errorf("start cancelling order %s: %w", id, err)
	}
	return nil
}

// AllOrders lists every user's orders (but checkouts stock refused, which nobody sees), newest first, with
// status (when not "") and after (the position after a previous page's last order) as filters.
func (s *postgresStore) AllOrders(ctx context.Context, status string, after *orderCursor, limit int) ([]order, error) {
	var (
		at sql.NullTime
		id string
	)
	if after != nil {
		at, id = sql.NullTime{Time: after.CreatedAt, Valid: true}, after.ID
	}
	return s.queryOrders(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE status <> 'rejected' AND ($1 = '' OR status = $1)
		  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
		ORDER BY created_at DESC, id DESC LIMIT $4`, status, at, id, limit)
}

func (s *postgresStore) Orders(ctx context.Context, userID string, limit int) ([]order, error) {
	return s.queryOrders(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE user_id = $1 AND status <> 'rejected' ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
}

// queryOrders runs a query selecting orderColumns and returns the orders with their items.
func (s *postgresStore) queryOrders(ctx context.Context, query string, args ...any) ([]order, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	var out []order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, fmt.Errorf("scan order: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, loadItems(ctx, s.db, out)
}

func scanKey(row *sql.Row) (keyRecord, bool, error) {
	var (
		rec    keyRecord
		status sql.NullInt64
		body   []byte
	)
	err := row.Scan(&rec.Hash, &rec.OrderID, &status, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return keyRecord{}, false, nil
	}
	if err != nil {
		return keyRecord{}, false, fmt.Errorf("load idempotency key: %w", err)
	}
	if status.Valid {
		rec.Answer = &web.Answer{Status: int(status.Int64), Body: body}
	}
	return rec, true, nil
}

func (s *postgresStore) KeyRecord(ctx context.Context, userID, key string) (keyRecord, bool, error) {
	return scanKey(s.db.QueryRowContext(ctx,
		`SELECT request_hash, order_id, response_status, response_body FROM idempotency_keys WHERE user_id = $1 AND key = $2`, userID, key))
}

func (s *postgresStore) CreateOrder(ctx context.Context, o order, key string, hash []byte) (keyRecord, bool, error) {
	created, err := s.createOrder(ctx, o, key, hash)
	if err != nil || created {
		return keyRecord{Hash: hash, OrderID: o.ID}, created, err
	}
	// The key was taken by a concurrent request, whose transaction has committed by now (our insert waited
	// for it); our order was rolled back with our transaction.
	rec, found, err := s.KeyRecord(ctx, o.UserID, key)
	if err == nil && !found {
		err = fmt.Errorf("idempotency key %q conflicted but is gone", key)
	}
	return rec, false, err
}

func (s *postgresStore) createOrder(ctx context.Context, o order, key string, hash []byte) (bool, error) {
	// One statement: the key, the order and its items go in together, or — the key taken by a concurrent
	// request, which this insert waits for — nothing does. (The foreign keys are checked at its end.)
	n := len(o.Items)
	productIDs, names := make([]string, n), make([]string, n)
	quantities, prices, versions := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, it := range o.Items {
		productIDs[i], names[i] = it.ProductID, it.Name
		quantities[i], prices[i], versions[i] = int64(it.Quantity), it.UnitPriceCents, it.CartVersion
	}
	a := o.Shipping
	var created int
	err := s.db.QueryRowContext(ctx, `
		WITH k AS (
			INSERT INTO idempotency_keys (user_id, key, request_hash, order_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, key) DO NOTHING RETURNING order_id),
		o AS (
			INSERT INTO orders (id, user_id, status, step, total_cents, currency, ship_name, ship_line1, ship_city,
			                    ship_postal_code, ship_country, card_brand, card_last4, created_at)
			SELECT order_id, $1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM k
			RETURNING id),
		i AS (
			INSERT INTO order_items (order_id, product_id, name, quantity, unit_price_cents, cart_version)
			SELECT o.id, it.product_id, it.name, it.quantity, it.unit_price_cents, nullif(it.cart_version, 0)
			FROM o, unnest($17::text[], $18::text[], $19::bigint[], $20::bigint[], $21::bigint[])
			        AS it(product_id, name, quantity, unit_price_cents, cart_version))
		SELECT count(*) FROM k`,
		o.UserID, key, hash, o.ID, o.Status, o.Step, o.TotalCents, o.Currency, a.Name, a.Line1, a.City, a.PostalCode,
		a.Country, o.CardBrand, o.CardLast4, o.CreatedAt,
		pq.Array(productIDs), pq.Array(names), pq.Array(quantities), pq.Array(prices), pq.Array(versions)).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("insert order: %w", err)
	}
	return created == 1, nil
}

func (s *postgresStore) StoreAnswer(ctx context.Context, userID, key string, a web.Answer) (web.Answer, error) {
	var (
		got    web.Answer
		status sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `
		UPDATE idempotency_keys SET response_status = $1, response_body = $2
		WHERE user_id = $3 AND key = $4 AND response_status IS NULL
		RETURNING response_status, response_body`, a.Status, a.Body, userID, key).Scan(&status, &got.Body)
	switch {
	case err == nil:
		got.Status = int(status.Int64)
		return got, nil
	case !errors.Is(err, sql.ErrNoRows):
		return web.Answer{}, fmt.Errorf("store answer: %w", err)
	}
	// Another request with the key stored its answer first: that one stands.
	rec, found, err := s.KeyRecord(ctx, userID, key)
	if err != nil {
		return web.Answer{}, err
	}
	if !found || rec.Answer == nil {
		return web.Answer{}, fmt.Errorf("answer for key %q was not stored", key)
	}
	return *rec.Answer, nil
}

// Advance moves o to the transition if it is still at its step (compare and set) and returns the order as
// stored afterwards, in one round trip when it moved. An order's items never change, so they are o's.
func (s *postgresStore) Advance(ctx context.Context, o order, to transition) (order, error) {
	moved, err := scanOrder(s.db.QueryRowContext(ctx, `
		UPDATE orders SET step = $1, status = $2,
		       payment_id = coalesce(nullif($3, ''), payment_id),
		       failure_reason = coalesce(nullif($4, ''), failure_reason),
		       cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END,
		       updated_at = now()
		WHERE id = $5 AND step = $6
		RETURNING `+orderColumns, to.step, to.status, to.paymentID, to.reason, o.ID, o.Step))
	switch {
	case err == nil:
		moved.Items = o.Items
		return moved, nil
	case errors.Is(err, sql.ErrNoRows): // another driver moved it first: read where it is
		return orderByID(ctx, s.db, o.ID)
	}
	return order{}, fmt.Errorf("advance order %s to %s: %w", o.ID, to.step, err)
}

// ClaimStuck claims up to limit unfinished orders untouched for at least age whose turn has come, oldest
// first, and returns them. Claiming sets recover_after to now + lease·2^attempts (at most an hour): no other
// replica picks the order meanwhile (FOR UPDATE SKIP LOCKED also keeps two claims apart), and an order that
// keeps failing waits longer each time instead of holding up the others.
func (s *postgresStore) ClaimStuck(ctx context.Context, age, lease time.Duration, limit int) ([]order, error) {
	rows, err := s.db.QueryContext(ctx, `
		UPDATE orders SET recovery_attempts = recovery_attempts + 1,
		       recover_after = now() + least(make_interval(secs => $2 * power(2, least(recovery_attempts, 12))), interval '1 hour')
		WHERE id IN (
			SELECT id FROM orders
			WHERE step <> 'done' AND updated_at <= now() - make_interval(secs => $1)
			  AND (recover_after IS NULL OR recover_after <= now())
			ORDER BY updated_at LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING id`, age.Seconds(), lease.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim stuck orders: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan claimed order: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return nil, err
	}
	return s.queryOrders(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = ANY($1) ORDER BY updated_at`, pq.Array(ids))
}

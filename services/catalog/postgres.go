package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"

	"shoplab/internal/idem"
	"shoplab/internal/pgdb"
)

// postgresStore is catalog's database: products and stock reservations. It is the only file with SQL.
type postgresStore struct {
	db *pgdb.DB
}

const productColumns = `id, sku, name, description, category, price_cents, currency, stock, archived_at IS NOT NULL`

func scanProduct(row interface{ Scan(...any) error }) (product, error) {
	var p product
	err := row.Scan(&p.ID, &p.SKU, &p.Name, &p.Description, &p.Category, &p.PriceCents, &p.Currency, &p.Stock, &p.Archived)
	return p, err
}

// likePattern turns user text into an ILIKE pattern that matches it literally anywhere.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

func (s *postgresStore) ListProducts(ctx context.Context, q productQuery) ([]product, error) {
	var afterName, afterID string
	if q.After != nil {
		afterName, afterID = q.After.Name, q.After.ID
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+productColumns+` FROM products
		WHERE archived_at IS NULL AND ($1 = '' OR category = $1)
		  AND ($2 = '' OR name ILIKE $3 ESCAPE '\' OR description ILIKE $3 ESCAPE '\')
		  AND ($4 = '' OR (name, id) > ($5, $4))
		ORDER BY name, id
		LIMIT $6`,
		q.Category, q.Q, likePattern(q.Q), afterID, afterName, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	defer rows.Close()
	var out []product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("scan product: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *postgresStore) Product(ctx context.Context, id string) (product, error) {
	p, err := scanProduct(s.db.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return product{}, errNotFound
	}
	if err != nil {
		return product{}, fmt.Errorf("load product %s: %w", id, err)
	}
	return p, nil
}

func (s *postgresStore) ProductsByID(ctx context.Context, ids []string) ([]product, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = ANY($1) AND archived_at IS NULL ORDER BY id`, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("look up products: %w", err)
	}
	defer rows.Close()
	var out []product
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, fmt.Errorf("scan product: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (s *postgresStore) Categories(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT category FROM products WHERE archived_at IS NULL ORDER BY category`)
	if err != nil {
		return nil, fmt.Errorf("list categories: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("scan category: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Reserve takes the stock for an order in one round trip (catalog_reserve, migration 0004): the reservation
// row first — a concurrent reservation for the same order waits on its primary key and then finds it — then
// each product's stock with a conditional update (stock >= quantity), in product-id order so concurrent orders
// cannot deadlock; any shortfall undoes the whole reservation.
func (s *postgresStore) Reserve(ctx context.Context, req reserveRequest) (reservation, bool, error) {
	ids := make([]string, len(req.Items)) // sorted by product
	quantities := make([]int64, len(req.Items))
	for i, it := range req.Items {
		ids[i], quantities[i] = it.ProductID, int64(it.Quantity)
	}
	var (
		outcome   string
		short     sql.NullString
		available sql.NullInt64
	)
	if err := s.db.QueryRowWrite(ctx, `SELECT r_outcome, r_product_id, r_available FROM catalog_reserve($1, $2, $3::integer[])`,
		req.OrderID, pq.Array(ids), pq.Array(quantities)).Scan(&outcome, &short, &available); err != nil {
		return reservation{}, false, fmt.Errorf("reserve stock for %s: %w", req.OrderID, err)
	}
	switch outcome {
	case "reserved":
		return reservation{OrderID: req.OrderID, Status: "reserved", Items: req.Items}, true, nil
	case "exists":
		existing, err := loadReservation(ctx, s.db, req.OrderID, false)
		return existing, false, err
	case "short":
		if !available.Valid { // unknown or archived: it cannot be ordered
			return reservation{}, false, &unknownProductError{productID: short.String}
		}
		wanted := 0
		for _, it := range req.Items {
			if it.ProductID == short.String {
				wanted = it.Quantity
			}
		}
		return reservation{}, false, &insufficientStockError{productID: short.String, available: int(available.Int64), wanted: wanted}
	}
	return reservation{}, false, fmt.Errorf("reserve stock for %s: unexpected outcome %q", req.OrderID, outcome)
}

func loadReservation(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, orderID string, forUpdate bool) (reservation, error) {
	lock := ""
	if forUpdate {
		lock = " FOR UPDATE"
	}
	r := reservation{OrderID: orderID, Items: []reservationItem{}}
	err := q.QueryRowContext(ctx, `SELECT status FROM reservations WHERE order_id = $1`+lock, orderID).Scan(&r.Status)
	if errors.Is(err, sql.ErrNoRows) {
		return reservation{}, errReservationNotFound
	}
	if err != nil {
		return reservation{}, fmt.Errorf("load reservation %s: %w", orderID, err)
	}
	rows, err := q.QueryContext(ctx, `SELECT product_id, quantity FROM reservation_items WHERE order_id = $1 ORDER BY product_id`, orderID)
	if err != nil {
		return reservation{}, fmt.Errorf("load reservation items %s: %w", orderID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var it reservationItem
		if err := rows.Scan(&it.ProductID, &it.Quantity); err != nil {
			return reservation{}, fmt.Errorf("scan reservation item: %w", err)
		}
		r.Items = append(r.Items, it)
	}
	return r, rows.Err()
}

func (s *postgresStore) Reservation(ctx context.Context, orderID string) (reservation, error) {
	return loadReservation(ctx, s.db, orderID, false)
}

// Settle commits, releases or returns an order's reservation under a row lock, each once. Releasing (a
// reservation that was never paid) and returning (a committed one whose order was cancelled) give the stock
// back; releasing an order that was never reserved records the release, so a late reservation is refused.
func (s *postgresStore) Settle(ctx context.Context, orderID, status string) (reservation, error) {
	if status == "committed" { // the checkout's path: one statement when the reservation is as expected
		if r, ok, err := s.commitReserved(ctx, orderID); err != nil || ok {
			return r, err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return reservation{}, err
	}
	defer tx.Rollback()
	if status == "released" {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO reservations (order_id, status) VALUES ($1, 'released') ON CONFLICT (order_id) DO NOTHING`, orderID); err != nil {
			return reservation{}, fmt.Errorf("record release of %s: %w", orderID, err)
		}
	}
	r, err := loadReservation(ctx, tx, orderID, true)
	if err != nil {
		return reservation{}, err
	}
	switch {
	case r.Status == status:
		return r, tx.Commit()
	case status == "returned" && r.Status != "committed":
		return reservation{}, errReservationNotCommitted
	case status == "returned":
	case r.Status == "released":
		return reservation{}, errReservationReleased
	case r.Status == "committed", r.Status == "returned":
		return reservation{}, errReservationCommitted
	}
	if status == "released" || status == "returned" {
		for _, it := range r.Items {
			if _, err := tx.ExecContext(ctx,
				`UPDATE products SET stock = stock + $1, updated_at = now() WHERE id = $2`, it.Quantity, it.ProductID); err != nil {
				return reservation{}, fmt.Errorf("give back stock of %s: %w", it.ProductID, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE reservations SET status = $1, updated_at = now() WHERE order_id = $2`, status, orderID); err != nil {
		return reservation{}, fmt.Errorf("update reservation %s: %w", orderID, err)
	}
	r.Status = status
	return r, tx.Commit()
}

// commitReserved commits a reservation that is reserved, in one statement (the UPDATE takes the row lock
// Settle's transaction would). ok is false when it was in any other state, or missing: Settle then decides.
func (s *postgresStore) commitReserved(ctx context.Context, orderID string) (reservation, bool, error) {
	rows, err := s.db.QueryContext(ctx, `
		WITH c AS (
			UPDATE reservations SET status = 'committed', updated_at = now()
			WHERE order_id = $1 AND status = 'reserved' RETURNING order_id)
		SELECT i.product_id, i.quantity FROM c JOIN reservation_items i USING (order_id) ORDER BY i.product_id`, orderID)
	if err != nil {
		return reservation{}, false, fmt.Errorf("commit reservation %s: %w", orderID, err)
	}
	defer rows.Close()
	r := reservation{OrderID: orderID, Status: "committed", Items: []reservationItem{}}
	for rows.Next() {
		var it reservationItem
		if err := rows.Scan(&it.ProductID, &it.Quantity); err != nil {
			return reservation{}, false, fmt.Errorf("scan reservation item: %w", err)
		}
		r.Items = append(r.Items, it)
	}
	if err := rows.Err(); err != nil {
		return reservation{}, false, fmt.Errorf("commit reservation %s: %w", orderID, err)
	}
	return r, len(r.Items) > 0, nil
}

// CreateProduct stores a new product; a taken sku is errSKUTaken.
func (s *postgresStore) CreateProduct(ctx context.Context, p product) (product, error) {
	got, err := scanProduct(s.db.QueryRowContext(ctx, `
		INSERT INTO products (id, sku, name, description, category, price_cents, currency, stock)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+productColumns,
		p.ID, p.SKU, p.Name, p.Description, p.Category, p.PriceCents, p.Currency, p.Stock))
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "23505" {
		return product{}, errSKUTaken
	}
	if err != nil {
		return product{}, fmt.Errorf("insert product %s: %w", p.SKU, err)
	}
	return got, nil
}

// UpdateProduct sets the fields of patch that are not nil. Orders already placed keep the prices they hold.
func (s *postgresStore) UpdateProduct(ctx context.Context, id string, patch productPatch) (product, error) {
	p, err := scanProduct(s.db.QueryRowContext(ctx, `
		UPDATE products SET name = coalesce($2, name), description = coalesce($3, description),
		       category = coalesce($4, category), price_cents = coalesce($5, price_cents), updated_at = now()
		WHERE id = $1 RETURNING `+productColumns, id, patch.Name, patch.Description, patch.Category, patch.PriceCents))
	if errors.Is(err, sql.ErrNoRows) {
		return product{}, errNotFound
	}
	if err != nil {
		return product{}, fmt.Errorf("update product %s: %w", id, err)
	}
	return p, nil
}

// ArchiveProduct archives a product (again changes nothing).
func (s *postgresStore) ArchiveProduct(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE products SET archived_at = coalesce(archived_at, now()), updated_at = now() WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("archive product %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotFound
	}
	return nil
}

// AdjustStock changes a product's stock by adj.Delta in one transaction and records who did it and why.
// The adjustment row is inserted first: a concurrent request with the same key waits on its unique index
// and then finds it, so one key applies once; a key seen before answers the product as it is now (or
// idem.ErrKeyReused when the request differs). Stock never goes below zero (insufficientStockError).
func (s *postgresStore) AdjustStock(ctx context.Context, id string, adj stockAdjustment) (product, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return product{}, err
	}
	defer tx.Rollback()
	var rowID int64
	err = tx.QueryRowContext(ctx, `
		INSERT INTO stock_adjustments (product_id, idempotency_key, request_hash, delta, reason, actor, stock_after)
		VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (product_id, idempotency_key) DO NOTHING RETURNING id`,
		id, adj.Key, adj.Hash, adj.Delta, adj.Reason, adj.Actor).Scan(&rowID)
	var pe *pq.Error
	switch {
	case errors.As(err, &pe) && pe.Code == "23503": // no such product
		return product{}, errNotFound
	case errors.Is(err, sql.ErrNoRows): // the key was used before: a repeat
		var hash []byte
		if err := tx.QueryRowContext(ctx, `SELECT request_hash FROM stock_adjustments WHERE product_id = $1 AND idempotency_key = $2`,
			id, adj.Key).Scan(&hash); err != nil {
			return product{}, fmt.Errorf("load stock adjustment %s: %w", adj.Key, err)
		}
		if !bytes.Equal(hash, adj.Hash) {
			return product{}, idem.ErrKeyReused
		}
		p, err := scanProduct(tx.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products WHERE id = $1`, id))
		if err != nil {
			return product{}, fmt.Errorf("load product %s: %w", id, err)
		}
		return p, tx.Commit()
	case err != nil:
		return product{}, fmt.Errorf("record stock adjustment: %w", err)
	}
	p, err := scanProduct(tx.QueryRowContext(ctx, `
		UPDATE products SET stock = stock + $2, updated_at = now() WHERE id = $1 AND stock + $2 >= 0
		RETURNING `+productColumns, id, adj.Delta))
	if errors.Is(err, sql.ErrNoRows) {
		var stock int
		if err := tx.QueryRowContext(ctx, `SELECT stock FROM products WHERE id = $1`, id).Scan(&stock); err != nil {
			return product{}, fmt.Errorf("read stock of %s: %w", id, err)
		}
		return product{}, &insufficientStockError{productID: id, available: stock, wanted: -adj.Delta}
	}
	if err != nil {
		return product{}, fmt.Errorf("adjust stock of %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE stock_adjustments SET stock_after = $1 WHERE id = $2`, p.Stock, rowID); err != nil {
		return product{}, fmt.Errorf("record stock after adjustment: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return product{}, fmt.Errorf("commit stock adjustment: %w", err)
	}
	return p, nil
}

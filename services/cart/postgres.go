package main

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/lib/pq"

	"shoplab/internal/pgdb"
)

// postgresStore is cart's database. It is the only file with SQL.
type postgresStore struct {
	db *pgdb.DB
}

func (s *postgresStore) Items(ctx context.Context, userID string) ([]item, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT product_id, name, quantity, unit_price_cents, currency, version FROM cart_items
		WHERE user_id = $1 ORDER BY name, product_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("load cart: %w", err)
	}
	defer rows.Close()
	var items []item
	for rows.Next() {
		var it item
		if err := rows.Scan(&it.ProductID, &it.Name, &it.Quantity, &it.UnitPriceCents, &it.Currency, &it.Version); err != nil {
			return nil, fmt.Errorf("scan cart item: %w", err)
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

func (s *postgresStore) SetItem(ctx context.Context, userID string, it item) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Serialise changes to one user's cart so the line limit and currency rule hold under concurrency.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('cart:' || $1))`, userID); err != nil {
		return fmt.Errorf("lock cart: %w", err)
	}
	var lines, otherCurrencies int
	if err := tx.QueryRowContext(ctx, `
		SELECT count(*) FILTER (WHERE product_id <> $2), count(*) FILTER (WHERE currency <> $3)
		FROM cart_items WHERE user_id = $1`, userID, it.ProductID, it.Currency).Scan(&lines, &otherCurrencies); err != nil {
		return fmt.Errorf("check cart: %w", err)
	}
	if otherCurrencies > 0 {
		return errCurrencyMismatch
	}
	if lines >= maxLines {
		return errCartFull
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO cart_items (user_id, product_id, quantity, name, unit_price_cents, currency)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, product_id) DO UPDATE
		SET quantity = EXCLUDED.quantity, name = EXCLUDED.name, unit_price_cents = EXCLUDED.unit_price_cents,
		    currency = EXCLUDED.currency, updated_at = now(), version = nextval('cart_line_version')`,
		userID, it.ProductID, it.Quantity, it.Name, it.UnitPriceCents, it.Currency); err != nil {
		return fmt.Errorf("set cart item %s: %w", it.ProductID, err)
	}
	return tx.Commit()
}

func (s *postgresStore) RemoveItems(ctx context.Context, userID string, productIDs []string) (int, error) {
	var (
		res sql.Result
		err error
	)
	if productIDs == nil {
		res, err = s.db.ExecContext(ctx, `DELETE FROM cart_items WHERE user_id = $1`, userID)
	} else {
		res, err = s.db.ExecContext(ctx, `DELETE FROM cart_items WHERE user_id = $1 AND product_id = ANY($2)`, userID, pq.Array(productIDs))
	}
	if err != nil {
		return 0, fmt.Errorf("remove cart items: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// RemoveLines deletes the given lines of the user's cart, each only while it still has the version given: a
// line set again since then (a new version) stays. It reports how many lines went.
func (s *postgresStore) RemoveLines(ctx context.Context, userID string, lines []lineVersion) (int, error) {
	ids := make([]string, len(lines))
	versions := make([]int64, len(lines))
	for i, l := range lines {
		ids[i], versions[i] = l.ProductID, l.Version
	}
	res, err := s.db.ExecContext(ctx, `
		DELETE FROM cart_items c USING unnest($2::text[], $3::bigint[]) AS l(product_id, version)
		WHERE c.user_id = $1 AND c.product_id = l.product_id AND c.version = l.version`,
		userID, pq.Array(ids), pq.Array(versions))
	if err != nil {
		return 0, fmt.Errorf("remove cart lines: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

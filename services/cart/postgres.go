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

// SetItem sets one line and returns the cart afterwards, in one round trip (cart_set_item, migration 0003):
// the user's cart is locked for the change so the line limit and the currency rule hold under concurrency.
func (s *postgresStore) SetItem(ctx context.Context, userID string, it item) ([]item, error) {
	rows, err := s.db.QueryWrite(ctx, `
		SELECT r_outcome, r_product_id, r_name, r_quantity, r_unit_price_cents, r_currency, r_version
		FROM cart_set_item($1, $2, $3, $4, $5, $6, $7)`,
		userID, it.ProductID, it.Quantity, it.Name, it.UnitPriceCents, it.Currency, maxLines)
	if err != nil {
		return nil, fmt.Errorf("set cart item %s: %w", it.ProductID, err)
	}
	defer rows.Close()
	var items []item
	for rows.Next() {
		var (
			outcome string
			line    struct {
				productID, name, currency sql.NullString
				quantity, price, version  sql.NullInt64
			}
		)
		if err := rows.Scan(&outcome, &line.productID, &line.name, &line.quantity, &line.price, &line.currency, &line.version); err != nil {
			return nil, fmt.Errorf("scan cart item: %w", err)
		}
		switch outcome {
		case "ok":
			items = append(items, item{ProductID: line.productID.String, Name: line.name.String, Quantity: int(line.quantity.Int64),
				UnitPriceCents: line.price.Int64, Currency: line.currency.String, Version: line.version.Int64})
		case "currency_mismatch":
			return nil, errCurrencyMismatch
		case "cart_full":
			return nil, errCartFull
		default:
			return nil, fmt.Errorf("set cart item %s: unexpected outcome %q", it.ProductID, outcome)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("set cart item %s: %w", it.ProductID, err)
	}
	return items, nil
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

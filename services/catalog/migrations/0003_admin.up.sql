-- Archived products are no longer listed, searched, added to carts or ordered; their rows (and the orders that
-- hold them) stay.
ALTER TABLE products ADD COLUMN archived_at timestamptz;
DROP INDEX products_name_id;
DROP INDEX products_category_name_id;
CREATE INDEX products_name_id ON products (name, id) WHERE archived_at IS NULL;
CREATE INDEX products_category_name_id ON products (category, name, id) WHERE archived_at IS NULL;
ALTER TABLE products DROP CONSTRAINT products_price_cents_check;
ALTER TABLE products ADD CONSTRAINT products_price_cents_check CHECK (price_cents >= 1);

-- Every stock adjustment an operator made: who, when, by how much, why. (product_id, idempotency_key) makes a
-- repeated request apply once; request_hash tells a repeat from another request under the same key.
CREATE TABLE stock_adjustments (
    id              bigserial PRIMARY KEY,
    product_id      text NOT NULL REFERENCES products (id),
    idempotency_key text NOT NULL,
    request_hash    bytea NOT NULL,
    delta           integer NOT NULL CHECK (delta <> 0),
    reason          text NOT NULL,
    actor           text NOT NULL,
    stock_after     integer NOT NULL CHECK (stock_after >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, idempotency_key)
);

-- A committed reservation whose order was cancelled gives its stock back once: committed → returned.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check CHECK (status IN ('reserved', 'committed', 'released', 'returned'));

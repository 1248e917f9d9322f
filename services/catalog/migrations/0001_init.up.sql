CREATE TABLE products (
    id          text PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    description text NOT NULL,
    category    text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    stock       integer NOT NULL CHECK (stock >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_name_id ON products (name, id);
CREATE INDEX products_category_name_id ON products (category, name, id);

-- Stock held for an order. Reserving takes the stock, committing keeps it taken (the order is paid),
-- releasing gives it back. One row per order id makes every step idempotent; a release of an order that was
-- never reserved leaves a 'released' row so a late reservation for it is refused.
CREATE TABLE reservations (
    order_id   text PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('reserved', 'committed', 'released')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservation_items (
    order_id   text NOT NULL REFERENCES reservations (order_id),
    product_id text NOT NULL REFERENCES products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

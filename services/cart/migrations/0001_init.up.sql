-- A cart per user: one row per product, with the name and unit price copied from catalog when the item was set.
CREATE TABLE cart_items (
    user_id          text NOT NULL,
    product_id       text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    name             text NOT NULL,
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, product_id)
);

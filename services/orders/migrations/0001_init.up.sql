-- An order is a persisted state machine. status is what the user sees; step is where the checkout saga is:
--   created → reserved → charged → done (confirmed)
--                      ↘ declined → done (payment_failed)
--   created → done (rejected: stock ran short before anything was charged; not shown to the user)
CREATE TABLE orders (
    id               text PRIMARY KEY,
    user_id          text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'confirmed', 'payment_failed', 'rejected')),
    step             text NOT NULL CHECK (step IN ('created', 'reserved', 'charged', 'declined', 'done')),
    total_cents      bigint NOT NULL CHECK (total_cents >= 0),
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    ship_name        text NOT NULL,
    ship_line1       text NOT NULL,
    ship_city        text NOT NULL,
    ship_postal_code text NOT NULL,
    ship_country     text NOT NULL,
    card_brand       text NOT NULL,
    card_last4       text NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    payment_id       text,
    failure_reason   text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (step <> 'done'))
);
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC);
CREATE INDEX orders_pending ON orders (updated_at) WHERE status = 'pending';

CREATE TABLE order_items (
    order_id         text NOT NULL REFERENCES orders (id),
    product_id       text NOT NULL,
    name             text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- (user, Idempotency-Key) → the request's fingerprint, its order, and the final answer once there is one.
-- The row is inserted in the same transaction as its order, so two requests with one key make one order.
CREATE TABLE idempotency_keys (
    user_id         text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    order_id        text NOT NULL REFERENCES orders (id),
    response_status integer,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

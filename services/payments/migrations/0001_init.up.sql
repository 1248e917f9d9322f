-- One payment per order. Only the card's brand and last four digits are kept.
CREATE TABLE payments (
    id             text PRIMARY KEY,
    order_id       text NOT NULL UNIQUE,
    status         text NOT NULL CHECK (status IN ('authorized', 'declined', 'voided', 'refunded')),
    amount_cents   bigint NOT NULL CHECK (amount_cents >= 0),
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    card_brand     text,
    card_last4     text CHECK (card_last4 ~ '^[0-9]{4}$'),
    decline_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key → the request's fingerprint and the answer given, so a retried or concurrent duplicate gets
-- the first answer. The key row is inserted in the same transaction as the payment: a concurrent duplicate
-- waits on the primary key and then reads the stored answer.
CREATE TABLE idempotency_keys (
    key           text PRIMARY KEY,
    request_hash  bytea NOT NULL,
    status_code   integer NOT NULL,
    response_body bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Recovery: a replica claims a stuck order by moving recover_after into the future (a lease, taken with
-- FOR UPDATE SKIP LOCKED so two replicas never drive the same order at once); each failed attempt doubles
-- the wait, so an order that keeps failing backs off and never holds up the others.
ALTER TABLE orders ADD COLUMN recovery_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN recover_after timestamptz;

-- Cancellation (by the owner or an admin) is a saga too: confirmed → cancelling (refund) → refunded (stock
-- returned) → done, status cancelled. While it runs the order stays confirmed; a cancelled order is final.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'confirmed', 'payment_failed', 'rejected', 'cancelled'));
ALTER TABLE orders DROP CONSTRAINT orders_step_check;
ALTER TABLE orders ADD CONSTRAINT orders_step_check
    CHECK (step IN ('created', 'reserved', 'charged', 'declined', 'done', 'cancelling', 'refunded'));
ALTER TABLE orders DROP CONSTRAINT orders_check;
ALTER TABLE orders ADD CONSTRAINT orders_step_status_check CHECK (CASE step
    WHEN 'done' THEN status IN ('confirmed', 'payment_failed', 'rejected', 'cancelled')
    WHEN 'cancelling' THEN status = 'confirmed'
    WHEN 'refunded' THEN status = 'confirmed'
    ELSE status = 'pending' END);
ALTER TABLE orders ADD COLUMN cancelled_at timestamptz;
ALTER TABLE orders ADD COLUMN cancelled_by text;

DROP INDEX orders_pending;
CREATE INDEX orders_unfinished ON orders (updated_at) WHERE step <> 'done';
-- Every order, newest first, for the admins' list (with a status filter).
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created ON orders (status, created_at DESC, id DESC);

-- The version of the cart line each item was read from: confirming an order removes that exact line from the
-- cart, never a line the user set again later.
ALTER TABLE order_items ADD COLUMN cart_version bigint;

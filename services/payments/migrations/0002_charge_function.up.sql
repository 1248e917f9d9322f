-- payments_charge_fresh stores a new payment and, under its idempotency key, the answer for it, in one round
-- trip (it was a transaction of three statements): both go in, or — the order already has a payment, or the key
-- is taken — neither does, and it returns false for the caller's full path to decide. A concurrent charge for
-- the same order waits on the payment's unique order id, one with the same key on the key, and then finds them.
CREATE FUNCTION payments_charge_fresh(p_id text, p_order_id text, p_status text, p_amount_cents bigint, p_currency text,
                                      p_card_brand text, p_card_last4 text, p_decline_reason text, p_created_at timestamptz,
                                      p_key text, p_request_hash bytea, p_status_code integer, p_response_body bytea)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payments (id, order_id, status, amount_cents, currency, card_brand, card_last4, decline_reason, created_at)
    VALUES (p_id, p_order_id, p_status, p_amount_cents, p_currency, p_card_brand, p_card_last4, p_decline_reason, p_created_at)
    ON CONFLICT (order_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO idempotency_keys (key, request_hash, status_code, response_body)
    VALUES (p_key, p_request_hash, p_status_code, p_response_body)
    ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        DELETE FROM payments WHERE id = p_id; -- inserted above, in this transaction: nothing of it remains
        RETURN false;
    END IF;
    RETURN true;
END
$$;

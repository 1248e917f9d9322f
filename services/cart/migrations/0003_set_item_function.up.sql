-- cart_set_item sets one line of a user's cart and returns the cart, in one round trip (it was five statements
-- in a transaction, then a query): it serialises changes to that user's cart, refuses a second currency or more
-- than p_max_lines different products, and inserts or replaces the line with a new version. Its rows are the
-- cart's lines after the change with r_outcome 'ok', or one row with 'currency_mismatch' or 'cart_full' (and
-- nothing changed).
CREATE FUNCTION cart_set_item(p_user text, p_product text, p_quantity integer, p_name text, p_unit_price_cents bigint,
                              p_currency text, p_max_lines integer)
RETURNS TABLE (r_outcome text, r_product_id text, r_name text, r_quantity integer, r_unit_price_cents bigint,
               r_currency text, r_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    other_lines      integer;
    other_currencies integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('cart:' || p_user));
    SELECT count(*) FILTER (WHERE c.product_id <> p_product), count(*) FILTER (WHERE c.currency <> p_currency)
      INTO other_lines, other_currencies
      FROM cart_items c WHERE c.user_id = p_user;
    IF other_currencies > 0 THEN
        RETURN QUERY SELECT 'currency_mismatch', NULL::text, NULL::text, NULL::integer, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    IF other_lines >= p_max_lines THEN
        RETURN QUERY SELECT 'cart_full', NULL::text, NULL::text, NULL::integer, NULL::bigint, NULL::text, NULL::bigint;
        RETURN;
    END IF;
    INSERT INTO cart_items (user_id, product_id, quantity, name, unit_price_cents, currency)
    VALUES (p_user, p_product, p_quantity, p_name, p_unit_price_cents, p_currency)
    ON CONFLICT (user_id, product_id) DO UPDATE
    SET quantity = EXCLUDED.quantity, name = EXCLUDED.name, unit_price_cents = EXCLUDED.unit_price_cents,
        currency = EXCLUDED.currency, updated_at = now(), version = nextval('cart_line_version');
    RETURN QUERY SELECT 'ok', c.product_id, c.name, c.quantity, c.unit_price_cents, c.currency, c.version
                   FROM cart_items c WHERE c.user_id = p_user ORDER BY c.name, c.product_id;
END
$$;

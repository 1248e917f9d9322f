-- catalog_reserve takes the stock for an order in one round trip (it was a transaction of 3 + one statement
-- per product). The reservation row goes in first: a concurrent reservation for the same order waits on its
-- primary key, then finds it ('exists'). Each product's stock is taken with a conditional update, in the order
-- given (by product id, so concurrent reservations cannot deadlock); a shortfall undoes the whole reservation
-- and names the product with its stock now ('short'; available is NULL for an unknown or archived product).
CREATE FUNCTION catalog_reserve(p_order_id text, p_product_ids text[], p_quantities integer[])
RETURNS TABLE (r_outcome text, r_product_id text, r_available integer)
LANGUAGE plpgsql AS $$
DECLARE
    short_id text;
BEGIN
    BEGIN
        INSERT INTO reservations (order_id, status) VALUES (p_order_id, 'reserved') ON CONFLICT (order_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'exists', NULL::text, NULL::integer;
            RETURN;
        END IF;
        FOR i IN 1 .. coalesce(array_length(p_product_ids, 1), 0) LOOP
            UPDATE products SET stock = stock - p_quantities[i], updated_at = now()
             WHERE id = p_product_ids[i] AND stock >= p_quantities[i] AND archived_at IS NULL;
            IF NOT FOUND THEN
                short_id := p_product_ids[i];
                RAISE EXCEPTION 'not enough stock of %', short_id USING ERRCODE = 'SL409';
            END IF;
            INSERT INTO reservation_items (order_id, product_id, quantity) VALUES (p_order_id, p_product_ids[i], p_quantities[i]);
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'SL409' THEN
        -- Everything this call did inside the block is undone; say what ran short.
        RETURN QUERY SELECT 'short', short_id, (SELECT stock FROM products WHERE id = short_id AND archived_at IS NULL);
        RETURN;
    END;
    RETURN QUERY SELECT 'reserved', NULL::text, NULL::integer;
END
$$;

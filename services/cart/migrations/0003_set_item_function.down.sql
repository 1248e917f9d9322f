DROP FUNCTION IF EXISTS cart_set_item(text, text, integer, text, bigint, text, integer);

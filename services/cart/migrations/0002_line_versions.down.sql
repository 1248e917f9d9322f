ALTER TABLE cart_items DROP COLUMN version;
DROP SEQUENCE cart_line_version;

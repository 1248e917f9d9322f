DROP FUNCTION IF EXISTS payments_charge_fresh(text, text, text, bigint, text, text, text, text, timestamptz, text, bytea, integer, bytea);

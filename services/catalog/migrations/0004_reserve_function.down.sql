DROP FUNCTION IF EXISTS catalog_reserve(text, text[], integer[]);

-- Every change to a cart line gives it a new version. Orders records the versions it read at checkout and
-- removes only those lines on confirmation, so a line the user set again afterwards stays in the cart.
CREATE SEQUENCE cart_line_version;
ALTER TABLE cart_items ADD COLUMN version bigint NOT NULL DEFAULT nextval('cart_line_version');

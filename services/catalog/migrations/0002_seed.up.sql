-- The products a fresh lab sells: 16 products in 4 categories.
INSERT INTO products (id, sku, name, description, category, price_cents, currency, stock) VALUES
('prd_01hx4kq2m3coffeegrinder', 'COF-GRD-001', 'Burr Coffee Grinder', 'Conical steel burrs with 40 grind settings, from espresso to French press.', 'coffee', 8900, 'USD', 40),
('prd_01hx4kq2m3espressocups', 'COF-CUP-002', 'Espresso Cup Set', 'Four double-walled glass cups, 80 ml each; they keep the crema and your fingers cool.', 'coffee', 2400, 'USD', 120),
('prd_01hx4kq2m3pourover0003', 'COF-POV-003', 'Ceramic Pour-Over Dripper', 'A single-cup dripper with spiral ribs for an even extraction. Fits size 02 filters.', 'coffee', 2800, 'USD', 75),
('prd_01hx4kq2m3kettle000004', 'COF-KTL-004', 'Gooseneck Kettle', 'A 1 litre stovetop kettle with a thin spout for a slow, steady pour.', 'coffee', 4500, 'USD', 50),
('prd_01hx4kq2m3beans0000005', 'COF-BNS-005', 'Single-Origin Beans, 1 kg', 'Washed Ethiopian Yirgacheffe, light roast: jasmine, lemon and black tea.', 'coffee', 3200, 'USD', 200),
('prd_01hx4kq2m3chefknife006', 'KIT-KNF-006', 'Chef''s Knife, 20 cm', 'Forged stainless steel with a full tang and a pakkawood handle.', 'kitchen', 7900, 'USD', 35),
('prd_01hx4kq2m3castiron0007', 'KIT-PAN-007', 'Cast Iron Skillet, 26 cm', 'Pre-seasoned; goes from the stove to the oven to the campfire.', 'kitchen', 3900, 'USD', 60),
('prd_01hx4kq2m3cuttingbrd08', 'KIT-BRD-008', 'End-Grain Cutting Board', 'Walnut end grain, kind to knife edges; 40 by 30 cm.', 'kitchen', 6500, 'USD', 25),
('prd_01hx4kq2m3dutchoven009', 'KIT-DOV-009', 'Enamelled Dutch Oven, 5 l', 'Heavy cast iron with a tight lid, for bread, braises and stews.', 'kitchen', 11900, 'USD', 20),
('prd_01hx4kq2m3goprogram010', 'BOK-GOP-010', 'The Go Programming Language', 'The classic introduction to Go: types, concurrency, testing and more.', 'books', 3999, 'USD', 80),
('prd_01hx4kq2m3designdata11', 'BOK-DDA-011', 'Designing Data-Intensive Applications', 'Replication, partitioning, transactions and consensus, explained with care.', 'books', 4499, 'USD', 70),
('prd_01hx4kq2m3sreworkbk012', 'BOK-SRE-012', 'The Site Reliability Workbook', 'Practical ways to run services reliably: SLOs, on-call, incident response.', 'books', 4299, 'USD', 45),
('prd_01hx4kq2m3microsvcs013', 'BOK-MSV-013', 'Building Microservices', 'How to model, split, deploy and observe systems of small services.', 'books', 4799, 'USD', 55),
('prd_01hx4kq2m3headlamp0014', 'OUT-LMP-014', 'Rechargeable Headlamp', '400 lumens, red night mode, USB-C charging, rain-proof.', 'outdoor', 3500, 'USD', 90),
('prd_01hx4kq2m3waterbottl15', 'OUT-BTL-015', 'Insulated Water Bottle, 750 ml', 'Keeps drinks cold for 24 hours or hot for 12; leak-proof lid.', 'outdoor', 2900, 'USD', 150),
('prd_01hx4kq2m3daypack00016', 'OUT-BAG-016', 'Hiking Daypack, 22 l', 'A light pack with a rain cover, hip belt and hydration sleeve.', 'outdoor', 6900, 'USD', 30);

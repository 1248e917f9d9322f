DELETE FROM products WHERE id LIKE 'prd\_01hx4kq2m3%';

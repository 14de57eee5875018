-- The availability read model's query for GET /availability/<sku> (pgbench script).
-- Variables (pgbench -D): prefix (SKU prefix), n (SKUs <prefix>000 .. <prefix><n-1>).
\set k random(0, :n - 1)
SELECT sku, version, backordered, slots FROM availability_view
 WHERE sku = ANY(ARRAY[:prefix::text || lpad(:k::text, 3, '0')]);

-- The read model's query for GET /allocations/<orderid> (pgbench script).
-- Variables (pgbench -D): prefix (order id prefix), n (orders <prefix>1 .. <prefix><n>).
\set k random(1, :n)
SELECT sku, batchref FROM allocations_view
 WHERE orderid = :prefix::text || :k::text
 ORDER BY sku;

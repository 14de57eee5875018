-- The minimal SQL of one allocation, as one transaction (pgbench script).
--
-- Variables (pgbench -D):
--   prefix, lo, hi  SKUs are <prefix><3-digit number in [lo, hi]>, the names the
--                   HTTP scenarios use
--   counter         1 when batches has allocated_quantity (migration 0003 on),
--                   0 for the older schema that sums the allocations instead
--
-- What the service must do for POST /allocate, without the ORM: lock and read
-- the product row (the service reads it and relies on its versioned UPDATE;
-- FOR UPDATE makes that UPDATE always succeed here, so no retries), pick the
-- best batch with room (warehouse stock first, then the earliest ETA), insert
-- the allocation, bump the version, write the read-model row and the outbox
-- message, wake the relay (NOTIFY, as the service does), commit.
-- Order ids are unique per transaction: 'pgb-' and the transaction id.
\set s random(:lo, :hi)
BEGIN;
SELECT sku, version_number AS ver FROM products
 WHERE sku = :prefix::text || lpad(:s::text, 3, '0') FOR UPDATE \gset
\if :counter
SELECT id AS batch_id, reference AS batchref FROM batches
 WHERE sku = :sku AND purchased_quantity - allocated_quantity >= 1
 ORDER BY eta NULLS FIRST, id
 LIMIT 1 \gset
UPDATE batches SET allocated_quantity = allocated_quantity + 1 WHERE id = :batch_id;
\else
SELECT b.id AS batch_id, b.reference AS batchref
  FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id
 WHERE b.sku = :sku
 GROUP BY b.id
HAVING b.purchased_quantity - coalesce(sum(a.qty), 0) >= 1
 ORDER BY b.eta NULLS FIRST, b.id
 LIMIT 1 \gset
\endif
INSERT INTO allocations (batch_id, orderid, sku, qty)
VALUES (:batch_id, 'pgb-' || txid_current(), :sku, 1);
UPDATE products SET version_number = version_number + 1
 WHERE sku = :sku AND version_number = :ver;
INSERT INTO allocations_view (orderid, sku, batchref)
VALUES ('pgb-' || txid_current(), :sku, :batchref);
INSERT INTO outbox (message_id, channel, sku, payload, occurred_at)
SELECT m.id, 'line_allocated', :sku,
       json_build_object('orderid', 'pgb-' || txid_current(), 'sku', :sku::text, 'qty', 1,
                         'batchref', :batchref::text, 'message_id', m.id,
                         'occurred_at', now())::text,
       now()
  FROM (SELECT gen_random_uuid()::text AS id) m;
NOTIFY allocation_outbox;
COMMIT;

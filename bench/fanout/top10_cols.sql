SELECT id, grp, amount, note FROM t ORDER BY id LIMIT 10;

SELECT id, amount FROM t WHERE id % :every = 0;

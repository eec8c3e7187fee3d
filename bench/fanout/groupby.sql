SELECT grp, count(*), sum(amount), avg(amount) FROM t GROUP BY grp ORDER BY grp;

// pgjdbc against shardgate, per the contract of tests/drivers/run: one PASS/FAIL line per check,
// each under its own timeout. Ids 6_000_000–6_999_999 of matrix_items belong to this suite; every
// cross-shard check filters by that range. Plain JDK + Debian's pgjdbc jar, no other dependency.

import java.io.ByteArrayInputStream;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.*;
import java.time.LocalDate;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.*;
import java.util.concurrent.*;

import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PGobject;

public final class DriverChecks {
    static final long LO = 6_000_000L, HI = 6_999_999L;
    static final String DRIVER = "pgjdbc";
    static String version = "?";
    static String host, port, user, password, db;

    interface Check { void run() throws Exception; }

    public static void main(String[] args) throws Exception {
        host = env("SHARDGATE_HOST", "127.0.0.1");
        port = env("SHARDGATE_PORT", "6432");
        user = env("SHARDGATE_USER", "app");
        password = env("SHARDGATE_PASSWORD", "app");
        db = env("SHARDGATE_DB", "app");
        version = new org.postgresql.Driver().getClass().getPackage().getImplementationVersion();
        ExecutorService pool = Executors.newCachedThreadPool(r -> { Thread t = new Thread(r); t.setDaemon(true); return t; });
        Object[][] checks = {
            {"connect", 20, (Check) DriverChecks::connectCheck},
            {"setup", 30, (Check) DriverChecks::clean},
            {"key_read_write", 30, (Check) DriverChecks::keyReadWrite},
            {"types_roundtrip", 30, (Check) () -> typesRoundtrip("prepareThreshold=1", LO + 10)},
            {"types_roundtrip_text", 30, (Check) () -> typesRoundtrip("prepareThreshold=1&binaryTransfer=false", LO + 12)},
            {"transaction_commit", 30, (Check) DriverChecks::transactionCommit},
            {"transaction_rollback", 30, (Check) DriverChecks::transactionRollback},
            {"transaction_error", 30, (Check) DriverChecks::transactionError},
            {"prepared_reuse", 60, (Check) () -> preparedReuse("prepareThreshold=1", LO + 1000)},
            {"prepared_reuse_threshold5", 60, (Check) () -> preparedReuse("", LO + 2000)},
            {"prepared_reuse_autocommit", 60, (Check) () -> preparedReuse("prepareThreshold=1&autocommit=true", LO + 4000)},
            {"batch_insert", 30, (Check) () -> batchInsert("", LO + 3000, true)},
            {"batch_insert_in_transaction", 30, (Check) () -> batchInsert("", LO + 3200, false)},
            {"batch_insert_rewrite", 30, (Check) () -> batchInsert("reWriteBatchedInserts=true", LO + 3400, true)},
            {"result_set_metadata", 30, (Check) DriverChecks::metadata},
            {"database_metadata", 30, (Check) DriverChecks::databaseMetadata},
            {"cross_shard_read", 30, (Check) DriverChecks::crossShardRead},
            {"fetch_size_cross_shard", 30, (Check) DriverChecks::fetchSizeCrossShard},
            {"copy", 30, (Check) DriverChecks::copy},
            {"copy_to_by_key", 30, (Check) DriverChecks::copyToByKey},
            {"copy_unmapped_table", 30, (Check) DriverChecks::copyUnmapped},
            {"cancel", 20, (Check) DriverChecks::cancel},
            {"admin_console", 20, (Check) () -> { if (shards(false).isEmpty()) fail("SHOW SHARDS returned no row"); }},
            {"refused_error", 30, (Check) DriverChecks::refusedError},
            {"multi_shard_update", 30, (Check) DriverChecks::multiShardUpdate},
        };
        for (Object[] c : checks) {
            String name = (String) c[0];
            Future<?> f = pool.submit(() -> { ((Check) c[2]).run(); return null; });
            String line;
            try {
                f.get((Integer) c[1], TimeUnit.SECONDS);
                line = "PASS " + DRIVER + " " + version + " | " + name;
            } catch (TimeoutException e) {
                f.cancel(true);
                line = "FAIL " + DRIVER + " " + version + " | " + name + " | timed out after " + c[1] + " s";
            } catch (ExecutionException e) {
                line = "FAIL " + DRIVER + " " + version + " | " + name + " | " + describe(e.getCause());
            }
            if (name.equals("setup") && line.startsWith("PASS")) continue;
            System.out.println(line);
            System.out.flush();
        }
        System.exit(0);
    }

    static String env(String k, String d) { String v = System.getenv(k); return v == null ? d : v; }

    static String describe(Throwable t) {
        // A batch error repeats the whole batch entry; the server's own error is the next one.
        if (t instanceof BatchUpdateException && ((SQLException) t).getNextException() != null)
            return "batch: " + describe(((SQLException) t).getNextException());
        String msg = String.valueOf(t.getMessage()).replaceAll("\\s+", " ").trim();
        if (msg.length() > 400) msg = msg.substring(0, 400) + " …";
        if (t instanceof SQLException && ((SQLException) t).getSQLState() != null)
            return "SQLSTATE " + ((SQLException) t).getSQLState() + ": " + msg;
        return t instanceof AssertionError ? msg : t.getClass().getSimpleName() + ": " + msg;
    }

    static Connection connect(String extra) throws SQLException {
        String url = "jdbc:postgresql://" + host + ":" + port + "/" + db + "?connectTimeout=10&socketTimeout=40"
            + (extra.isEmpty() ? "" : "&" + extra);
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        return DriverManager.getConnection(url, p);
    }

    static Connection connect() throws SQLException { return connect("prepareThreshold=1"); }

    static void fail(String msg) { throw new AssertionError(msg); }

    static void eq(Object actual, Object expected, String what) {
        if (!Objects.equals(actual, expected)) fail(what + ": got " + actual + ", expected " + expected);
    }

    /** Runs `body`, which must fail with SQLSTATE `code`. */
    static void expectState(String code, String what, Check body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            if (code.equals(e.getSQLState())) return;
            fail(what + ": expected SQLSTATE " + code + ", got " + describe(e));
        }
        fail(what + ": expected SQLSTATE " + code + ", but it succeeded");
    }

    static long count(Connection c, long lo, long hi) throws SQLException {
        try (PreparedStatement s = c.prepareStatement("SELECT count(*) FROM matrix_items WHERE id BETWEEN ? AND ?")) {
            s.setLong(1, lo);
            s.setLong(2, hi);
            try (ResultSet rs = s.executeQuery()) { rs.next(); return rs.getLong(1); }
        }
    }

    /** Cross-shard counts of other sessions' writes read replicas, which may lag a little. */
    static void eventuallyCount(Connection c, long lo, long hi, long expected, String what) throws Exception {
        long deadline = System.currentTimeMillis() + 5000, got;
        while ((got = count(c, lo, hi)) != expected) {
            if (System.currentTimeMillis() > deadline) fail(what + ": got " + got + ", expected " + expected + " (after 5 s)");
            Thread.sleep(100);
        }
    }

    static List<String> shards() throws SQLException { return shards(true); }

    /** The shard names from the admin console. By default pgjdbc sends `SET extra_float_digits = 3`
     *  after the startup, which the console refuses (42601); with assumeMinServerVersion it puts the
     *  setting in the startup packet instead (`workaround`). */
    static List<String> shards(boolean workaround) throws SQLException {
        String url = env("SHARDGATE_ADMIN_URL", "postgres://admin:admin@127.0.0.1:" + port + "/shardgate");
        // postgres://user:pass@host:port/db -> JDBC; the admin console speaks the simple protocol only.
        java.net.URI u = java.net.URI.create(url);
        String[] cred = u.getUserInfo().split(":", 2);
        Properties p = new Properties();
        p.setProperty("user", cred[0]);
        p.setProperty("password", cred[1]);
        p.setProperty("preferQueryMode", "simple");
        if (workaround) p.setProperty("assumeMinServerVersion", "10");
        List<String> names = new ArrayList<>();
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://" + u.getHost() + ":" + u.getPort() + u.getPath(), p);
             Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW SHARDS")) {
            while (rs.next()) names.add(rs.getString("shard"));
        }
        return names;
    }

    /** Clean the suite's id range shard by shard, one single-shard DELETE each (hinted), so the
     *  setup does not depend on the writes to several shards that multiShardUpdate checks. */
    static void clean() throws Exception {
        List<String> names = shards();
        try (Connection c = connect(); Statement s = c.createStatement()) {
            for (String shard : names)
                s.execute("/* shard: " + shard + " */ DELETE FROM matrix_items WHERE id BETWEEN " + LO + " AND " + HI);
        }
    }

    static void connectCheck() throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
            rs.next();
            eq(rs.getInt(1), 1, "SELECT 1");
        }
    }

    static String textOf(Connection c, long id) throws SQLException {
        try (PreparedStatement s = c.prepareStatement("SELECT t FROM matrix_items WHERE id = ?")) {
            s.setLong(1, id);
            try (ResultSet rs = s.executeQuery()) { return rs.next() ? rs.getString(1) : null; }
        }
    }

    static int update(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement s = c.prepareStatement(sql)) {
            for (int k = 0; k < params.length; k++) s.setObject(k + 1, params[k]);
            return s.executeUpdate();
        }
    }

    static void keyReadWrite() throws Exception {
        try (Connection c = connect()) {
            long id = LO + 1;
            eq(update(c, "INSERT INTO matrix_items (id, t) VALUES (?, ?)", id, "first"), 1, "INSERT count");
            eq(textOf(c, id), "first", "after INSERT");
            eq(update(c, "UPDATE matrix_items SET t = ? WHERE id = ?", "second", id), 1, "UPDATE count");
            eq(textOf(c, id), "second", "after UPDATE");
            eq(update(c, "DELETE FROM matrix_items WHERE id = ?", id), 1, "DELETE count");
            eq(textOf(c, id), null, "after DELETE");
        }
    }

    /** Inserts and reads back every type three times, so prepareThreshold=1 has the statement
     *  server-prepared and (unless binaryTransfer=false) results come in binary. */
    static void typesRoundtrip(String props, long id) throws Exception {
        BigDecimal num = new BigDecimal("12345678901234.56789");
        LocalDate d = LocalDate.of(2024, 2, 29);
        OffsetDateTime ts = OffsetDateTime.of(2024, 2, 29, 12, 34, 56, 789123000, ZoneOffset.UTC);
        UUID u = UUID.fromString("6f1c2d4e-8a9b-4c3d-9e8f-0a1b2c3d4e5f");
        byte[] b = {0, 1, 2, 92, (byte) 255};
        String t = "héllo 'quoted' \\ ☺";
        try (Connection c = connect(props)) {
            PGobject j = new PGobject();
            j.setType("jsonb");
            j.setValue("{\"a\": 1, \"b\": [true, null, \"x\"]}");
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO matrix_items (id, i, big, num, f, t, b, flag, d, ts, u, j, arr, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
                 PreparedStatement sel = c.prepareStatement(
                    "SELECT i, big, num, f, t, b, flag, d, ts, u, j, arr, note FROM matrix_items WHERE id = ?")) {
                ins.setLong(1, id);
                ins.setInt(2, Integer.MAX_VALUE);
                ins.setLong(3, 9_007_199_254_740_993L);
                ins.setBigDecimal(4, num);
                ins.setDouble(5, Math.PI);
                ins.setString(6, t);
                ins.setBytes(7, b);
                ins.setBoolean(8, true);
                ins.setObject(9, d);
                ins.setObject(10, ts);
                ins.setObject(11, u);
                ins.setObject(12, j);
                ins.setArray(13, c.createArrayOf("int4", new Integer[] {1, -2, 3}));
                ins.setNull(14, Types.VARCHAR);
                ins.executeUpdate();
                ins.setLong(1, id + 1);
                for (int k = 2; k <= 14; k++) ins.setNull(k, Types.OTHER);
                ins.setNull(2, Types.INTEGER);
                ins.setNull(13, Types.ARRAY);
                ins.executeUpdate();
                for (int round = 0; round < 3; round++) {
                    sel.setLong(1, id);
                    try (ResultSet rs = sel.executeQuery()) {
                        if (!rs.next()) fail("row not found");
                        eq(rs.getInt("i"), Integer.MAX_VALUE, "int");
                        eq(rs.getLong("big"), 9_007_199_254_740_993L, "bigint");
                        eq(rs.getBigDecimal("num"), num, "numeric");
                        eq(rs.getDouble("f"), Math.PI, "float8");
                        eq(rs.getString("t"), t, "text");
                        if (!Arrays.equals(rs.getBytes("b"), b)) fail("bytea: got " + Arrays.toString(rs.getBytes("b")));
                        eq(rs.getBoolean("flag"), true, "bool");
                        eq(rs.getObject("d", LocalDate.class), d, "date");
                        eq(rs.getObject("ts", OffsetDateTime.class).toInstant(), ts.toInstant(), "timestamptz");
                        eq(rs.getObject("u", UUID.class), u, "uuid");
                        eq(rs.getString("j"), "{\"a\": 1, \"b\": [true, null, \"x\"]}", "jsonb");
                        eq(Arrays.asList((Integer[]) rs.getArray("arr").getArray()), List.of(1, -2, 3), "int[]");
                        eq(rs.getString("note"), null, "NULL");
                    }
                    sel.setLong(1, id + 1);
                    try (ResultSet rs = sel.executeQuery()) {
                        if (!rs.next()) fail("NULL row not found");
                        for (int k = 1; k <= 13; k++) eq(rs.getObject(k), null, "NULL column " + k);
                    }
                }
            }
        }
    }

    /** For 4 ids, so that transactions starting on each shard are covered. */
    static void transactionCommit() throws Exception {
        for (long id = LO + 20; id < LO + 20 + 4; id++) transactionCommit(id);
    }

    static void transactionCommit(long id) throws Exception {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            update(c, "INSERT INTO matrix_items (id, t) VALUES (?, 'tx')", id);
            update(c, "UPDATE matrix_items SET t = 'tx-updated' WHERE id = ?", id);
            c.commit();
            c.setAutoCommit(true);
            eq(textOf(c, id), "tx-updated", "committed row");
        }
    }

    /** For 4 ids, so that transactions starting on each shard are covered. */
    static void transactionRollback() throws Exception {
        for (long id = LO + 30; id < LO + 30 + 4; id++) transactionRollback(id);
    }

    static void transactionRollback(long id) throws Exception {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            update(c, "INSERT INTO matrix_items (id, t) VALUES (?, 'rolled back')", id);
            eq(textOf(c, id), "rolled back", "row inside the transaction");
            c.rollback();
            c.setAutoCommit(true);
            eq(textOf(c, id), null, "row after ROLLBACK");
        }
    }

    /** For 4 ids, so that transactions starting on each shard are covered. */
    static void transactionError() throws Exception {
        for (long id = LO + 40; id < LO + 40 + 4; id++) transactionError(id);
    }

    static void transactionError(long id) throws Exception {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            update(c, "INSERT INTO matrix_items (id, t) VALUES (?, 'doomed')", id);
            expectState("22012", "division by zero", () -> {
                try (PreparedStatement s = c.prepareStatement("SELECT 1 / ?::int")) { s.setInt(1, 0); s.executeQuery().close(); }
            });
            expectState("25P02", "statement after the error", () -> textOf(c, id));
            c.rollback();
            c.setAutoCommit(true);
            eq(textOf(c, id), null, "row after ROLLBACK");
        }
    }

    /** 10 connections (more than the proxy's 3 per server) × 6 transactions reusing the same
     *  PreparedStatement objects; with prepareThreshold=1 they are named server-side from the
     *  first execution, with the default 5 from the fifth. */
    static void preparedReuse(String props, long base) throws Exception {
        // "autocommit=true" is ours, not pgjdbc's: each statement is its own transaction.
        boolean autocommit = props.contains("autocommit=true");
        String jdbcProps = props.replace("&autocommit=true", "");
        ExecutorService ex = Executors.newFixedThreadPool(10);
        List<Future<?>> fs = new ArrayList<>();
        for (int w = 0; w < 10; w++) {
            final int worker = w;
            fs.add(ex.submit(() -> {
                try (Connection c = connect(jdbcProps);
                     PreparedStatement ins = c.prepareStatement("INSERT INTO matrix_items (id, i, note) VALUES (?, ?, 'prepared')");
                     PreparedStatement sel = c.prepareStatement("SELECT i FROM matrix_items WHERE id = ?")) {
                    c.setAutoCommit(autocommit);
                    for (int k = 0; k < 6; k++) {
                        long id = base + worker * 100 + k;
                        ins.setLong(1, id);
                        ins.setInt(2, worker);
                        ins.executeUpdate();
                        sel.setLong(1, id);
                        try (ResultSet rs = sel.executeQuery()) {
                            if (!rs.next()) fail("row " + id + " not visible inside its transaction");
                            eq(rs.getInt(1), worker, "select inside the transaction");
                        }
                        if (!autocommit) c.commit();
                    }
                }
                return null;
            }));
        }
        try {
            for (Future<?> f : fs) {
                try { f.get(); } catch (ExecutionException e) { throw (Exception) e.getCause(); }
            }
        } finally {
            ex.shutdownNow();
        }
        try (Connection c = connect(jdbcProps)) { eventuallyCount(c, base, base + 999, 60, "rows written by the 60 transactions"); }
    }

    /** 100 INSERTs by key through addBatch/executeBatch: the rows belong to both shards. */
    static void batchInsert(String props, long base, boolean autocommit) throws Exception {
        try (Connection c = connect(props);
             PreparedStatement s = c.prepareStatement("INSERT INTO matrix_items (id, i) VALUES (?, ?)")) {
            c.setAutoCommit(autocommit);
            for (int k = 0; k < 100; k++) {
                s.setLong(1, base + k);
                s.setInt(2, k);
                s.addBatch();
            }
            int[] counts;
            try {
                counts = s.executeBatch();
            } catch (BatchUpdateException e) {
                // A batch is one pipeline with a single Sync: in autocommit mode PostgreSQL runs it
                // as one implicit transaction, so a failed batch leaves none of its rows.
                if (!autocommit) c.rollback();
                c.setAutoCommit(true);
                long left = count(c, base, base + 199);
                if (left != 0) fail(describe(e) + "; and " + left + " of the batch's rows were committed anyway");
                throw e;
            }
            long total = 0;
            for (int n : counts) total += (n == Statement.SUCCESS_NO_INFO ? 1 : n);
            if (!autocommit) c.commit();
            c.setAutoCommit(true);
            eq(total, 100L, "update counts of the batch");
            eq(count(c, base, base + 199), 100L, "rows after the batch");
        }
    }

    static void metadata() throws Exception {
        try (Connection c = connect()) {
            for (String where : new String[] {"id = ?", "id BETWEEN ? AND " + HI}) {
                try (PreparedStatement s = c.prepareStatement("SELECT id, i, num, t, ts, j, arr FROM matrix_items WHERE " + where)) {
                    s.setLong(1, LO);
                    ResultSetMetaData m = s.getMetaData();
                    if (m == null) fail("no metadata before execution (" + where + ")");
                    List<String> got = new ArrayList<>();
                    for (int k = 1; k <= m.getColumnCount(); k++) got.add(m.getColumnName(k) + ":" + m.getColumnTypeName(k));
                    List<String> want = List.of("id:int8", "i:int4", "num:numeric", "t:text", "ts:timestamptz", "j:jsonb", "arr:_int4");
                    eq(got, want, "columns of a prepared statement (" + where + ")");
                    try (ResultSet rs = s.executeQuery()) {
                        ResultSetMetaData r = rs.getMetaData();
                        eq(r.getColumnType(1), Types.BIGINT, "JDBC type of id (" + where + ")");
                        eq(r.getTableName(1), "matrix_items", "table of id (" + where + ")");
                        eq(r.getPrecision(3), 20, "precision of num (" + where + ")");
                        eq(r.getScale(3), 5, "scale of num (" + where + ")");
                    }
                }
            }
        }
    }

    /** DatabaseMetaData runs catalog queries, which go to the default shard. */
    static void databaseMetadata() throws Exception {
        try (Connection c = connect()) {
            DatabaseMetaData md = c.getMetaData();
            if (!md.getDatabaseProductVersion().matches("\\d+.*")) fail("server version " + md.getDatabaseProductVersion());
            try (ResultSet rs = md.getTables(null, "public", "matrix_items", new String[] {"TABLE"})) {
                if (!rs.next()) fail("getTables does not list matrix_items");
            }
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "matrix_items", null)) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
            }
            eq(cols, List.of("id", "i", "big", "num", "f", "t", "b", "flag", "d", "ts", "u", "j", "arr", "note"), "getColumns");
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "matrix_items")) {
                if (!rs.next()) fail("no primary key");
                eq(rs.getString("COLUMN_NAME"), "id", "primary key column");
            }
        }
    }

    static void crossShardRead() throws Exception {
        long base = LO + 5000;
        try (Connection c = connect()) {
            List<long[]> rows = new ArrayList<>();
            try (PreparedStatement s = c.prepareStatement("INSERT INTO matrix_items (id, i, t) VALUES (?, ?, ?)")) {
                for (int k = 0; k < 40; k++) {
                    long id = base + k, i = (k * 7) % 40;
                    rows.add(new long[] {id, i});
                    s.setLong(1, id);
                    s.setInt(2, (int) i);
                    s.setString(3, "row " + k);
                    s.executeUpdate();
                }
            }
            rows.sort((a, b) -> a[1] != b[1] ? Long.compare(b[1], a[1]) : Long.compare(a[0], b[0]));
            List<String> want = new ArrayList<>();
            for (long[] r : rows.subList(0, 5)) want.add(r[0] + ":" + r[1]);
            for (int round = 0; round < 3; round++) { // threshold 1: the later rounds are binary
                try (PreparedStatement s = c.prepareStatement(
                        "SELECT id, i FROM matrix_items WHERE id BETWEEN ? AND ? ORDER BY i DESC, id LIMIT 5")) {
                    s.setLong(1, base);
                    s.setLong(2, base + 999);
                    List<String> got = new ArrayList<>();
                    try (ResultSet rs = s.executeQuery()) { while (rs.next()) got.add(rs.getLong(1) + ":" + rs.getInt(2)); }
                    eq(got, want, "ORDER BY i DESC LIMIT 5 (round " + round + ")");
                }
                try (PreparedStatement s = c.prepareStatement(
                        "SELECT count(*), sum(i), min(id), max(id), avg(i) FROM matrix_items WHERE id BETWEEN ? AND ?")) {
                    s.setLong(1, base);
                    s.setLong(2, base + 999);
                    try (ResultSet rs = s.executeQuery()) {
                        rs.next();
                        long sum = rows.stream().mapToLong(r -> r[1]).sum();
                        eq(List.of(rs.getLong(1), rs.getLong(2), rs.getLong(3), rs.getLong(4)), List.of(40L, sum, base, base + 39), "count/sum/min/max");
                        eq(rs.getBigDecimal(5).compareTo(BigDecimal.valueOf(sum).divide(BigDecimal.valueOf(40))), 0, "avg " + rs.getBigDecimal(5));
                    }
                }
            }
        }
    }

    /** A fetch size on a cross-shard read (autocommit off): pgjdbc executes the portal with a
     *  row limit, then again for each next batch, across Syncs of one transaction. */
    static void fetchSizeCrossShard() throws Exception {
        long base = LO + 5400;
        try (Connection c = connect()) {
            try (PreparedStatement s = c.prepareStatement("DELETE FROM matrix_items WHERE id = ?")) {
                for (int k = 0; k < 50; k++) { s.setLong(1, base + k); s.executeUpdate(); }
            }
            try (PreparedStatement s = c.prepareStatement("INSERT INTO matrix_items (id, i) VALUES (?, ?)")) {
                for (int k = 0; k < 50; k++) { s.setLong(1, base + k); s.setInt(2, k % 9); s.executeUpdate(); }
            }
            c.setAutoCommit(false);
            List<String> want = new ArrayList<>();
            for (int k = 0; k < 50; k++) want.add((k % 9) + ":" + (base + k));
            want.sort((a, b) -> {
                String[] x = a.split(":"), y = b.split(":");
                int byI = Integer.compare(Integer.parseInt(x[0]), Integer.parseInt(y[0]));
                return byI != 0 ? byI : Long.compare(Long.parseLong(x[1]), Long.parseLong(y[1]));
            });
            try (PreparedStatement s = c.prepareStatement(
                    "SELECT i, id FROM matrix_items WHERE id BETWEEN ? AND ? ORDER BY i, id")) {
                s.setFetchSize(7);
                s.setLong(1, base);
                s.setLong(2, base + 49);
                List<String> got = new ArrayList<>();
                try (ResultSet rs = s.executeQuery()) { while (rs.next()) got.add(rs.getInt(1) + ":" + rs.getLong(2)); }
                eq(got, want, "rows read 7 at a time");
            }
            c.commit();
        }
    }

    static String copyOut(Connection c, String sql) throws Exception {
        StringWriter w = new StringWriter();
        c.unwrap(PGConnection.class).getCopyAPI().copyOut(sql, w);
        return w.toString();
    }

    static long copyIn(Connection c, String sql, String data) throws Exception {
        CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
        return cm.copyIn(sql, new ByteArrayInputStream(data.getBytes(StandardCharsets.UTF_8)));
    }

    static void copy() throws Exception {
        long base = LO + 7000;
        StringBuilder data = new StringBuilder();
        for (int k = 0; k < 100; k++) data.append(base + k).append('\t').append(k).append("\tcopied ").append(k).append('\n');
        try (Connection c = connect()) {
            eq(copyIn(c, "COPY matrix_items (id, i, t) FROM STDIN", data.toString()), 100L, "COPY count");
            eq(copyOut(c, "COPY (SELECT id, i, t FROM matrix_items WHERE id = " + (base + 1) + ") TO STDOUT"),
               (base + 1) + "\t1\tcopied 1\n", "COPY TO STDOUT");
        }
    }

    static void copyToByKey() throws Exception {
        long id = LO + 7500;
        try (Connection c = connect()) {
            update(c, "INSERT INTO matrix_items (id, i, t) VALUES (?, 7, 'x')", id);
            eq(copyOut(c, "COPY (SELECT id, i, t FROM matrix_items WHERE id = " + id + ") TO STDOUT"), id + "\t7\tx\n", "COPY TO STDOUT");
        }
    }

    static void copyUnmapped() throws Exception {
        StringBuilder data = new StringBuilder();
        for (int k = 0; k < 1000; k++) data.append(k).append("\tline ").append(k).append('\n');
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS drivers_copy_pgjdbc");
            s.execute("CREATE TABLE drivers_copy_pgjdbc (id bigint PRIMARY KEY, t text)");
            eq(copyIn(c, "COPY drivers_copy_pgjdbc (id, t) FROM STDIN", data.toString()), 1000L, "COPY count");
            eq(copyOut(c, "COPY (SELECT id, t FROM drivers_copy_pgjdbc ORDER BY id) TO STDOUT"), data.toString(), "COPY TO STDOUT");
            s.execute("DROP TABLE drivers_copy_pgjdbc");
        }
    }

    static void cancel() throws Exception {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
            long[] started = new long[1];
            timer.schedule(() -> { started[0] = System.currentTimeMillis(); s.cancel(); return null; }, 500, TimeUnit.MILLISECONDS);
            try {
                expectState("57014", "cancelled pg_sleep(10)", () -> s.executeQuery("SELECT pg_sleep(10)").close());
            } finally {
                timer.shutdown();
            }
            long took = System.currentTimeMillis() - started[0];
            if (took > 5000) fail("the cancel took " + took + " ms");
            try (ResultSet rs = s.executeQuery("SELECT 2")) { rs.next(); eq(rs.getInt(1), 2, "query after the cancel"); }
        }
    }

    /** Writes to several shards of matrix_guarded, whose map entry says `multi_shard_writes: refuse`. */
    static void refusedError() throws Exception {
        try (Connection c = connect()) {
            expectState("0A000", "prepared UPDATE without a key", () -> update(c, "UPDATE matrix_guarded SET note = ?", "x"));
            expectState("0A000", "plain UPDATE without a key", () -> { try (Statement s = c.createStatement()) { s.executeUpdate("UPDATE matrix_guarded SET note = 'x'"); } });
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 3")) { rs.next(); eq(rs.getInt(1), 3, "query after the refusals"); }
        }
    }

    /** UPDATE and DELETE … WHERE id IN (?, …) over 8 ids (on both shards of the demo's ring) as
     *  prepared statements: the proxy runs them on every shard that holds rows (two-phase commit)
     *  and sums the update counts; inside a transaction the UPDATE joins it and is undone by its
     *  rollback. */
    static void multiShardUpdate() throws Exception {
        long base = LO + 8001;
        int n = 8;
        Object[] ids = new Object[n];
        List<String> marks = new ArrayList<>();
        for (int k = 0; k < n; k++) { ids[k] = base + k; marks.add("?"); }
        String inIds = "id IN (" + String.join(", ", marks) + ")";
        String update = "UPDATE matrix_items SET note = ? WHERE " + inIds;
        try (Connection c = connect()) {
            for (Object id : ids) eq(update(c, "INSERT INTO matrix_items (id, t) VALUES (?, 'multi')", id), 1, "INSERT count");
            eq(update(c, update, prepend("first", ids)), n, "UPDATE … WHERE id IN (…) count");
            c.setAutoCommit(false);
            eq(update(c, update, prepend("second", ids)), n, "UPDATE count inside the transaction");
            eq(notes(c, inIds, ids), Collections.nCopies(n, "second"), "notes inside the transaction");
            c.rollback();
            c.setAutoCommit(true);
            eq(notes(c, inIds, ids), Collections.nCopies(n, "first"), "notes after the rollback");
            eq(update(c, "DELETE FROM matrix_items WHERE " + inIds, ids), n, "DELETE … WHERE id IN (…) count");
            eq(notes(c, inIds, ids), List.of(), "rows after the DELETE");
        }
    }

    static Object[] prepend(Object first, Object[] rest) {
        Object[] all = new Object[rest.length + 1];
        all[0] = first;
        System.arraycopy(rest, 0, all, 1, rest.length);
        return all;
    }

    /** The notes of the rows `WHERE inIds`, by id. */
    static List<String> notes(Connection c, String inIds, Object[] ids) throws SQLException {
        List<String> got = new ArrayList<>();
        try (PreparedStatement s = c.prepareStatement("SELECT note FROM matrix_items WHERE " + inIds + " ORDER BY id")) {
            for (int k = 0; k < ids.length; k++) s.setObject(k + 1, ids[k]);
            try (ResultSet rs = s.executeQuery()) { while (rs.next()) got.add(rs.getString(1)); }
        }
        return got;
    }
}

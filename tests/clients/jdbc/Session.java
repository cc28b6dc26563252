// pgJDBC (Debian's libpostgresql-jdbc-java) against featuredb. pgJDBC
// switches to named, binary server-side statements after 5 executions
// (prepareThreshold), so statements run at least 6 times. The printed
// output is compared with session.expected by tests/clients.rs.
import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class Session {
    static void show(String label, Object value) {
        System.out.println(label + ": " + value);
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> params = new HashMap<>();
        for (String kv : args[0].split(" ")) {
            String[] p = kv.split("=", 2);
            params.put(p[0], p[1]);
        }
        String url = "jdbc:postgresql://" + params.get("host") + ":" + params.get("port") + "/" + params.get("dbname");
        Properties props = new Properties();
        props.setProperty("user", params.get("user"));
        try (Connection conn = DriverManager.getConnection(url, props)) {
            show("product", conn.getMetaData().getDatabaseProductName());
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_t (id BIGINT NOT NULL, n NUMERIC(10,2), t VARCHAR(20), b BOOLEAN, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, f DOUBLE PRECISION, arr INT[])");
                st.execute("CREATE ENTITY jdbc_e (id BIGINT)");
                st.execute("CREATE FEATURE VIEW jdbc_fv ENTITY jdbc_e TIMESTAMP tz AS SELECT id, tz, n FROM jdbc_t");
            }
            try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jdbc_t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 8; i++) {
                    ins.setLong(1, i);
                    ins.setBigDecimal(2, new BigDecimal(i + ".25"));
                    ins.setString(3, "row" + i);
                    ins.setBoolean(4, i % 2 == 0);
                    ins.setDate(5, java.sql.Date.valueOf("2024-01-0" + i));
                    ins.setTimestamp(6, java.sql.Timestamp.valueOf("2024-01-01 10:00:0" + i));
                    ins.setObject(7, java.time.OffsetDateTime.parse("2024-01-01T10:00:0" + i + "Z"));
                    ins.setDouble(8, i / 4.0);
                    ins.setArray(9, conn.createArrayOf("int4", new Integer[] {i, i + 1}));
                    ins.executeUpdate();
                }
                ins.setLong(1, 9);
                for (int c = 2; c <= 9; c++) ins.setNull(c, Types.NULL);
                ins.executeUpdate();
            }
            try (PreparedStatement q = conn.prepareStatement("SELECT id, n, t, b, d, ts, tz, f, arr FROM jdbc_t WHERE id = ?")) {
                for (int i = 1; i <= 9; i++) {
                    q.setLong(1, i);
                    try (ResultSet rs = q.executeQuery()) {
                        rs.next();
                        List<Object> row = new ArrayList<>();
                        for (int c = 1; c <= 9; c++) {
                            Object v = c == 7 ? rs.getObject(c, java.time.OffsetDateTime.class) : rs.getObject(c);
                            if (v instanceof java.sql.Array) v = Arrays.toString((Object[]) ((java.sql.Array) v).getArray());
                            row.add(v);
                        }
                        if (i == 1 || i == 6 || i == 9) show("row " + i, row);
                    }
                }
            }
            // Row-limited fetches: a cursor-based ResultSet inside a transaction.
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.setFetchSize(3);
                List<Long> ids = new ArrayList<>();
                try (ResultSet rs = st.executeQuery("SELECT id FROM jdbc_t ORDER BY id")) {
                    while (rs.next()) ids.add(rs.getLong(1));
                }
                show("fetched", ids);
            }
            conn.commit();
            // An error, then the same connection keeps working.
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SELECT * FROM nope");
            } catch (SQLException e) {
                show("error", e.getSQLState());
            }
            conn.rollback();
            conn.setAutoCommit(true);
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_t")) {
                rs.next();
                show("count", rs.getLong(1));
            }
            DatabaseMetaData md = conn.getMetaData();
            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            show("schemas", schemas);
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            show("tables", tables);
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_t", "%")) {
                while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("DATA_TYPE"));
            }
            show("columns", columns);
        }
    }
}

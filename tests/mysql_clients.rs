//! Real MySQL clients against a live node's 3306: Debian's `mariadb` client and Python's
//! PyMySQL and mysql.connector drivers (`.ci/run` installs them; each test prints a notice and
//! skips when its client is missing). Loopback block 127.0.151.x.

mod common;

use std::process::{Command, Output};

use common::*;

const BLOCK: u8 = 151;

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn mariadb(host: &str, statement: &str) -> Output {
    Command::new("mariadb")
        .args([
            "-h",
            host,
            "-P",
            "3306",
            "-u",
            "operator",
            "--connect-timeout=10",
            "--table",
            "-e",
            statement,
        ])
        .output()
        .expect("run mariadb")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A master (host `m`) with one added client (host `m + 1`) whose databases are alive.
fn master_and_client(dir: &std::path::Path, m: u8) -> (LocalNode, LocalNode) {
    let client = start(spec(dir, BLOCK, m + 1, &[("BO_DATABASES", "log1,log2")]));
    let master = start(spec(dir, BLOCK, m, &[]));
    for db in ["log1", "log2"] {
        ok(
            &master,
            &format!(r#"ADD CLIENT ip="{}" db="{db}""#, client.spec.ip),
        );
    }
    let formed = wait_for(DEADLINE, || {
        let rows = show_cluster(&master);
        (rows.len() == 2 && rows.iter().all(|r| r.4 == "alive")).then_some(())
    });
    assert!(
        formed.is_some(),
        "entries not alive: {:?}",
        show_cluster(&master)
    );
    (master, client)
}

#[test]
fn the_mariadb_client_runs_statements_and_shows_errors_with_their_position() {
    if !have("mariadb", &["--version"]) {
        eprintln!(
            "NOTICE: mariadb client not installed; skipping (apt-get install mariadb-client)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (master, _client) = master_and_client(dir.path(), 1);
    let host = master.spec.ip.to_string();

    let out = mariadb(&host, "SHOW CLUSTER");
    let shown = text(&out.stdout);
    println!("mariadb -h {host} -P 3306 -e \"SHOW CLUSTER\" printed:\n{shown}");
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    let header = shown.lines().nth(1).unwrap_or_default();
    for column in ["host", "ip", "port", "db", "source", "status", "node_id"] {
        assert!(header.contains(column), "{column} missing: {shown}");
    }
    for db in ["log1", "log2"] {
        let row = shown
            .lines()
            .find(|l| l.contains(&format!(" {db} ")))
            .unwrap_or_else(|| panic!("no {db} row: {shown}"));
        for cell in ["127.0.151.2", "9091", "add", "alive", "n151-2"] {
            assert!(row.contains(cell), "{cell} missing in {row:?}");
        }
    }

    // Statements without rows get an OK packet; they take effect.
    let out = mariadb(&host, "CREATE DATABASE from_mysql; SHOW DATABASES");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("from_mysql"),
        "{}",
        text(&out.stdout)
    );

    // A bad statement: an error packet with our message and its position.
    let out = mariadb(&host, "SHOW CLUSTERS");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("ERROR 1064"), "{err}");
    assert!(err.contains("line 1, column 6"), "{err}");
    let out = mariadb(&host, "DROP DATABASE nothing_here");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nothing_here"),
        "{}",
        text(&out.stderr)
    );

    // What the interactive client sends on connect, and USE.
    let out = mariadb(
        &host,
        "SELECT @@version_comment LIMIT 1; SET NAMES utf8mb4; USE from_mysql; SELECT DATABASE()",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("bocluster") && shown.contains("from_mysql"),
        "{shown}"
    );
    let out = mariadb(&host, "USE not_a_db");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ERROR 1049"),
        "{}",
        text(&out.stderr)
    );
}

const PYMYSQL_SCRIPT: &str = r#"
import json, sys
import pymysql
conn = pymysql.connect(host=sys.argv[1], port=3306, user="operator", password="", connect_timeout=10)
out = {}
with conn.cursor() as cur:
    cur.execute("SHOW CLUSTER")
    out["columns"] = [[d[0], d[1]] for d in cur.description]
    out["rows"] = [list(r) for r in cur.fetchall()]
    cur.execute("CREATE DATABASE from_python")
    cur.execute("SHOW DATABASES")
    out["databases"] = [r[0] for r in cur.fetchall()]
    try:
        cur.execute("ADD CLIENT nonsense")
        out["error"] = None
    except pymysql.MySQLError as e:
        out["error"] = [e.args[0], e.args[1]]
conn.close()
print(json.dumps(out))
"#;

#[test]
fn a_python_driver_reads_typed_result_sets_and_error_codes() {
    if !have("python3", &["-c", "import pymysql"]) {
        eprintln!("NOTICE: python3 with pymysql not installed; skipping (pip install pymysql)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (master, _client) = master_and_client(dir.path(), 3);
    let out = Command::new("python3")
        .args(["-c", PYMYSQL_SCRIPT, &master.spec.ip.to_string()])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    // Column names in order; port is an integer column (MYSQL_TYPE_LONGLONG = 8), the rest
    // text (MYSQL_TYPE_VAR_STRING = 253).
    let columns: Vec<(String, u64)> = answer["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap_or_default().to_string(),
                c[1].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("host", 253),
        ("ip", 253),
        ("port", 8),
        ("db", 253),
        ("source", 253),
        ("status", 253),
        ("node_id", 253),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), *t))
    .collect();
    assert_eq!(columns, expected, "{answer}");
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{answer}");
    assert_eq!(rows[0][2], 9091, "the port arrives as a number: {answer}");
    assert_eq!(rows[0][5], "alive", "{answer}");
    assert!(
        answer["databases"]
            .as_array()
            .is_some_and(|d| d.iter().any(|n| n == "from_python")),
        "{answer}"
    );
    assert_eq!(answer["error"][0], 1064, "{answer}");
    assert!(
        answer["error"][1]
            .as_str()
            .is_some_and(|m| m.starts_with("line 1, column ")),
        "{answer}"
    );
}

const CONNECTOR_SCRIPT: &str = r#"
import sys
import mysql.connector
conn = mysql.connector.connect(host=sys.argv[1], port=3306, user="operator", password="", connection_timeout=10)
cur = conn.cursor()
cur.execute("SHOW NODES")
print(",".join(cur.column_names))
print(len(cur.fetchall()))
conn.close()
"#;

#[test]
fn mysql_connector_starts_cleanly_though_it_names_an_empty_database() {
    if !have("python3", &["-c", "import mysql.connector"]) {
        eprintln!("NOTICE: python3 with mysql-connector-python not installed; skipping (pip install mysql-connector-python)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 5, &[]));
    let out = Command::new("python3")
        .args(["-c", CONNECTOR_SCRIPT, &node.spec.ip.to_string()])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "node_id,endpoint,status,generation,databases,masters,version\n1\n"
    );
}

const TOKEN: &str = "mysql-t0ken&more";

/// Connects with `driver` (pymysql or mysql.connector, the latter asking for
/// caching_sha2_password as MySQL 8's libraries do) and the password; prints the SHOW NODES
/// row count, or the error code and message.
const TOKEN_SCRIPT: &str = r#"
import sys
driver, host, password = sys.argv[1], sys.argv[2], sys.argv[3]
if driver == "pymysql":
    import pymysql as m
    connect = lambda: m.connect(host=host, port=3306, user="anyone", password=password, connect_timeout=10)
    error = m.MySQLError
    code = lambda e: (e.args[0], e.args[1])
else:
    import mysql.connector as m
    connect = lambda: m.connect(host=host, port=3306, user="anyone", password=password, connection_timeout=10, auth_plugin="caching_sha2_password")
    error = m.Error
    code = lambda e: (e.errno, e.sqlstate + " " + e.msg)
try:
    conn = connect()
    cur = conn.cursor()
    cur.execute("SHOW NODES")
    print("rows", len(cur.fetchall()))
    conn.close()
except error as e:
    print("error", *code(e))
"#;

/// With `BO_API_TOKEN` set the password must be the token: mariadb, PyMySQL and
/// mysql.connector (switched from caching_sha2_password) log in with it and get 1045 without.
#[test]
fn the_api_token_is_the_mysql_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 7, &[("BO_API_TOKEN", TOKEN)]));
    let host = node.spec.ip.to_string();
    // Whether some client tried a wrong password (the refusal is then in the log).
    let mut refused_some = false;
    if have("mariadb", &["--version"]) {
        refused_some = true;
        let login_to = |password: Option<&str>, database: Option<&str>| {
            let mut command = Command::new("mariadb");
            command.args([
                "-h",
                &host,
                "-P",
                "3306",
                "-u",
                "any",
                "--connect-timeout=10",
            ]);
            if let Some(password) = password {
                command.arg(format!("-p{password}"));
            }
            if let Some(database) = database {
                command.args(["-D", database]);
            }
            command
                .args(["-e", "SHOW NODES"])
                .output()
                .expect("run mariadb")
        };
        let login = |password: Option<&str>| login_to(password, None);
        let out = login(Some(TOKEN));
        assert!(out.status.success(), "{}", text(&out.stderr));
        // The database named on connect is checked once the password passed.
        let unknown = login_to(Some(TOKEN), Some("not_here"));
        assert!(
            text(&unknown.stderr).contains("ERROR 1049"),
            "{}",
            text(&unknown.stderr)
        );
        assert!(
            text(&out.stdout).contains(&node.spec.node_id),
            "{}",
            text(&out.stdout)
        );
        for (password, using) in [(None, "NO"), (Some("wrong"), "YES")] {
            let out = login(password);
            assert!(
                !out.status.success(),
                "{password:?} let in: {}",
                text(&out.stdout)
            );
            let stderr = text(&out.stderr);
            assert!(stderr.contains("ERROR 1045 (28000)"), "{stderr}");
            assert!(
                stderr.contains(&format!("using password: {using}")),
                "{stderr}"
            );
            assert!(stderr.contains("BO_API_TOKEN"), "{stderr}");
        }
    } else {
        eprintln!("NOTICE: mariadb client not installed; skipping its part (apt-get install mariadb-client)");
    }
    for (driver, module) in [("pymysql", "pymysql"), ("connector", "mysql.connector")] {
        if !have("python3", &["-c", &format!("import {module}")]) {
            eprintln!("NOTICE: python3 with {module} not installed; skipping its part");
            continue;
        }
        refused_some = true;
        let run = |password: &str| {
            let out = Command::new("python3")
                .args(["-c", TOKEN_SCRIPT, driver, &host, password])
                .output()
                .expect("run python3");
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout)
        };
        assert_eq!(run(TOKEN), "rows 1\n", "{driver}");
        for password in ["", "wrong"] {
            let out = run(password);
            assert!(
                out.starts_with("error 1045 "),
                "{driver} {password:?}: {out}"
            );
            assert!(out.contains("Access denied"), "{driver}: {out}");
        }
    }
    let log = node.log();
    assert!(!log.contains(TOKEN), "the token appears in the log:\n{log}");
    if refused_some {
        assert!(log.contains("MySQL login refused"), "{log}");
    }
}

//! `bocluster sql` with no statement, under a real terminal: tmux runs the shell, the test
//! types with `send-keys` and reads the screen with `capture-pane`. Skips with a notice when
//! tmux is missing (`.ci/run` installs it). Loopback block 127.0.152.x.

mod common;

use std::process::Command;

use common::*;

const BLOCK: u8 = 152;

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Types `keys` (tmux key names, e.g. "Enter", "C-d") into the shell.
    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "shell"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.send(&["-l", &literal(text)]);
        self.send(&["Enter"]);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-p", "-t", "shell", "-S", "-200"])
                .stdout,
        )
        .into_owned()
    }

    /// Waits until the screen shows `part` `times` times or more; returns the screen.
    fn expect(&self, part: &str, times: usize) -> String {
        wait_for(DEADLINE, || {
            let screen = self.screen();
            (screen.matches(part).count() >= times).then_some(screen)
        })
        .unwrap_or_else(|| {
            panic!(
                "{part:?} ({times}x) never showed; screen:\n{}",
                self.screen()
            )
        })
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session", "-t", "shell"]).status.success()
    }
}

/// `text` for `send-keys -l`: tmux reads a `;` that ends an argument as the end of its
/// command, unless escaped.
fn literal(text: &str) -> String {
    match text.strip_suffix(';') {
        Some(rest) => format!("{rest}\\;"),
        None => text.to_string(),
    }
}

impl Drop for Tmux {
    /// Kills the server and waits until it is gone: a new session started while it is still
    /// exiting would connect to it and fail with "server exited unexpectedly".
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
        wait_for(DEADLINE, || {
            let out = self.tmux(&["list-sessions"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            (!out.status.success()
                && (stderr.contains("no server running") || stderr.contains("error connecting")))
            .then_some(())
        });
    }
}

/// A shell on `host`; `how` passes the token (`--token X` or `BO_API_TOKEN=X` before it).
fn open_shell(socket: &str, host: &str, history: &std::path::Path, how: Token) -> Tmux {
    let tmux = Tmux {
        socket: socket.to_string(),
    };
    let (env, flag) = match how {
        Token::Flag => (String::new(), format!(" --token {TOKEN}")),
        Token::Env => (format!("BO_API_TOKEN={TOKEN} "), String::new()),
    };
    let command = format!(
        "{env}BO_HISTORY={} {} sql --host {host}{flag}; sleep 30",
        history.display(),
        exe().display()
    );
    let out = tmux.tmux(&[
        "new-session",
        "-d",
        "-s",
        "shell",
        "-x",
        "160",
        "-y",
        "50",
        &command,
    ]);
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.expect("bocluster>", 1);
    tmux
}

/// The node's API token: the shell must send it.
const TOKEN: &str = "shell-t0ken";

#[derive(Clone, Copy)]
enum Token {
    Flag,
    Env,
}

#[test]
fn the_shell_edits_lines_keeps_history_and_points_at_errors() {
    if !Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("NOTICE: tmux not installed; skipping the shell test (apt-get install tmux)");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(
        dir.path(),
        BLOCK,
        1,
        &[("BO_DATABASES", "log1,log2"), ("BO_API_TOKEN", TOKEN)],
    ));
    let host = node.http_addr().to_string();
    let history = dir.path().join("history");
    let socket = format!("bocluster-shell-test-{}", std::process::id());
    let tmux = open_shell(&socket, &host, &history, Token::Flag);

    // A statement over two lines: the second prompt says it goes on.
    tmux.line("SHOW");
    tmux.expect("        ->", 1);
    tmux.line("DATABASES;");
    let screen = tmux.expect("rows, ", 1);
    assert!(
        screen.contains("name\n----\nlog1\nlog2\n(2 rows, "),
        "{screen}"
    );
    assert!(screen.contains(" ms)"), "{screen}");

    // Help lists the statements.
    tmux.line("\\h");
    let screen = tmux.expect("ADD CLIENT ip=", 1);
    assert!(
        screen.contains("SHOW CLUSTER") && screen.contains("\\q quit"),
        "{screen}"
    );

    // An error with a caret under its column.
    tmux.line("SHOW  NODEZ;");
    let screen = tmux.expect("error: line 1, column 7", 1);
    assert!(screen.contains("  SHOW  NODEZ;\n        ^\n"), "{screen}");

    // Line editing: the Up arrow brings back the last statement, edited before Enter.
    tmux.line("CREATE DATABASE typed;");
    tmux.expect("database typed created", 1);
    tmux.send(&["Up"]);
    tmux.send(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    tmux.send(&["-l", &literal("again;")]);
    tmux.send(&["Enter"]);
    tmux.expect("database again created", 1);

    // \q quits; the history was kept across the session.
    tmux.line("\\q");
    tmux.expect("bye", 1);
    let kept = std::fs::read_to_string(&history).expect("history file");
    assert!(
        kept.contains("SHOW\nDATABASES;") || kept.contains("SHOW\\nDATABASES;"),
        "{kept}"
    );
    assert!(kept.contains("CREATE DATABASE again;"), "{kept}");
    drop(tmux);

    // A new shell (the token from BO_API_TOKEN this time) starts with that history; Ctrl-D
    // quits it.
    let tmux = open_shell(&socket, &host, &history, Token::Env);
    tmux.send(&["Up"]);
    tmux.expect("bocluster> CREATE DATABASE again;", 1);
    tmux.send(&["C-u"]);
    tmux.line("SHOW DATABASES;");
    tmux.expect("(4 rows, ", 1);
    tmux.send(&["C-d"]);
    tmux.expect("bye", 1);
    assert!(tmux.running(), "the pane closed before the test read it");
}

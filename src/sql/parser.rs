//! Recursive-descent parser for operator statements over sqlparser's tokenizer.
//!
//! sqlparser's own parser cannot produce our statements, so only its tokenizer is used (for
//! quoting, escapes and line/column positions). Bare `key=value` values are taken from the
//! raw input instead of from tokens: a bare value runs from its first character up to
//! whitespace, `;` or the end of input, so `192.168.0.3`, `::1` and `xn--bcher-kva.example`
//! (which the tokenizer would split, or cut at `--` as a comment) are read exactly as typed.

use std::collections::VecDeque;

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, TokenizerError};

use crate::db_name::DatabaseName;
use crate::sql::statement::{ClientHost, ClientSpec, Statement, DEFAULT_CLIENT_PORT};

/// Longest piece of input quoted back in an error message, in characters.
const MAX_QUOTED_LEN: usize = 40;

/// Longest accepted `key=value` value, in bytes (a DNS name has at most 253), so that error
/// messages never echo huge inputs.
const MAX_VALUE_LEN: usize = 256;

/// Bytes of input handed to the tokenizer at a time (see [`Lexer`]); a window grows only for
/// a single token longer than this.
const WINDOW_BYTES: usize = 1024;

/// A token that ends this close to the end of a window (one that is not the end of the input)
/// is read again with the next window: the tokenizer looks a few characters past a token to
/// decide where it ends (`1e5`, `->>`, `U&'`), and a token cut by the window is not the token.
const WINDOW_MARGIN: usize = 16;

/// Why an input is not a statement, and where (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parses exactly one statement, optionally followed by `;`.
///
/// # Errors
///
/// A [`ParseError`] at the offending token (or at the end of input when something is
/// missing) for anything that is not exactly one valid statement.
pub fn parse_statement(input: &str) -> Result<Statement, ParseError> {
    parse_with_window(input, WINDOW_BYTES)
}

/// [`parse_statement`] with the tokenizer's first window of `window` bytes (the answer is the
/// same for every size; tests try small ones).
fn parse_with_window(input: &str, window: usize) -> Result<Statement, ParseError> {
    Parser {
        lexer: Lexer::new(input, window),
    }
    .statement()
}

/// A 1-based line and column, counted like sqlparser does (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: u64,
    column: u64,
}

impl Pos {
    const START: Pos = Pos { line: 1, column: 1 };

    /// Turns `loc`, relative to input that starts at `self`, into a position in the whole input.
    fn offset_by(self, loc: Location) -> Pos {
        if loc.line <= 1 {
            Pos {
                line: self.line,
                column: self
                    .column
                    .saturating_add(loc.column.saturating_sub(1))
                    .max(1),
            }
        } else {
            Pos {
                line: self.line.saturating_add(loc.line - 1),
                column: loc.column.max(1),
            }
        }
    }

    fn error(self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// A non-whitespace token with its byte range in the input and its start position.
struct Tok {
    token: Token,
    start: usize,
    end: usize,
    pos: Pos,
}

/// Walks the input forward, translating positions into byte offsets in linear time overall.
struct Cursor<'a> {
    src: &'a str,
    pos: Pos,
    offset: usize,
}

impl Cursor<'_> {
    /// Advances to `target` (or to the end of input) and returns the byte offset there.
    fn seek(&mut self, target: Pos) -> usize {
        while self.pos < target {
            let Some(c) = self.src.get(self.offset..).and_then(|s| s.chars().next()) else {
                break;
            };
            if c == '\n' {
                self.pos.line += 1;
                self.pos.column = 1;
            } else {
                self.pos.column += 1;
            }
            self.offset += c.len_utf8();
        }
        self.offset
    }
}

/// The position just after `text`, which starts at `pos`.
fn pos_after(mut pos: Pos, text: &str) -> Pos {
    for c in text.chars() {
        if c == '\n' {
            pos.line += 1;
            pos.column = 1;
        } else {
            pos.column += 1;
        }
    }
    pos
}

/// The smallest char boundary of `text` at or above `at` (at most `text.len()`).
fn ceil_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Where the token at the start of `text` probably ends, in bytes, for the kinds that can be
/// long: comments, quoted strings and names, words and numbers. Only a guess, to size the next
/// window (so that little after a long token is tokenized along with it); the tokenizer has
/// the last word, and a wrong guess costs only time.
fn token_end_guess(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let quoted_from = |open: usize| {
        let quote = *bytes.get(open)?;
        let mut i = open + 1;
        while i < bytes.len() {
            if bytes[i] == quote {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2; // a doubled quote stands for one
                    continue;
                }
                return Some(i + 1);
            }
            i += 1;
        }
        None
    };
    match bytes {
        [b'-', b'-', ..] => Some(text.find('\n').map_or(text.len(), |i| i + 1)),
        [b'/', b'*', ..] => {
            // Nested, as the tokenizer reads them.
            let (mut depth, mut i) = (1usize, 2);
            while i + 1 < bytes.len() {
                match &bytes[i..i + 2] {
                    b"/*" => (depth, i) = (depth + 1, i + 2),
                    b"*/" if depth == 1 => return Some(i + 2),
                    b"*/" => (depth, i) = (depth - 1, i + 2),
                    _ => i += 1,
                }
            }
            None
        }
        [b'\'' | b'"' | b'`', ..] => quoted_from(0),
        [b'0'..=b'9' | b'.', ..] => {
            // digits [. digits] [e [+-] digits]
            let digits = |from: usize| {
                from + bytes[from.min(bytes.len())..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count()
            };
            let mut end = digits(0);
            if bytes.get(end) == Some(&b'.') {
                end = digits(end + 1);
            }
            if matches!(bytes.get(end), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
                let exponent = digits(end + 1 + sign);
                if exponent > end + 1 + sign {
                    end = exponent;
                }
            }
            Some(end)
        }
        _ => {
            let word = text
                .find(|c: char| {
                    !(c.is_alphabetic() || c.is_ascii_digit() || matches!(c, '_' | '$' | '#' | '@'))
                })
                .unwrap_or(text.len());
            match &bytes[word..] {
                // A prefixed string: N'..', E'..', X'..', B'..', R'..', U&'..'.
                [b'\'' | b'"', ..] if (1..=2).contains(&word) => quoted_from(word),
                [b'&', b'\'', ..] if word == 1 => quoted_from(word + 1),
                _ if word > 0 => Some(word),
                _ => None,
            }
        }
    }
}

/// The tokens of the input, read lazily, with support for re-tokenizing after a raw bare value.
///
/// No statement has more than a dozen tokens, so the parser never looks further than about a
/// dozen tokens in (it stops with an error at the first one that does not fit the grammar).
/// The tokenizer is therefore given the input one window at a time, as the parser asks for
/// tokens, instead of all of it at once: a MiB-long run of one-letter tokens used to become a
/// million tokens (some 100 MiB, and a second of CPU) before the parser looked at the second
/// one. Whitespace and comments, which a valid statement may carry in any amount, are read
/// through window by window in constant memory.
struct Lexer<'a> {
    src: &'a str,
    /// Non-whitespace tokens read ahead and not consumed yet, next first.
    toks: VecDeque<Tok>,
    /// The tokenizer stopped here, after `toks`.
    error: Option<ParseError>,
    /// Byte offset (and its position) where the tokenizer goes on: the end of the last token
    /// read, or the end of input.
    at: usize,
    at_pos: Pos,
    /// The last non-whitespace token before `at`, and the last token if that is whitespace:
    /// the tokenizer decides some tokens by the ones before them (`t.1e`), so each window is
    /// tokenized after these.
    context_token: Option<TokenWithSpan>,
    context_space: Option<TokenWithSpan>,
    /// Just after the last non-whitespace token read since the current tokenization started
    /// (or where it started, if none).
    last_end: Pos,
    /// Whether a `;` ended the statement (for a clearer "after the end" message).
    saw_semicolon: bool,
    /// Bytes tokenized at a time unless a token needs more ([`WINDOW_BYTES`]).
    window: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str, window: usize) -> Self {
        let mut lexer = Lexer {
            src,
            window: window.max(1),
            toks: VecDeque::new(),
            error: None,
            at: 0,
            at_pos: Pos::START,
            context_token: None,
            context_space: None,
            last_end: Pos::START,
            saw_semicolon: false,
        };
        lexer.tokenize_from(0, Pos::START);
        lexer
    }

    /// Drops the tokens read ahead and tokenizes afresh from byte `base` (at `base_pos`) on.
    fn tokenize_from(&mut self, base: usize, base_pos: Pos) {
        self.toks.clear();
        self.error = None;
        self.at = base;
        self.at_pos = base_pos;
        self.context_token = None;
        self.context_space = None;
        self.last_end = base_pos;
        self.fill();
    }

    /// Tokenizes window after window until there is a token to hand out, or the input ends, or
    /// the tokenizer fails.
    ///
    /// A window that ends before the input does is trusted only up to its last token that ends
    /// at least [`WINDOW_MARGIN`] bytes before the window's end; the rest is read again with
    /// the next window. A token too long for the window (a long comment, say) gets a window
    /// that ends where [`token_end_guess`] says it does, or else one twice as large until it
    /// fits: reading is linear in the input overall, and little more than the token is
    /// tokenized along with it.
    fn fill(&mut self) {
        let dialect = GenericDialect {};
        let mut window = self.window;
        let mut guessed = false;
        while self.toks.is_empty() && self.error.is_none() && self.at < self.src.len() {
            let rest = &self.src[self.at..];
            let cut = ceil_char_boundary(rest, window);
            let complete = cut == rest.len();
            // What the tokenizer needs to go on from `at`: the last non-whitespace token, then
            // the last token if that was whitespace.
            let mut raw: Vec<TokenWithSpan> = self
                .context_token
                .iter()
                .chain(&self.context_space)
                .cloned()
                .collect();
            let seeded = raw.len();
            let result =
                Tokenizer::new(&dialect, &rest[..cut]).tokenize_with_location_into_buf(&mut raw);
            let trusted_until = if complete {
                self.src.len()
            } else {
                (self.at + cut).saturating_sub(WINDOW_MARGIN)
            };
            let (window_start, window_pos) = (self.at, self.at_pos);
            let mut cursor = Cursor {
                src: self.src,
                pos: window_pos,
                offset: window_start,
            };
            for t in raw.drain(seeded..) {
                let pos = window_pos.offset_by(t.span.start);
                let start = cursor.seek(pos);
                let end = cursor.seek(window_pos.offset_by(t.span.end)).max(start);
                if end > trusted_until {
                    break;
                }
                (self.at, self.at_pos) = (end, cursor.pos);
                if matches!(t.token, Token::Whitespace(_)) {
                    self.context_space = Some(t);
                } else {
                    self.last_end = cursor.pos;
                    self.toks.push_back(Tok {
                        token: t.token.clone(),
                        start,
                        end,
                        pos,
                    });
                    self.context_token = Some(t);
                    self.context_space = None;
                }
            }
            if complete {
                if let Err(e) = result {
                    self.error = Some(self.tokenizer_error(&e, window_start, window_pos));
                }
                self.at = self.src.len();
            } else if self.at == window_start {
                // Not one whole token in the window: try again with one that fits the token as
                // far as can be guessed, else with one twice as large.
                let guess = if guessed {
                    None
                } else {
                    guessed = true;
                    token_end_guess(rest).map(|end| end.saturating_add(WINDOW_MARGIN))
                };
                window = match guess {
                    Some(guess) if guess > cut => guess,
                    _ => window.saturating_mul(2),
                };
            } else {
                (window, guessed) = (self.window, false);
            }
        }
    }

    fn tokenizer_error(
        &self,
        e: &TokenizerError,
        window_start: usize,
        window_pos: Pos,
    ) -> ParseError {
        let pos = window_pos.offset_by(e.location);
        let offset = Cursor {
            src: self.src,
            pos: window_pos,
            offset: window_start,
        }
        .seek(pos);
        let at = self.src.get(offset..).and_then(|s| s.chars().next());
        let unterminated = e.message.starts_with("Unterminated")
            || e.message.starts_with("Expected close delimiter");
        let message = match at {
            Some(q @ ('\'' | '"' | '`')) if unterminated => {
                format!("unterminated quote: the {q} here is never closed")
            }
            _ if unterminated => format!("unterminated quote: {}", e.message),
            _ => format!("cannot read the input: {}", e.message),
        };
        pos.error(message)
    }

    /// The next token, `None` at the end of input, or the tokenizer's error if it stopped here.
    fn peek(&self) -> Result<Option<&Tok>, ParseError> {
        match (self.toks.front(), &self.error) {
            (Some(tok), _) => Ok(Some(tok)),
            (None, Some(error)) => Err(error.clone()),
            (None, None) => Ok(None),
        }
    }

    fn advance(&mut self) {
        self.toks.pop_front();
        if self.toks.is_empty() {
            self.fill();
        }
    }

    /// Where the input ends: just after its last token (trailing whitespace does not count).
    /// Only asked for once every token has been consumed.
    fn end_pos(&self) -> Pos {
        self.last_end
    }

    /// Source text of `tok`.
    fn text(&self, tok: &Tok) -> &'a str {
        self.src.get(tok.start..tok.end).unwrap_or("")
    }

    /// Describes the next token for "found ..." in messages.
    fn describe_next(&self) -> String {
        match self.toks.front() {
            Some(tok) => quote(self.text(tok)),
            None => "end of input".to_string(),
        }
    }

    /// Takes a bare value starting at the next token: raw input up to whitespace, `;` or end.
    fn take_bare(&mut self) -> (&'a str, Pos) {
        let Some(first) = self.toks.front() else {
            return ("", self.end_pos());
        };
        let (start, pos) = (first.start, first.pos);
        let rest = self.src.get(start..).unwrap_or("");
        let len = rest
            .find(|c: char| c.is_whitespace() || c == ';')
            .unwrap_or(rest.len());
        // Always make progress, even if the tokenizer disagrees about what whitespace is.
        let end = if len > 0 {
            start + len
        } else {
            let first_char = rest.chars().next().map_or(0, char::len_utf8);
            first.end.max(start + first_char)
        };
        // The tokens after the value may be wrong: the tokenizer may have read a `--` inside
        // it as a comment swallowing the rest of the line, or failed on a quote inside it.
        // Tokenize again from the end of the value (at most three times per statement).
        let value = self.src.get(start..end).unwrap_or("");
        self.tokenize_from(end, pos_after(pos, value));
        (value, pos)
    }
}

/// Quotes a piece of input for a message, shortened if long.
fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_QUOTED_LEN).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    match (shown.contains('"'), shown.contains('\'')) {
        (false, _) => format!("\"{shown}\""),
        (true, false) => format!("'{shown}'"),
        (true, true) => format!("{shown:?}"),
    }
}

fn is_keyword(tok: &Tok, keyword: &str) -> bool {
    matches!(&tok.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
}

/// The `key=value` keys of `ADD CLIENT` / `DROP CLIENT`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientKey {
    Ip,
    Db,
    Port,
}

impl ClientKey {
    fn name(self) -> &'static str {
        match self {
            ClientKey::Ip => "ip",
            ClientKey::Db => "db",
            ClientKey::Port => "port",
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
}

impl Parser<'_> {
    fn statement(&mut self) -> Result<Statement, ParseError> {
        let Some(first) = self.lexer.peek()? else {
            return Err(Pos::START.error("empty statement"));
        };
        if first.token == Token::SemiColon {
            return Err(first.pos.error("empty statement"));
        }
        let statement = if self.eat_keyword("CREATE")? {
            self.expect_keyword("DATABASE", "after CREATE")?;
            Statement::CreateDatabase {
                name: self.database_name("CREATE DATABASE")?,
            }
        } else if self.eat_keyword("DROP")? {
            if self.eat_keyword("DATABASE")? {
                Statement::DropDatabase {
                    name: self.database_name("DROP DATABASE")?,
                }
            } else if self.eat_keyword("CLIENT")? {
                Statement::DropClient(self.client_spec("DROP CLIENT")?)
            } else {
                return Err(self.expected("DATABASE or CLIENT after DROP"));
            }
        } else if self.eat_keyword("SHOW")? {
            if self.eat_keyword("DATABASES")? {
                Statement::ShowDatabases
            } else if self.eat_keyword("NODES")? {
                Statement::ShowNodes
            } else if self.eat_keyword("CLUSTER")? {
                Statement::ShowCluster
            } else {
                return Err(self.expected("DATABASES, NODES or CLUSTER after SHOW"));
            }
        } else if self.eat_keyword("ADD")? {
            self.expect_keyword("CLIENT", "after ADD")?;
            Statement::AddClient(self.client_spec("ADD CLIENT")?)
        } else {
            return Err(self.expected(
                "a statement (CREATE DATABASE, DROP DATABASE, SHOW DATABASES, SHOW NODES, \
                 SHOW CLUSTER, ADD CLIENT or DROP CLIENT)",
            ));
        };
        self.finish()?;
        Ok(statement)
    }

    /// Consumes an optional `;` and requires the end of input.
    fn finish(&mut self) -> Result<(), ParseError> {
        if self.eat(|t| t == &Token::SemiColon)? {
            self.lexer.saw_semicolon = true;
        }
        match self.lexer.peek()? {
            None => Ok(()),
            Some(tok) => {
                let hint = if self.lexer.saw_semicolon {
                    "; only one statement is accepted per input"
                } else {
                    ""
                };
                Err(tok.pos.error(format!(
                    "unexpected {} after the end of the statement{hint}",
                    self.lexer.describe_next()
                )))
            }
        }
    }

    /// An error "expected {what}, found {next token}" at the next token (or end of input).
    fn expected(&self, what: &str) -> ParseError {
        match self.lexer.peek() {
            Err(error) => error,
            Ok(next) => {
                let pos = next.map_or_else(|| self.lexer.end_pos(), |t| t.pos);
                pos.error(format!(
                    "expected {what}, found {}",
                    self.lexer.describe_next()
                ))
            }
        }
    }

    fn eat(&mut self, accept: impl Fn(&Token) -> bool) -> Result<bool, ParseError> {
        let found = self.lexer.peek()?.is_some_and(|t| accept(&t.token));
        if found {
            self.lexer.advance();
        }
        Ok(found)
    }

    fn eat_keyword(&mut self, keyword: &str) -> Result<bool, ParseError> {
        let found = self.lexer.peek()?.is_some_and(|t| is_keyword(t, keyword));
        if found {
            self.lexer.advance();
        }
        Ok(found)
    }

    fn expect_keyword(&mut self, keyword: &str, context: &str) -> Result<(), ParseError> {
        if self.eat_keyword(keyword)? {
            Ok(())
        } else {
            Err(self.expected(&format!("{keyword} {context}")))
        }
    }

    /// Whether the statement has no more tokens (end of input or `;`).
    fn at_statement_end(&self) -> Result<bool, ParseError> {
        Ok(match self.lexer.peek()? {
            None => true,
            Some(tok) => tok.token == Token::SemiColon,
        })
    }

    /// A quoted or bare value; the caller has checked that one is there.
    fn value(&mut self) -> Result<(String, Pos), ParseError> {
        let Some(tok) = self.lexer.peek()? else {
            return Ok((String::new(), self.lexer.end_pos()));
        };
        let pos = tok.pos;
        let quoted = match &tok.token {
            Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        };
        if let Some(value) = quoted {
            self.lexer.advance();
            Ok((value, pos))
        } else {
            let (text, pos) = self.lexer.take_bare();
            Ok((text.to_string(), pos))
        }
    }

    fn database_name(&mut self, statement: &str) -> Result<DatabaseName, ParseError> {
        if self.at_statement_end()? {
            return Err(self.expected(&format!("a database name after {statement}")));
        }
        let (name, pos) = self.value()?;
        if name.len() > MAX_VALUE_LEN {
            return Err(pos.error(format!(
                "bad database name: {} is longer than {} characters",
                quote(&name),
                crate::db_name::MAX_DATABASE_NAME_LEN
            )));
        }
        DatabaseName::new(&name).map_err(|e| pos.error(format!("bad database name: {e}")))
    }

    /// `key=value ...` with keys ip (required), db (required) and port (optional).
    fn client_spec(&mut self, statement: &str) -> Result<ClientSpec, ParseError> {
        let mut host: Option<ClientHost> = None;
        let mut port: Option<u16> = None;
        let mut db: Option<DatabaseName> = None;

        while !self.at_statement_end()? {
            let key = self.client_key(statement)?;
            let already = match key {
                ClientKey::Ip => host.is_some(),
                ClientKey::Db => db.is_some(),
                ClientKey::Port => port.is_some(),
            };
            let key_pos = self.lexer.peek()?.map_or(Pos::START, |t| t.pos);
            if already {
                return Err(key_pos.error(format!(
                    "key {} is given more than once in {statement}",
                    key.name()
                )));
            }
            self.lexer.advance();

            if !self.eat(|t| t == &Token::Eq)? {
                return Err(self.expected(&format!("'=' after {}", key.name())));
            }
            if self.at_statement_end()? {
                return Err(self.expected(&format!("a value after {}=", key.name())));
            }
            let (value, pos) = self.value()?;
            if value.len() > MAX_VALUE_LEN {
                return Err(pos.error(format!(
                    "{} value {} is longer than {MAX_VALUE_LEN} characters",
                    key.name(),
                    quote(&value)
                )));
            }
            match key {
                ClientKey::Ip => {
                    let parsed = value.parse::<ClientHost>().map_err(|e| {
                        let hint = if value.matches(':').count() == 1 {
                            "; give the port separately as port=..."
                        } else {
                            ""
                        };
                        pos.error(format!("bad ip value: {e}{hint}"))
                    })?;
                    host = Some(parsed);
                }
                ClientKey::Db => {
                    let parsed = DatabaseName::new(&value)
                        .map_err(|e| pos.error(format!("bad db value: {e}")))?;
                    db = Some(parsed);
                }
                ClientKey::Port => port = Some(parse_port(&value).map_err(|m| pos.error(m))?),
            }
        }

        let end = self
            .lexer
            .peek()?
            .map_or_else(|| self.lexer.end_pos(), |t| t.pos);
        match (host, db) {
            (Some(host), Some(db)) => Ok(ClientSpec {
                host,
                port: port.unwrap_or(DEFAULT_CLIENT_PORT),
                db,
            }),
            (None, None) => Err(end.error(format!("{statement} needs ip=\"...\" and db=\"...\""))),
            (None, Some(_)) => Err(end.error(format!("{statement} needs ip=\"...\""))),
            (Some(_), None) => Err(end.error(format!("{statement} needs db=\"...\""))),
        }
    }

    /// Reads (without consuming) the key at the next token.
    fn client_key(&self, statement: &str) -> Result<ClientKey, ParseError> {
        let Some(tok) = self.lexer.peek()? else {
            return Err(self.expected(&format!("a key (ip, db or port) in {statement}")));
        };
        let Token::Word(word) = &tok.token else {
            return Err(self.expected(&format!("a key (ip, db or port) in {statement}")));
        };
        if word.quote_style.is_some() {
            return Err(self.expected(&format!("a key (ip, db or port) in {statement}")));
        }
        match word.value.to_ascii_lowercase().as_str() {
            "ip" => Ok(ClientKey::Ip),
            "db" => Ok(ClientKey::Db),
            "port" => Ok(ClientKey::Port),
            _ => Err(tok.pos.error(format!(
                "unknown key {} in {statement}; the keys are ip, db and port",
                quote(&word.value)
            ))),
        }
    }
}

/// A port number 1..=65535, as decimal digits only.
fn parse_port(value: &str) -> Result<u16, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {} is not a number", quote(value)));
    }
    match value.parse::<u16>() {
        Ok(port) if port >= 1 => Ok(port),
        _ => Err(format!(
            "port {} is out of range; expected 1..=65535",
            quote(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn db(name: &str) -> DatabaseName {
        DatabaseName::new(name).unwrap()
    }

    fn ip(addr: &str) -> ClientHost {
        ClientHost::Ip(addr.parse::<IpAddr>().unwrap())
    }

    fn client(host: ClientHost, port: u16, name: &str) -> ClientSpec {
        ClientSpec {
            host,
            port,
            db: db(name),
        }
    }

    fn ok(input: &str) -> Statement {
        match parse_statement(input) {
            Ok(statement) => statement,
            Err(e) => panic!("{input:?} failed: {e}"),
        }
    }

    /// Asserts that `input` fails at `line`:`column` with a message containing `part`.
    fn err(input: &str, line: u64, column: u64, part: &str) -> ParseError {
        let e = match parse_statement(input) {
            Ok(statement) => panic!("{input:?} parsed as {statement:?}"),
            Err(e) => e,
        };
        assert_eq!((e.line, e.column), (line, column), "{input:?}: {e}");
        assert!(e.message.contains(part), "{input:?}: {e} lacks {part:?}");
        e
    }

    #[test]
    fn parses_every_statement_form() {
        assert_eq!(
            ok("CREATE DATABASE log1"),
            Statement::CreateDatabase { name: db("log1") }
        );
        assert_eq!(
            ok("DROP DATABASE log1"),
            Statement::DropDatabase { name: db("log1") }
        );
        assert_eq!(ok("SHOW DATABASES"), Statement::ShowDatabases);
        assert_eq!(ok("SHOW NODES"), Statement::ShowNodes);
        assert_eq!(ok("SHOW CLUSTER"), Statement::ShowCluster);
        assert_eq!(
            ok("ADD CLIENT ip=\"10.0.0.1\" db=\"log1\" port=19091"),
            Statement::AddClient(client(ip("10.0.0.1"), 19091, "log1"))
        );
        assert_eq!(
            ok("DROP CLIENT ip=\"10.0.0.1\" db=\"log1\""),
            Statement::DropClient(client(ip("10.0.0.1"), DEFAULT_CLIENT_PORT, "log1"))
        );
    }

    #[test]
    fn keywords_and_keys_are_case_insensitive() {
        assert_eq!(ok("show nodes"), Statement::ShowNodes);
        assert_eq!(ok("ShOw ClUsTeR"), Statement::ShowCluster);
        assert_eq!(
            ok("create database Log1"),
            Statement::CreateDatabase { name: db("Log1") }
        );
        assert_eq!(
            ok("add Client IP=1.2.3.4 DB=x Port=5"),
            Statement::AddClient(client(ip("1.2.3.4"), 5, "x"))
        );
        assert_eq!(
            ok("drop client iP=1.2.3.4 dB=x"),
            Statement::DropClient(client(ip("1.2.3.4"), 9091, "x"))
        );
    }

    #[test]
    fn accepts_trailing_semicolon_whitespace_and_comments() {
        assert_eq!(ok("SHOW NODES;"), Statement::ShowNodes);
        assert_eq!(ok("  SHOW\n\tNODES ;  \n"), Statement::ShowNodes);
        assert_eq!(ok("-- list\nSHOW NODES; -- done"), Statement::ShowNodes);
        assert_eq!(ok("SHOW /* all */ DATABASES"), Statement::ShowDatabases);
        assert_eq!(
            ok("CREATE DATABASE log1;"),
            Statement::CreateDatabase { name: db("log1") }
        );
        assert_eq!(
            ok("ADD CLIENT ip=1.2.3.4 db=log1;"),
            Statement::AddClient(client(ip("1.2.3.4"), 9091, "log1"))
        );
        assert_eq!(
            ok("ADD CLIENT ip='1.2.3.4' db='log1' ;"),
            Statement::AddClient(client(ip("1.2.3.4"), 9091, "log1"))
        );
    }

    #[test]
    fn database_names_may_be_quoted() {
        for input in [
            "CREATE DATABASE \"log1\"",
            "CREATE DATABASE 'log1'",
            "CREATE DATABASE `log1`",
            "CREATE DATABASE log1",
        ] {
            assert_eq!(
                ok(input),
                Statement::CreateDatabase { name: db("log1") },
                "{input}"
            );
        }
        assert_eq!(
            ok("DROP DATABASE 'x_1';"),
            Statement::DropDatabase { name: db("x_1") }
        );
    }

    #[test]
    fn client_values_in_every_quoting_style() {
        let want = Statement::AddClient(client(ip("192.168.0.3"), 19091, "log1"));
        for input in [
            "ADD CLIENT ip=\"192.168.0.3\" db=\"log1\" port=\"19091\"",
            "ADD CLIENT ip='192.168.0.3' db='log1' port='19091'",
            "ADD CLIENT ip=`192.168.0.3` db=`log1` port=`19091`",
            "ADD CLIENT ip=192.168.0.3 db=log1 port=19091",
            "ADD CLIENT ip='192.168.0.3' db=\"log1\" port=19091",
        ] {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn bare_hosts_of_every_kind() {
        let cases = [
            ("192.168.0.3", ip("192.168.0.3")),
            ("::1", ip("::1")),
            ("[::1]", ip("::1")),
            ("2001:db8::1", ip("2001:db8::1")),
            ("[fe80::1:2]", ip("fe80::1:2")),
            ("::ffff:1.2.3.4", ip("::ffff:1.2.3.4")),
            (
                "client-1.example",
                ClientHost::Dns("client-1.example".into()),
            ),
            (
                "Client-1.Example",
                ClientHost::Dns("client-1.example".into()),
            ),
            (
                "xn--bcher-kva.example",
                ClientHost::Dns("xn--bcher-kva.example".into()),
            ),
            ("localhost", ClientHost::Dns("localhost".into())),
            ("1e5", ClientHost::Dns("1e5".into())),
        ];
        for (text, host) in cases {
            let input = format!("ADD CLIENT ip={text} db=log1");
            assert_eq!(
                ok(&input),
                Statement::AddClient(client(host.clone(), 9091, "log1")),
                "{input}"
            );
            let input = format!("DROP CLIENT db=log1 ip={text};");
            assert_eq!(
                ok(&input),
                Statement::DropClient(client(host, 9091, "log1")),
                "{input}"
            );
        }
    }

    #[test]
    fn spaces_around_equals_and_any_key_order() {
        let want = Statement::AddClient(client(ip("10.1.2.3"), 7000, "db_a"));
        for input in [
            "ADD CLIENT ip=10.1.2.3 db=db_a port=7000",
            "ADD CLIENT ip = 10.1.2.3 db =db_a port= 7000",
            "ADD CLIENT port=7000 db=db_a ip=10.1.2.3",
            "ADD CLIENT db = 'db_a' port = '7000' ip = \"10.1.2.3\"",
            "ADD CLIENT\n  ip=10.1.2.3\n  db=db_a\n  port=7000\n;",
            "ADD CLIENT ip=\"10.1.2.3\"db=\"db_a\"port=\"7000\"",
        ] {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn port_defaults_and_bounds() {
        assert_eq!(
            ok("ADD CLIENT ip=::1 db=x"),
            Statement::AddClient(client(ip("::1"), DEFAULT_CLIENT_PORT, "x"))
        );
        assert_eq!(
            ok("ADD CLIENT ip=::1 db=x port=1"),
            Statement::AddClient(client(ip("::1"), 1, "x"))
        );
        assert_eq!(
            ok("ADD CLIENT ip=::1 db=x port=65535"),
            Statement::AddClient(client(ip("::1"), 65535, "x"))
        );
    }

    #[test]
    fn empty_statement() {
        err("", 1, 1, "empty statement");
        err("   \n ", 1, 1, "empty statement");
        err("-- nothing", 1, 1, "empty statement");
        err("  ;", 1, 3, "empty statement");
    }

    #[test]
    fn unknown_statement_lists_what_is_accepted() {
        let e = err("SELECT 1", 1, 1, "found \"SELECT\"");
        for part in ["CREATE DATABASE", "SHOW NODES", "ADD CLIENT", "DROP CLIENT"] {
            assert!(e.message.contains(part), "{e}");
        }
        err("\n  'SHOW' NODES", 2, 3, "found \"'SHOW'\"");
        err("\"SHOW\" NODES", 1, 1, "found '\"SHOW\"'");
    }

    #[test]
    fn bad_keyword_after_the_first() {
        let e = err("SHOW FOO", 1, 6, "found \"FOO\"");
        assert_eq!(
            e.to_string(),
            "line 1, column 6: expected DATABASES, NODES or CLUSTER after SHOW, found \"FOO\""
        );
        err("SHOW", 1, 5, "found end of input");
        err("SHOW   ", 1, 5, "found end of input");
        err("SHOW;", 1, 5, "found \";\"");
        err(
            "CREATE TABLE t",
            1,
            8,
            "expected DATABASE after CREATE, found \"TABLE\"",
        );
        err(
            "DROP NODE x",
            1,
            6,
            "expected DATABASE or CLIENT after DROP",
        );
        err("ADD DATABASE x", 1, 5, "expected CLIENT after ADD");
        err("-- ünïcode\nSHOW ÿ", 2, 6, "found \"ÿ\"");
        err("/* é */ SHOW x", 1, 14, "found \"x\"");
    }

    #[test]
    fn database_name_errors() {
        err(
            "CREATE DATABASE",
            1,
            16,
            "expected a database name after CREATE DATABASE, found end of input",
        );
        err(
            "DROP DATABASE ;",
            1,
            15,
            "expected a database name after DROP DATABASE, found \";\"",
        );
        let e = err("CREATE DATABASE 1abc", 1, 17, "bad database name");
        assert!(e.message.contains("must start with a letter"), "{e}");
        err("CREATE DATABASE my-db", 1, 17, "contains '-'");
        err("CREATE DATABASE 'a b'", 1, 17, "contains ' '");
        err("CREATE DATABASE ''", 1, 17, "database name is empty");
        err(
            &format!("CREATE DATABASE {}", "a".repeat(65)),
            1,
            17,
            "longer than 64",
        );
    }

    #[test]
    fn missing_required_keys() {
        err("ADD CLIENT db=log1", 1, 19, "ADD CLIENT needs ip=\"...\"");
        err(
            "ADD CLIENT ip=1.2.3.4;",
            1,
            22,
            "ADD CLIENT needs db=\"...\"",
        );
        err(
            "DROP CLIENT port=1 db=x",
            1,
            24,
            "DROP CLIENT needs ip=\"...\"",
        );
        err(
            "ADD CLIENT",
            1,
            11,
            "ADD CLIENT needs ip=\"...\" and db=\"...\"",
        );
    }

    #[test]
    fn unknown_and_repeated_keys() {
        let e = err(
            "ADD CLIENT ip=1.2.3.4 host=x db=y",
            1,
            23,
            "unknown key \"host\"",
        );
        assert!(e.message.contains("ip, db and port"), "{e}");
        err(
            "ADD CLIENT ip=1.2.3.4 db=a DB=b",
            1,
            28,
            "key db is given more than once",
        );
        err(
            "DROP CLIENT ip=1.2.3.4 ip=::1 db=a",
            1,
            24,
            "key ip is given more than once",
        );
        err(
            "ADD CLIENT port=1 port=2",
            1,
            19,
            "key port is given more than once",
        );
        err(
            "ADD CLIENT 'ip'=1.2.3.4",
            1,
            12,
            "expected a key (ip, db or port) in ADD CLIENT, found \"'ip'\"",
        );
        err("ADD CLIENT 5", 1, 12, "expected a key");
    }

    #[test]
    fn port_errors_quote_the_value() {
        err(
            "ADD CLIENT ip=::1 db=x port=0",
            1,
            29,
            "port \"0\" is out of range",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=65536",
            1,
            29,
            "port \"65536\" is out of range",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=99999999999999999999999",
            1,
            29,
            "out of range",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=abc",
            1,
            29,
            "port \"abc\" is not a number",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=-1",
            1,
            29,
            "port \"-1\" is not a number",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=''",
            1,
            29,
            "port \"\" is not a number",
        );
        err(
            "ADD CLIENT ip=::1 db=x port=' 80'",
            1,
            29,
            "port \" 80\" is not a number",
        );
    }

    #[test]
    fn bad_db_and_ip_values() {
        err(
            "ADD CLIENT ip=::1 db=a-b",
            1,
            22,
            "bad db value: database name \"a-b\" contains '-'",
        );
        err(
            "ADD CLIENT ip=999.1.1.1 db=x",
            1,
            15,
            "\"999.1.1.1\" is not a valid IPv4 address",
        );
        err(
            "ADD CLIENT ip=1.2.3 db=x",
            1,
            15,
            "not a valid IPv4 address",
        );
        err("ADD CLIENT ip=[::1 db=x", 1, 15, "not a valid IPv6 address");
        err(
            "ADD CLIENT ip=fe80:::1 db=x",
            1,
            15,
            "not a valid IPv6 address",
        );
        err(
            "ADD CLIENT ip=-bad.example db=x",
            1,
            15,
            "not a valid DNS name",
        );
        err("ADD CLIENT ip=a_b db=x", 1, 15, "not a valid DNS name");
        err("ADD CLIENT ip=\"\" db=x", 1, 15, "client host is empty");
        // The tokenizer sees `a` and then a string, but the bare value is taken as typed.
        err(
            "ADD CLIENT db=x ip=a'b c' ",
            1,
            20,
            "\"a'b\" is not a valid DNS name",
        );
    }

    #[test]
    fn unterminated_quotes() {
        err(
            "CREATE DATABASE 'abc",
            1,
            17,
            "unterminated quote: the ' here is never closed",
        );
        err(
            "CREATE DATABASE \"abc",
            1,
            17,
            "unterminated quote: the \" here",
        );
        err(
            "CREATE DATABASE `abc",
            1,
            17,
            "unterminated quote: the ` here",
        );
        err(
            "ADD CLIENT ip=1.2.3.4\n  db='log1",
            2,
            6,
            "unterminated quote",
        );
        err("SHOW NODES 'x", 1, 12, "unterminated quote");
        err(
            "ADD CLIENT ip=::1 db=x port='1",
            1,
            29,
            "unterminated quote",
        );
    }

    #[test]
    fn missing_equals_or_value() {
        err(
            "ADD CLIENT ip 1.2.3.4",
            1,
            15,
            "expected '=' after ip, found \"1.2\"",
        );
        err(
            "ADD CLIENT ip",
            1,
            14,
            "expected '=' after ip, found end of input",
        );
        err(
            "ADD CLIENT db==x",
            1,
            14,
            "expected '=' after db, found \"==\"",
        );
        err(
            "ADD CLIENT ip=",
            1,
            15,
            "expected a value after ip=, found end of input",
        );
        err(
            "ADD CLIENT ip= ;",
            1,
            16,
            "expected a value after ip=, found \";\"",
        );
        err("ADD CLIENT db=x ip=\n", 1, 20, "expected a value after ip=");
    }

    #[test]
    fn trailing_input_is_rejected() {
        err(
            "SHOW NODES extra",
            1,
            12,
            "unexpected \"extra\" after the end of the statement",
        );
        let e = err(
            "SHOW NODES; SHOW NODES",
            1,
            13,
            "unexpected \"SHOW\" after the end",
        );
        assert!(e.message.contains("only one statement"), "{e}");
        err("SHOW NODES;;", 1, 12, "unexpected \";\" after the end");
        err(
            "CREATE DATABASE a b",
            1,
            19,
            "unexpected \"b\" after the end",
        );
        err(
            "CREATE DATABASE \"a\"b",
            1,
            20,
            "unexpected \"b\" after the end",
        );
        err(
            "ADD CLIENT ip=::1 db=x; port=1",
            1,
            25,
            "unexpected \"port\" after the end",
        );
    }

    #[test]
    fn long_inputs_are_shortened_in_messages() {
        let long = "x".repeat(500);
        let e = err(&format!("SHOW {long}"), 1, 6, "found \"xxxx");
        assert!(e.message.len() < 150, "{e}");
        let e = err(&format!("ADD CLIENT ip={long}"), 1, 15, "ip value \"xxxx");
        assert!(e.message.len() < 150, "{e}");
        let e = err(
            &format!("CREATE DATABASE '{long}'"),
            1,
            17,
            "longer than 64",
        );
        assert!(e.message.len() < 150, "{e}");
        err(
            "ADD CLIENT ip=host:80 db=x",
            1,
            15,
            "give the port separately as port=",
        );
    }

    /// Deterministic xorshift, so the mangling test needs no extra dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Asserts that reading `input` a few bytes at a time gives what reading it at once does.
    fn same_for_every_window(input: &str) {
        let whole = parse_with_window(input, usize::MAX);
        for window in [1, 2, 3, 5, 8, 13, 16, 17, 31, 64, 200] {
            assert_eq!(
                parse_with_window(input, window),
                whole,
                "{input:?} read {window} bytes at a time"
            );
        }
    }

    #[test]
    fn windows_of_any_size_read_the_same() {
        let comments = "/* c */ -- d\n \t\r\n/* /* nested */ */".repeat(20);
        let inputs = [
            "SHOW NODES".to_string(),
            "  SHOW\n\tNODES ;  \n".to_string(),
            "-- list\nSHOW NODES; -- done".to_string(),
            format!("{comments}SHOW{comments}DATABASES{comments};{comments}"),
            format!("{comments}ADD CLIENT{comments}ip{comments}={comments}1.2.3.4{comments}db={comments}'x'{comments}"),
            format!("{}SHOW FOO", "\n".repeat(300)),
            format!("{}SHOW FOO", "\r\n".repeat(300)),
            format!("SHOW {}", "x".repeat(500)),
            format!("SHOW '{}", "x".repeat(500)),
            format!("SHOW '{}' NODES", "x''y".repeat(200)),
            format!("CREATE DATABASE '{}'", "é".repeat(300)),
            format!("CREATE DATABASE \"{}\"", "a".repeat(300)),
            format!("CREATE DATABASE {}", "a".repeat(300)),
            format!("ADD CLIENT db=x ip={}", "a.".repeat(300)),
            format!("ADD CLIENT ip=::1 db=x port={}", "9".repeat(300)),
            "SHOW ".repeat(300),
            "(".repeat(300),
            "/*".repeat(300),
            "--".repeat(300),
            format!("SHOW DATABASES{}", ";".repeat(300)),
            format!("ADD CLIENT ip{}", "=".repeat(300)),
            "\u{1f600}".repeat(300),
            "\0".repeat(300),
            "SELECT t.1e5, x'ab', U&'x', 1e+5, 1.2.3.4, a->>b, $$x$$, 'a'||'b'".to_string(),
            "SHOW t.1e5".to_string(),
            // The tokenizer reads these by the token before: `._` after a word is a field
            // access (and an error elsewhere), `.1` after a word a tuple index.
            "SHOW NODES ._x".to_string(),
            "SHOW NODES /* c */ ._x".to_string(),
            "SHOW NODES t.1.2".to_string(),
            "SHOW NODES (1).5e3".to_string(),
            "ADD CLIENT ip=1.2.3.4 db=x port ._".to_string(),
            "ADD CLIENT ip = 10.1.2.3 db =db_a port= 7000".to_string(),
            // Tokens longer than a window, of every kind whose end is guessed, and then more.
            format!("SHOW N'{}' (((", "x".repeat(300)),
            format!("SHOW U&'{}' (((", "x".repeat(300)),
            format!("SHOW X'{}'", "ab".repeat(150)),
            format!("SHOW 1.{}.1.1 (((", "5".repeat(300)),
            format!("SHOW {}e+{} (((", "1".repeat(300), "2".repeat(300)),
            format!("SHOW $${}$$ (((", "x".repeat(300)),
            format!("SHOW \"{}\" (((", "x\"\"".repeat(100)),
            format!("SHOW `{}` (((", "x``".repeat(100)),
            format!("SHOW '{}\\' (((", "x\\'".repeat(100)),
            format!("SHOW -- {}\n NODES", "x".repeat(300)),
            format!("SHOW /* {} /* */ {} */ NODES ((", "x".repeat(300), "*/".repeat(10)),
            format!("SHOW /* {}", "x".repeat(300)),
            format!("SHOW {}é{} (((", "é".repeat(150), "a".repeat(150)),
            format!("SHOW @{} (((", "x".repeat(300)),
        ];
        for input in &inputs {
            same_for_every_window(input);
        }
        // Window ends at every place around tokens that depend on the one before.
        for pad in 0..40 {
            for tail in [
                ".5",
                "._x",
                "/* c */ ._x",
                "t.1.2",
                "t. 1.2",
                "(1).5e3",
                "1e+5",
                "x'ab'",
            ] {
                same_for_every_window(&format!(
                    "SHOW NODES{} {tail}{}",
                    " ".repeat(pad),
                    " ".repeat(40)
                ));
            }
        }
    }

    #[test]
    fn huge_inputs_are_read_only_as_far_as_needed() {
        // Each of these used to be tokenized whole (a million tokens) before the first error.
        let e = err(
            &format!("ADD CLIENT db=x ip={}", "a.".repeat(450_000)),
            1,
            20,
            "ip value \"a.a.",
        );
        assert!(e.message.len() < 150, "{e}");
        err(&"SHOW ".repeat(200_000), 1, 6, "found \"SHOW\"");
        err(&"(".repeat(1_000_000), 1, 1, "found \"(\"");
        err(
            &format!("CREATE DATABASE {}", "a".repeat(1_000_000)),
            1,
            17,
            "longer than 64",
        );
        // Far into the input, positions stay exact, and whitespace and comments of any length
        // are read through.
        err(
            &format!("{}SHOW FOO", "\n".repeat(500_000)),
            500_001,
            6,
            "found \"FOO\"",
        );
        assert_eq!(
            ok(&format!("SHOW{}DATABASES", " \n\t/* c */".repeat(50_000))),
            Statement::ShowDatabases
        );
        assert_eq!(
            ok(&format!("SHOW /*{}*/ NODES", "x".repeat(1_000_000))),
            Statement::ShowNodes
        );
        err(
            &format!("SHOW '{}", "x".repeat(1_000_000)),
            1,
            6,
            "unterminated quote",
        );
    }

    #[test]
    fn mangled_statements_never_panic() {
        let seeds = [
            "CREATE DATABASE log1;",
            "DROP DATABASE 'log1'",
            "SHOW DATABASES",
            "show nodes ;",
            "SHOW CLUSTER -- c",
            "ADD CLIENT ip=192.168.0.3 db=log1 port=19091;",
            "ADD CLIENT ip = \"[fe80::1]\" db = 'x' port='1'",
            "DROP CLIENT db=`log1` ip=client-1.example",
            "ADD CLIENT\n ip=xn--bcher-kva.example\n db=\"a\"\n;",
        ];
        let interesting = b"'\"`;= \n\t-/*[]:.\\$0aZ\xc3\xa9\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut runs = 0;
        for seed in seeds {
            for _ in 0..60 {
                let mut bytes = seed.as_bytes().to_vec();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len() + 1);
                    let byte = interesting[rng.below(interesting.len())];
                    match rng.below(5) {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        2 => bytes.insert(at, byte),
                        3 => bytes.truncate(at),
                        _ => {
                            let chunk = bytes[at..].to_vec();
                            bytes.splice(at..at, chunk);
                        }
                    }
                }
                let input = String::from_utf8_lossy(&bytes);
                same_for_every_window(&input);
                let lines = input.matches('\n').count() as u64 + 1;
                if let Err(e) = parse_statement(&input) {
                    assert!(e.line >= 1 && e.line <= lines, "{input:?}: {e}");
                    assert!(e.column >= 1, "{input:?}: {e}");
                    assert!(!e.message.is_empty(), "{input:?}");
                }
                runs += 1;
            }
        }
        assert!(runs >= 500);
    }
}

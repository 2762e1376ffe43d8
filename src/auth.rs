//! Who may use a node's HTTP API: the bearer token of `BO_API_TOKEN`.
//!
//! When the token is set, every request through [`require_token`] must carry
//! `Authorization: Bearer <token>`; anything else is answered 401. `GET /events` also takes
//! `?token=<token>` ([`require_token_or_query`]): a browser's `EventSource` cannot set
//! headers. The comparison takes the same time whatever the presented value (both sides are
//! hashed, then compared with `subtle`), and the token is never printed: [`ApiToken`]'s
//! `Debug` hides it. `/api`, `/cmd`, `/events` and `/metrics` are behind it; `GET /health`
//! stays open, and so does the page's shell (`GET /`, `/page.js`), which holds no cluster
//! data. The MySQL port takes the token as the password ([`ApiToken::mysql_hash`]).

use std::fmt;
use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::reply::retcode;

/// The token a client must present, as set in `BO_API_TOKEN`.
#[derive(Clone)]
pub struct ApiToken {
    digest: [u8; 32],
    /// `SHA1(SHA1(token))`: all `mysql_native_password` needs to check a login.
    mysql: [u8; crate::mysql::auth::SALT_LEN],
}

/// Why a `BO_API_TOKEN` value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("must not be empty; unset it to leave the API open")]
    Empty,
    #[error("must be printable ASCII without spaces (it travels in an HTTP header)")]
    NotPrintable,
}

impl ApiToken {
    /// Parses a token: printable ASCII, no spaces, not empty.
    pub fn new(value: &str) -> Result<ApiToken, TokenError> {
        if value.is_empty() {
            return Err(TokenError::Empty);
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotPrintable);
        }
        Ok(ApiToken {
            digest: sha256(value.as_bytes()),
            mysql: crate::mysql::auth::stored_hash(value.as_bytes()),
        })
    }

    /// What the MySQL port keeps to check that a client's password is the token.
    pub fn mysql_hash(&self) -> &[u8; crate::mysql::auth::SALT_LEN] {
        &self.mysql
    }

    /// Whether `presented` is the token, in time that does not depend on where they differ
    /// (nor on the presented length: only digests are compared).
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.digest.ct_eq(&sha256(presented)))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<hidden>)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Logs a loud warning when the API is open (no token) to more than this machine.
pub fn warn_if_open(token: Option<&ApiToken>, http: SocketAddr) {
    if token.is_none() && !http.ip().is_loopback() {
        tracing::warn!(
            http = %http,
            "BO_API_TOKEN is not set and the HTTP API listens on {http}, beyond this machine: ANYONE who reaches it can run any statement, DROP CLIENT and DROP DATABASE included. Set BO_API_TOKEN, or bind BO_HTTP to 127.0.0.1."
        );
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this node requires an API token: send the header \"Authorization: Bearer <token>\" with the token set in BO_API_TOKEN (bocluster sql --token; GET /events also takes ?token=<token>)")]
    Missing,
    #[error("the Authorization header must be \"Bearer <token>\"")]
    Malformed,
    #[error("the API token is wrong")]
    Wrong,
}

/// Checks a request's headers against `token`; `None` lets everything through.
pub fn authorize(headers: &HeaderMap, token: Option<&ApiToken>) -> Result<(), AuthError> {
    let Some(token) = token else { return Ok(()) };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let presented = value
        .as_bytes()
        .strip_prefix(b"Bearer ")
        .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
        .ok_or(AuthError::Malformed)?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// [`authorize`], or else the `token` parameter of the query string (`uri_query` is the part
/// after `?`). A header, when present, decides alone.
pub fn authorize_with_query(
    headers: &HeaderMap,
    uri_query: Option<&str>,
    token: Option<&ApiToken>,
) -> Result<(), AuthError> {
    let Some(expected) = token else { return Ok(()) };
    if headers.contains_key(header::AUTHORIZATION) {
        return authorize(headers, token);
    }
    let presented = uri_query.and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned())
    });
    match presented {
        None => Err(AuthError::Missing),
        Some(value) if expected.matches(value.as_bytes()) => Ok(()),
        Some(_) => Err(AuthError::Wrong),
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"retcode": retcode::UNAUTHORIZED, "errmsg": self.to_string()})),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// `router` with every route behind the token (no check when `token` is `None`).
pub fn require_token<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: Option<ApiToken>,
) -> Router<S> {
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let verdict = authorize(request.headers(), token.as_ref());
        async move {
            match verdict {
                Ok(()) => next.run(request).await,
                Err(e) => e.into_response(),
            }
        }
    }))
}

/// [`require_token`] that also accepts `?token=<token>` (for `GET /events`, whose browser
/// client cannot send headers).
pub fn require_token_or_query<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: Option<ApiToken>,
) -> Router<S> {
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let verdict =
            authorize_with_query(request.headers(), request.uri().query(), token.as_ref());
        async move {
            match verdict {
                Ok(()) => next.run(request).await,
                Err(e) => e.into_response(),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn tokens_are_checked() {
        let token = ApiToken::new("s3cret-token").unwrap();
        let check = |h: Option<&str>| authorize(&headers(h), Some(&token));
        assert_eq!(check(Some("Bearer s3cret-token")), Ok(()));
        assert_eq!(check(Some("bearer s3cret-token")), Ok(()));
        assert_eq!(check(None), Err(AuthError::Missing));
        assert_eq!(check(Some("Basic czNjcmV0")), Err(AuthError::Malformed));
        assert_eq!(check(Some("Bearer s3cret-toke")), Err(AuthError::Wrong));
        assert_eq!(check(Some("Bearer s3cret-token2")), Err(AuthError::Wrong));
        assert_eq!(check(Some("Bearer ")), Err(AuthError::Wrong));
        // No token configured: open.
        assert_eq!(authorize(&headers(None), None), Ok(()));
    }

    #[test]
    fn the_query_token_is_checked_when_no_header_is_sent() {
        let token = ApiToken::new("s3cret&t%ken").unwrap();
        let check =
            |h: Option<&str>, q: Option<&str>| authorize_with_query(&headers(h), q, Some(&token));
        assert_eq!(check(None, Some("token=s3cret%26t%25ken")), Ok(()));
        assert_eq!(check(None, Some("x=1&token=s3cret%26t%25ken")), Ok(()));
        assert_eq!(check(None, Some("token=s3cret")), Err(AuthError::Wrong));
        assert_eq!(check(None, Some("token=")), Err(AuthError::Wrong));
        assert_eq!(check(None, Some("other=1")), Err(AuthError::Missing));
        assert_eq!(check(None, None), Err(AuthError::Missing));
        // A header decides alone, even beside a right query token.
        assert_eq!(
            check(Some("Bearer nope"), Some("token=s3cret%26t%25ken")),
            Err(AuthError::Wrong)
        );
        assert_eq!(check(Some("Bearer s3cret&t%ken"), None), Ok(()));
        assert_eq!(authorize_with_query(&headers(None), None, None), Ok(()));
    }

    #[test]
    fn the_mysql_hash_is_that_of_the_token() {
        let token = ApiToken::new("s3cret-token").unwrap();
        assert_eq!(
            token.mysql_hash(),
            &crate::mysql::auth::stored_hash(b"s3cret-token")
        );
    }

    #[test]
    fn bad_tokens_are_refused_and_none_is_printed() {
        assert_eq!(ApiToken::new("").unwrap_err(), TokenError::Empty);
        assert_eq!(ApiToken::new("a b").unwrap_err(), TokenError::NotPrintable);
        assert_eq!(ApiToken::new("é").unwrap_err(), TokenError::NotPrintable);
        let token = ApiToken::new("do-not-print-me").unwrap();
        assert!(!format!("{token:?}").contains("do-not-print-me"));
    }
}

//! The bearer token: who may change things or read data.
//!
//! Only the token's SHA-256 digest is kept. A given token is hashed and the two 32-byte
//! digests are compared without an early exit, so the time a refusal takes tells neither
//! the token's length nor how much of it a guess matched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{AdminState, ApiError};

/// The admin token, as its digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Whether `given` is the token: its digest compared in full with the token's.
    pub fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let diff = self
            .digest
            .iter()
            .zip(&given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// Whether `headers` carry the token (in one `Authorization` header): `Ok`, or the
/// refusal to answer (403 when no token is configured, 401 when it is missing or wrong).
pub(crate) fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this call needs the admin token and none is configured: start sluice with SLUICE_ADMIN_TOKEN set to enable it",
        ));
    };
    let mut given = headers.get_all(header::AUTHORIZATION).iter();
    let given = match (given.next(), given.next()) {
        (Some(value), None) => value.to_str().ok().and_then(bearer),
        _ => None,
    };
    match given {
        Some(given) if token.matches(given) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <SLUICE_ADMIN_TOKEN>)",
        )),
    }
}

/// The token of an `Authorization` value: the scheme `Bearer` in any case (RFC 9110
/// §11.1), spaces or tabs, the token.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim_start_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `headers` carry the token (for answers that show more to its holder).
pub(crate) fn has_token(state: &AdminState, headers: &HeaderMap) -> bool {
    authorize(state, headers).is_ok()
}

/// Middleware of the routes that need the token: refuses before the handler runs, so
/// before any body is read.
pub(crate) async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            let mut response = refused.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_matches() {
        let token = Token::new("s3cret-token");
        assert!(token.matches("s3cret-token"));
        for wrong in [
            "",
            "s",
            "s3cret-toke",
            "s3cret-token ",
            "S3cret-token",
            "x".repeat(4096).as_str(),
        ] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn the_scheme_is_read_in_any_case() {
        for value in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "Bearer   s3cret",
            "Bearer\ts3cret ",
        ] {
            assert_eq!(bearer(value), Some("s3cret"), "{value:?}");
        }
        for value in [
            "Basic s3cret",
            "Bearers3cret",
            "Bearer",
            "Bearer  ",
            "s3cret",
        ] {
            assert_eq!(bearer(value), None, "{value:?}");
        }
    }

    #[test]
    fn the_token_is_not_kept_or_shown() {
        let token = Token::new("s3cret-token");
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}

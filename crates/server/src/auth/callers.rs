//! The callers of the API as axum extractors: a handler names who may call it in its
//! signature instead of fetching and checking a token by hand.
//!
//! Each extractor checks in the order the API always has, because that order decides which
//! error a request with several problems hears: a JSON body is read before the token or
//! key in it or beside it is checked, and a query string is read before its token is.
//! Checking the caller records its operator in the request's span and spends one request of
//! the operator's rate limit, as `authenticate` and `admit_operator` always did.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chargegate_core::connector::ConnectorCaller;
use chargegate_core::token::Token;
use serde_json::{Map, Value};

use super::connector::connector;
use super::{Caller, authenticate, vouch};
use crate::edge::error::ApiError;
use crate::edge::extract::{self, QueryPairs, read_object};
use crate::state::AppState;

/// A caller whose token travels in the JSON body's `token` field or as `Authorization:
/// Bearer` (both: they must be equal), with the body. The body is read first, so a bad
/// body is what a request with a bad body and a bad token hears.
#[derive(Debug)]
pub struct BodyCaller {
    pub caller: Caller,
    pub token: Token,
    pub body: Map<String, Value>,
}

impl FromRequest<AppState> for BodyCaller {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = read_object(&parts.headers, body).await?;
        let token = extract::token(body.get("token"), &parts.headers)?;
        let caller = authenticate(state, &token).await?;
        Ok(BodyCaller {
            caller,
            token,
            body,
        })
    }
}

/// A GET's caller, whose token travels as the `token` query parameter or as
/// `Authorization: Bearer`, with the query's parameters, each given at most once. The
/// query is checked first, then the token.
#[derive(Debug)]
pub struct QueryCaller {
    pub caller: Caller,
    pub query: QueryPairs,
}

impl FromRequestParts<AppState> for QueryCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let query = QueryPairs::from_request_parts(parts, state).await?;
        let token = extract::text_token(query.get("token"), &parts.headers)?;
        let caller = authenticate(state, &token).await?;
        Ok(QueryCaller { caller, query })
    }
}

/// The token of a batch call (body or bearer, as for [`BodyCaller`]), with the body, once
/// a secret of this database is seen to have signed it. Whether the token is known,
/// unreleased and unexpired is left to the batch itself: PostgreSQL reads the token in the
/// statement that locks the charges rather than in a round trip of its own.
#[derive(Debug)]
pub struct VouchedToken {
    pub token: Token,
    pub body: Map<String, Value>,
}

impl FromRequest<AppState> for VouchedToken {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = read_object(&parts.headers, body).await?;
        let token = extract::token(body.get("token"), &parts.headers)?;
        vouch(state, &token).await?;
        Ok(VouchedToken { token, body })
    }
}

/// The connector key of a request without a body (`Authorization: Bearer cgc_…`),
/// checked before anything else about the request.
#[derive(Debug)]
pub struct ConnectorKey(pub ConnectorCaller);

impl FromRequestParts<AppState> for ConnectorKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        connector(state, &parts.headers).await.map(ConnectorKey)
    }
}

/// A connector call with a JSON body: the body is read first, then the connector key.
#[derive(Debug)]
pub struct ConnectorBody(pub ConnectorCaller, pub Map<String, Value>);

impl FromRequest<AppState> for ConnectorBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let body = read_object(&parts.headers, body).await?;
        let caller = connector(state, &parts.headers).await?;
        Ok(ConnectorBody(caller, body))
    }
}

//! Checking what a request sends, the same way in every wing: field validation that answers
//! 422 `validation_failed` with one message per field, and request bodies read up to a limit.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use crate::http::error::ApiError;

/// Messages about invalid fields, by field name, gathered before answering.
pub type FieldErrors = BTreeMap<&'static str, String>;

/// Checks a human-entered name: 1 to `max` characters after trimming, no control characters.
pub fn check_name(fields: &mut FieldErrors, field: &'static str, name: &str, max: usize) {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max || name.chars().any(char::is_control) {
        fields.insert(
            field,
            format!("must be 1 to {max} characters without control characters"),
        );
    }
}

/// Ok when no field is invalid; 422 `validation_failed` with every message otherwise.
pub fn validated(fields: FieldErrors) -> Result<(), ApiError> {
    if fields.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(fields))
    }
}

/// 422 `validation_failed` about one field.
pub fn field_error(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::validation(BTreeMap::from([(field, message.into())]))
}

/// Reads a request body of at most `limit` bytes; a larger one is refused with `too_big`
/// before it is read whole (at once when it announces its length).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    too_big: impl Fn(String) -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = announced
        && length > limit
    {
        return Err(too_big(format!(
            "the body is {length} bytes; the limit is {limit} bytes"
        )));
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_big(format!(
                "the body is larger than the limit of {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

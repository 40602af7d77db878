//! Refusals as HTTP answers: JSON `{ code, message, retryable, details }`
//! with the gRPC API's stable codes and a status that fits the code; and
//! the extractors that turn a body, a query or a path the handlers cannot
//! read into such a refusal, never a panic or axum's plain-text answer.

use super::model::{ErrorBody, ErrorDetails};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ledger_proto::v1 as api;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: an error is passed up through every handler's `Result`.
    pub body: Box<ErrorBody>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: Box::new(ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                retryable: status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE,
                details: ErrorDetails::default(),
            }),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A refusal of the ledger (a command's or the node's), with the status
    /// its code calls for.
    pub fn refused(error: &api::Error) -> Self {
        Self {
            status: status_of(&error.code, error.retryable),
            body: Box::new(body_of(error)),
        }
    }

    /// A refusal of a whole gRPC call: its message leads with the stable
    /// code ("INVALID_AMOUNT: ..."), or the gRPC code stands for it.
    pub fn from_status(status: &tonic::Status) -> Self {
        let (code, message) = crate::api::split_code(status.message());
        let code = code.unwrap_or_else(|| grpc_code_name(status.code()));
        let retryable = matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted | tonic::Code::Aborted
        );
        let mut error = Self::new(status_of(code, retryable), code, message);
        error.body.retryable = retryable;
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(*self.body)).into_response()
    }
}

/// What a call of the gRPC API answered, or its refusal.
pub fn answered<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

/// The JSON of a refusal of the ledger.
pub fn body_of(error: &api::Error) -> ErrorBody {
    let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    ErrorBody {
        code: error.code.clone(),
        message: error.message.clone(),
        retryable: error.retryable,
        details: ErrorDetails {
            redirect: text(&error.redirect),
            available_local: text(&error.available_local),
            available_global: text(&error.available_global),
        },
    }
}

fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_REQUEST",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::ResourceExhausted => "TOO_MANY_REQUESTS",
        tonic::Code::Unavailable | tonic::Code::Aborted => "UNAVAILABLE",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// The HTTP status of a stable code: 400 for a request that can never be
/// right, 404 for what does not exist, 409 for a clash with what exists,
/// 422 for a rule of the ledger that refuses it now, 429 for too much at
/// once, 503 for a node or region that cannot answer now. A code this
/// table does not know (a newer node's) goes by whether it is retryable.
pub fn status_of(code: &str, retryable: bool) -> StatusCode {
    known_status(code).unwrap_or(if retryable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    })
}

fn known_status(code: &str) -> Option<StatusCode> {
    Some(match code {
        "INVALID_REQUEST" | "INVALID_AMOUNT" | "INVALID_FIELD" | "INVALID_TIMEOUT"
        | "INVALID_ID" | "SAME_ACCOUNT" | "UNKNOWN_REGION" | "LINKED_CHAIN_OPEN"
        | "MALFORMED_JSON" | "INVALID_JSON" | "SAME_REGION" => StatusCode::BAD_REQUEST,
        "UNKNOWN_ACCOUNT" | "TRANSFER_NOT_FOUND" | "NOT_FOUND" | "NO_ROUTE" => {
            StatusCode::NOT_FOUND
        }
        "ACCOUNT_EXISTS"
        | "IDEMPOTENCY_CONFLICT"
        | "PENDING_ALREADY_RESOLVED"
        | "WITHDRAWAL_IN_PROGRESS"
        | "CURRENCY_CONFLICT"
        | "ALREADY_EXISTS" => StatusCode::CONFLICT,
        "INSUFFICIENT_FUNDS"
        | "ACCOUNT_FROZEN"
        | "ACCOUNT_CLOSED"
        | "CURRENCY_MISMATCH"
        | "UNKNOWN_CURRENCY"
        | "NOT_PENDING"
        | "NOT_REFUNDABLE"
        | "PENDING_EXPIRED"
        | "PENDING_NOT_EXPIRED"
        | "POST_EXCEEDS_PENDING"
        | "REFUND_EXCEEDS_PAYMENT"
        | "BALANCE_OVERFLOW"
        | "POOL_NOT_APPLICABLE"
        | "LINKED_CHAIN_FAILED"
        | "TARGET_IN_OTHER_REGION"
        | "RELEASE_NOT_FOUND"
        | "FAILED_PRECONDITION" => StatusCode::UNPROCESSABLE_ENTITY,
        "TOO_MANY_REQUESTS" | "ACCOUNT_BUSY" => StatusCode::TOO_MANY_REQUESTS,
        "REQUEST_TIMEOUT" => StatusCode::REQUEST_TIMEOUT,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "UNSUPPORTED_MEDIA_TYPE" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "NOT_LEADER" | "NOT_ORIGIN" | "UNAVAILABLE" | "OUTCOME_UNKNOWN" | "REGION_UNAVAILABLE"
        | "CLOCK_DRIFT" | "RETRY" | "STALE_REPLICA" | "STALE_STAMP" | "GRANT_OUT_OF_ORDER"
        | "PULL_TIMED_OUT" | "DEADLINE_EXCEEDED" => StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => return None,
    })
}

/// A JSON body, refused with a clear message when it is not one, not
/// JSON, not of the request's shape or too large.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_refusal(&rejection)),
        }
    }
}

/// A JSON body that may be left out (an empty body is its default).
pub struct OptionalBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalBody<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|rejection| too_large_or(&rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let Body(value) = Body::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

fn too_large_or(text: &str) -> ApiError {
    if text.to_ascii_lowercase().contains("length limit") {
        super::limits::too_large()
    } else {
        ApiError::bad_request(
            "INVALID_REQUEST",
            format!("the body cannot be read: {text}"),
        )
    }
}

fn json_refusal(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the body as JSON, with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(
            "MALFORMED_JSON",
            format!("the body is not JSON: {}", rejection.body_text()),
        ),
        JsonRejection::JsonDataError(_) => ApiError::bad_request(
            "INVALID_JSON",
            format!(
                "the body is not of this request's shape: {}",
                rejection.body_text()
            ),
        ),
        JsonRejection::BytesRejection(_) => too_large_or(&rejection.body_text()),
        _ => ApiError::bad_request("INVALID_REQUEST", rejection.body_text()),
    }
}

/// Query parameters, refused with a clear message when they do not parse.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_refusal(&rejection)),
        }
    }
}

/// Path parameters, refused with a clear message when they do not parse
/// (text that is not UTF-8, say).
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::bad_request(
                "INVALID_REQUEST",
                format!("the path: {}", rejection.body_text()),
            )),
        }
    }
}

fn query_refusal(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(
        "INVALID_REQUEST",
        format!("the query string: {}", rejection.body_text()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_leads_with_a_code_keeps_it() {
        let error = ApiError::from_status(&tonic::Status::invalid_argument(
            "INVALID_AMOUNT: amount: \"1x\" is not an amount",
        ));
        assert_eq!(error.body.code, "INVALID_AMOUNT");
        assert_eq!(error.body.message, "amount: \"1x\" is not an amount");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        let error =
            ApiError::from_status(&tonic::Status::invalid_argument("3 commands: at most 2"));
        assert_eq!(error.body.code, "INVALID_REQUEST");
        let error = ApiError::from_status(&tonic::Status::unavailable(
            "REGION_UNAVAILABLE: region 2 cannot confirm",
        ));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.body.retryable);
    }

    #[test]
    fn every_code_of_the_core_has_its_status() {
        for code in ledger_reservations::Reject::CODES {
            assert!(
                known_status(code).is_some(),
                "{code} has no status of its own"
            );
        }
    }

    #[test]
    fn codes_have_fitting_statuses() {
        for (code, retryable, status) in [
            ("INSUFFICIENT_FUNDS", true, 422),
            ("UNKNOWN_ACCOUNT", false, 404),
            ("IDEMPOTENCY_CONFLICT", false, 409),
            ("NOT_LEADER", true, 503),
            ("OUTCOME_UNKNOWN", true, 503),
            ("ACCOUNT_BUSY", true, 429),
            ("INVALID_AMOUNT", false, 400),
        ] {
            assert_eq!(status_of(code, retryable).as_u16(), status, "{code}");
        }
    }
}

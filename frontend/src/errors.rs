//! Errors as Matrix shapes them: an HTTP status and `{"errcode", "error"}`. Database errors are
//! mapped by SQLSTATE exactly as the README's "Errors" table says.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, errcode, message: message.into() }
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", message)
    }
    pub fn invalid_param(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
    }
    pub fn missing_param(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "M_MISSING_PARAM", message)
    }
    pub fn not_json(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", message)
    }
    pub fn bad_json(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", message)
    }
    /// MSC3743: an unknown endpoint is 404 M_UNRECOGNIZED.
    pub fn unrecognized_path() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request")
    }
    /// MSC3743: a known path with a method it does not take is 405 M_UNRECOGNIZED.
    pub fn unrecognized_method() -> ApiError {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Unrecognized request method for this path")
    }
    pub fn limit_exceeded() -> ApiError {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", "Too many requests in flight; retry later")
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN", message)
    }
    /// Another server failed us (no answer, or a malformed one).
    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", message)
    }
    /// This server's fault: the details go to the log, not to the remote server.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        eprintln!("roomserver-http: internal error: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "Internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = axum::Json(json!({"errcode": self.errcode, "error": self.message})).into_response();
        *response.status_mut() = self.status;
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Which SQL call raised the error, where one SQLSTATE means different things (README table:
/// `55000` and `42501` have a row for `prepare_event` of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// The federation read functions.
    Read,
    /// `prepare_event` (make_join and local sends: later stages).
    PrepareEvent,
}

/// How a response maps a SQLSTATE: the README's "Errors" table. `None`: this server's fault (500).
/// `detail` is the error's DETAIL (prepare_event's auth refusal says `rule: …` there).
pub fn status_of_sqlstate(code: &str, detail: Option<&str>, call: Call) -> Option<(StatusCode, &'static str)> {
    let bad_request = |errcode| Some((StatusCode::BAD_REQUEST, errcode));
    match code {
        "22P02" => bad_request("M_NOT_JSON"),
        "22P05" | "22023" | "22003" | "22001" => bad_request("M_BAD_JSON"),
        "54000" => Some((StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE")),
        "0A000" => bad_request("M_UNSUPPORTED_ROOM_VERSION"),
        "P0002" => Some((StatusCode::NOT_FOUND, "M_NOT_FOUND")),
        "22000" => bad_request("M_INVALID_PARAM"),
        "22004" => bad_request("M_MISSING_PARAM"),
        // prepare_event in a room stored only as outliers: the server is not in the room. For
        // the reads it is roomserver.server_name unset: misconfigured.
        "55000" if call == Call::PrepareEvent => Some((StatusCode::FORBIDDEN, "M_FORBIDDEN")),
        // prepare_event's refusal by the auth rules; without the rule, missing privileges:
        // misconfigured.
        "42501" if call == Call::PrepareEvent && detail.is_some_and(|d| d.starts_with("rule:")) => {
            Some((StatusCode::FORBIDDEN, "M_FORBIDDEN"))
        }
        // A standby (writes belong on the primary), or the database going away.
        "25006" | "57P01" | "57P02" | "57P03" | "53300" => Some((StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN")),
        c if c.starts_with("08") => Some((StatusCode::SERVICE_UNAVAILABLE, "M_UNKNOWN")),
        // 23503 (fetch the missing events), 2202E (admin), 40001/40P01 (retries exhausted),
        // 55000/42501 of the reads, XX001 (our storage), XX000 (a bug): all ours to fix.
        _ => None,
    }
}

impl ApiError {
    pub fn from_db(error: &tokio_postgres::Error, call: Call) -> ApiError {
        let Some(db) = error.as_db_error() else {
            // No SQLSTATE: the connection failed or closed.
            eprintln!("roomserver-http: database unavailable: {error}");
            return ApiError::unavailable("The database is unavailable");
        };
        match status_of_sqlstate(db.code().code(), db.detail(), call) {
            Some((status, errcode)) if status.is_client_error() => ApiError::new(status, errcode, db.message()),
            Some((status, errcode)) => {
                eprintln!("roomserver-http: database error {}: {}", db.code().code(), db.message());
                ApiError::new(status, errcode, "The database is unavailable")
            }
            None => ApiError::internal(format_args!("SQLSTATE {}: {}", db.code().code(), db.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_as_the_readme_table_says() {
        let table = [
            ("22P02", Some((400, "M_NOT_JSON"))),
            ("22P05", Some((400, "M_BAD_JSON"))),
            ("22023", Some((400, "M_BAD_JSON"))),
            ("22003", Some((400, "M_BAD_JSON"))),
            ("22001", Some((400, "M_BAD_JSON"))),
            ("54000", Some((413, "M_TOO_LARGE"))),
            ("0A000", Some((400, "M_UNSUPPORTED_ROOM_VERSION"))),
            ("P0002", Some((404, "M_NOT_FOUND"))),
            ("22000", Some((400, "M_INVALID_PARAM"))),
            ("22004", Some((400, "M_MISSING_PARAM"))),
            ("23503", None),
            ("2202E", None),
            ("55000", None),
            ("25006", Some((503, "M_UNKNOWN"))),
            ("42501", None),
            ("40001", None),
            ("40P01", None),
            ("XX001", None),
            ("XX000", None),
            ("08006", Some((503, "M_UNKNOWN"))),
        ];
        for (code, expected) in table {
            let got = status_of_sqlstate(code, None, Call::Read).map(|(s, e)| (s.as_u16(), e));
            assert_eq!(got, expected, "{code}");
        }
        let forbidden = Some((StatusCode::FORBIDDEN, "M_FORBIDDEN"));
        assert_eq!(status_of_sqlstate("55000", None, Call::PrepareEvent), forbidden);
        assert_eq!(status_of_sqlstate("42501", Some("rule: sender must be joined"), Call::PrepareEvent), forbidden);
        assert_eq!(status_of_sqlstate("42501", None, Call::PrepareEvent), None, "privileges: misconfigured");
        assert_eq!(status_of_sqlstate("42501", Some("rule: x"), Call::Read), None);
        assert_eq!(status_of_sqlstate("P0002", None, Call::PrepareEvent), Some((StatusCode::NOT_FOUND, "M_NOT_FOUND")));
    }
}

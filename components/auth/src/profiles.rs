//! The users service, as registration needs it: creating the new user's
//! profile through service chaining.
use spin_sdk::http::{Method, Request, Response};

/// `POST /internal/users` of the users service (idempotent per user id).
const CREATE_PROFILE_URL: &str = "http://users.spin.internal/internal/users";

/// Creates the profile of user `user_id`, or finds it already created with
/// the same email (a retried registration). `headers` are the request's
/// propagated headers (request id, trace context). The error says why the
/// profile may not exist.
pub async fn create(headers: Vec<(String, String)>, user_id: &str, email: &str, name: &str) -> Result<(), String> {
    let body = serde_json::json!({ "user_id": user_id, "email": email, "name": name });
    let request = Request::builder()
        .method(Method::Post)
        .uri(CREATE_PROFILE_URL)
        .headers(headers)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build();
    let response: Response =
        spin_sdk::http::send(request).await.map_err(|e| format!("calling the users service: {e}"))?;
    match *response.status() {
        200 | 201 => Ok(()),
        status => Err(format!(
            "the users service answered {status}: {}",
            String::from_utf8_lossy(response.body()).chars().take(300).collect::<String>()
        )),
    }
}

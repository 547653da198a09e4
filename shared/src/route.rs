//! In-function routing: a function's route table as data, matched against method and path.
//!
//! The host picks the function by the manifest's routes; this picks the endpoint inside it.

use crate::ApiError;

/// One endpoint of a function, e.g. `GET /v1/search/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<E> {
    pub method: &'static str,
    /// Literal segments, or `:name` for one segment captured as a parameter.
    pub path: &'static str,
    pub endpoint: E,
}

/// A route table entry, for `const` tables: `at("GET", "/v1/x/:id", Endpoint::X)`.
pub const fn at<E>(method: &'static str, path: &'static str, endpoint: E) -> Route<E> {
    Route {
        method,
        path,
        endpoint,
    }
}

/// A matched endpoint with its captured path parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint<E> {
    pub endpoint: E,
    pub params: Vec<(&'static str, String)>,
}

impl<E> Endpoint<E> {
    /// The value captured for `:name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Finds the endpoint for `method` and `path`: 404 when no route has the path, 405 (with the allowed
/// methods) when routes have the path but not the method.
pub fn resolve<E: Copy>(
    table: &[Route<E>],
    method: &str,
    path: &str,
) -> Result<Endpoint<E>, ApiError> {
    let mut allowed: Vec<&str> = Vec::new();
    for route in table {
        let Some(params) = capture(route.path, path) else {
            continue;
        };
        if route.method.eq_ignore_ascii_case(method) {
            return Ok(Endpoint {
                endpoint: route.endpoint,
                params,
            });
        }
        if !allowed.contains(&route.method) {
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NotFound(format!("no endpoint at {path}")))
    } else {
        Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allowed: allowed.join(", "),
        })
    }
}

fn capture(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix(':') {
                    if g.is_empty() {
                        return None;
                    }
                    params.push((name, g.to_string()));
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum E {
        Health,
        GetDoc,
        DeleteDoc,
    }

    const TABLE: &[Route<E>] = &[
        Route {
            method: "GET",
            path: "/v1/ingest/health",
            endpoint: E::Health,
        },
        Route {
            method: "GET",
            path: "/v1/projects/:project/documents/:id",
            endpoint: E::GetDoc,
        },
        Route {
            method: "DELETE",
            path: "/v1/projects/:project/documents/:id",
            endpoint: E::DeleteDoc,
        },
    ];

    /// The endpoint and captured parameters, or the error status.
    type Expected<'a> = Result<(E, &'a [(&'a str, &'a str)]), u16>;

    fn check(method: &str, path: &str, expected: Expected<'_>) {
        let got = resolve(TABLE, method, path);
        match (got, expected) {
            (Ok(found), Ok((endpoint, params))) => {
                assert_eq!(found.endpoint, endpoint, "{method} {path}");
                let params: Vec<(&str, String)> =
                    params.iter().map(|(k, v)| (*k, v.to_string())).collect();
                assert_eq!(found.params, params, "{method} {path}");
            }
            (Err(error), Err(status)) => assert_eq!(error.status(), status, "{method} {path}"),
            (got, expected) => panic!("{method} {path}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn routes() {
        check("GET", "/v1/ingest/health", Ok((E::Health, &[])));
        check("get", "/v1/ingest/health/", Ok((E::Health, &[])));
        check(
            "GET",
            "/v1/projects/p1/documents/d9",
            Ok((E::GetDoc, &[("project", "p1"), ("id", "d9")])),
        );
        check(
            "DELETE",
            "/v1/projects/p1/documents/d9",
            Ok((E::DeleteDoc, &[("project", "p1"), ("id", "d9")])),
        );
        check("POST", "/v1/projects/p1/documents/d9", Err(405));
        check("GET", "/v1/projects/p1/documents/", Err(404));
        check("GET", "/v1/projects//documents/d9", Err(404));
        check("GET", "/v1/ingest/health/extra", Err(404));
        check("GET", "/", Err(404));
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let error = resolve(TABLE, "PUT", "/v1/projects/a/documents/b").unwrap_err();
        assert_eq!(error.headers(), vec![("allow", "GET, DELETE".to_string())]);
    }
}

//! Spin's HTTP routing: exact paths, `:name` segments and trailing `/...` wildcards, most specific wins.

use std::cmp::Ordering;

use anyhow::bail;

use crate::manifest::{HttpRoute, HttpTrigger};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One public route of the application.
#[derive(Debug, Clone)]
struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    component: String,
}

impl RoutePattern {
    fn parse(raw: &str, component: &str) -> anyhow::Result<Self> {
        let (body, wildcard) = match raw.strip_suffix("/...") {
            Some(body) => (body, true),
            None if raw == "..." => ("", true),
            None => (raw, false),
        };
        let mut segments = Vec::new();
        for part in body.split('/').filter(|s| !s.is_empty()) {
            if part == "..." {
                bail!("route `{raw}`: `...` is allowed only as the last segment");
            }
            segments.push(match part.strip_prefix(':') {
                Some("") => bail!("route `{raw}`: a `:` segment needs a name"),
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(part.to_string()),
            });
        }
        Ok(Self {
            raw: raw.to_string(),
            segments,
            wildcard,
            component: component.to_string(),
        })
    }

    /// The route as the component sees it in `spin-component-route`: without the wildcard.
    fn component_route(&self) -> &str {
        self.raw
            .strip_suffix("/...")
            .or_else(|| self.raw.strip_suffix("..."))
            .unwrap_or(&self.raw)
    }

    fn matches(&self, path: &[&str]) -> Option<(Vec<(String, String)>, usize)> {
        if path.len() < self.segments.len() || (!self.wildcard && path.len() != self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (want, got) in self.segments.iter().zip(path) {
            match want {
                Segment::Literal(literal) if literal == got => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), (*got).to_string())),
            }
        }
        Some((params, self.segments.len()))
    }

    /// Orders two routes that both match a path: literal beats parameter, and at the point where one
    /// route ends exactly the other's wildcard loses.
    fn specificity(&self, other: &Self) -> Ordering {
        let rank = |s: &Segment| match s {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
        };
        for i in 0.. {
            match (self.segments.get(i), other.segments.get(i)) {
                (Some(a), Some(b)) => match rank(a).cmp(&rank(b)) {
                    Ordering::Equal => continue,
                    decided => return decided,
                },
                (None, None) => return other.wildcard.cmp(&self.wildcard),
                (Some(_), None) => return Ordering::Greater,
                (None, Some(_)) => return Ordering::Less,
            }
        }
        Ordering::Equal
    }
}

/// The result of routing a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    /// The route as written in the manifest (`spin-matched-route`, `spin-raw-component-route`).
    pub raw_route: String,
    /// The route without its wildcard (`spin-component-route`).
    pub component_route: String,
    /// What the wildcard matched, with a leading '/', or empty (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures (`spin-path-match-<name>`).
    pub params: Vec<(String, String)>,
}

/// The application's route table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<RoutePattern>,
}

impl Router {
    /// Builds the table; two triggers on the same route are an error, as silently picking one would
    /// hide a mistake.
    pub fn build(triggers: &[HttpTrigger]) -> anyhow::Result<Self> {
        let mut routes: Vec<RoutePattern> = Vec::new();
        for trigger in triggers {
            let HttpRoute::Path(raw) = &trigger.route else {
                continue;
            };
            let pattern = RoutePattern::parse(raw, &trigger.component)?;
            if let Some(existing) = routes.iter().find(|r| {
                r.wildcard == pattern.wildcard
                    && r.segments.len() == pattern.segments.len()
                    && r.specificity(&pattern) == Ordering::Equal
                    && same_literals(&r.segments, &pattern.segments)
            }) {
                bail!(
                    "duplicate route: `{}` (component `{}`) and `{}` (component `{}`) match the same paths",
                    existing.raw,
                    existing.component,
                    pattern.raw,
                    pattern.component
                );
            }
            routes.push(pattern);
        }
        Ok(Self { routes })
    }

    /// Finds the most specific public route for a request path.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        Self::best(self.routes.iter(), path)
    }

    /// Routes a chained request (`http://<component>.spin.internal/<path>`) among the target's own
    /// routes only, so it sees the headers it would see from outside. A path none of them takes
    /// (and any path to a private component) gets Spin's synthetic match: route `/...`, the whole
    /// path as path info.
    pub fn route_to(&self, component: &str, path: &str) -> RouteMatch {
        let own = self.routes.iter().filter(|r| r.component == component);
        Self::best(own, path).unwrap_or_else(|| RouteMatch {
            component: component.to_string(),
            raw_route: "/...".to_string(),
            component_route: String::new(),
            path_info: path.to_string(),
            params: Vec::new(),
        })
    }

    fn best<'a>(routes: impl Iterator<Item = &'a RoutePattern>, path: &str) -> Option<RouteMatch> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        struct Candidate<'a> {
            route: &'a RoutePattern,
            params: Vec<(String, String)>,
            consumed: usize,
        }
        let mut best: Option<Candidate> = None;
        for route in routes {
            let Some((params, consumed)) = route.matches(&segments) else {
                continue;
            };
            let better = best
                .as_ref()
                .is_none_or(|current| route.specificity(current.route) == Ordering::Greater);
            if better {
                best = Some(Candidate {
                    route,
                    params,
                    consumed,
                });
            }
        }
        let Candidate {
            route,
            params,
            consumed,
        } = best?;
        let path_info = if route.wildcard {
            let rest = &segments[consumed..];
            let mut info = String::new();
            for segment in rest {
                info.push('/');
                info.push_str(segment);
            }
            // Spin keeps a trailing slash: `/users/:id/...` with `/users/42/` gives `/`.
            if path.ends_with('/') {
                info.push('/');
            }
            info
        } else {
            String::new()
        };
        Some(RouteMatch {
            component: route.component.clone(),
            raw_route: route.raw.clone(),
            component_route: route.component_route().to_string(),
            path_info,
            params,
        })
    }

    /// Routes as `(route, component)`, for the start-up banner.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|r| (r.raw.clone(), r.component.clone()))
            .collect()
    }
}

fn same_literals(a: &[Segment], b: &[Segment]) -> bool {
    a.iter().zip(b).all(|(x, y)| match (x, y) {
        (Segment::Literal(x), Segment::Literal(y)) => x == y,
        (Segment::Param(_), Segment::Param(_)) => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                id: format!("{component}-http-trigger"),
                route: HttpRoute::Path(route.to_string()),
                component: component.to_string(),
            })
            .collect();
        Router::build(&triggers).unwrap()
    }

    fn check(router: &Router, path: &str, expected: Option<(&str, &str)>) {
        let got = router.route(path);
        match expected {
            None => assert_eq!(got, None, "{path}"),
            Some((component, path_info)) => {
                let got = got.unwrap_or_else(|| panic!("{path} matched nothing"));
                assert_eq!(
                    (got.component.as_str(), got.path_info.as_str()),
                    (component, path_info),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&[
            ("/...", "fallback"),
            ("/v1/...", "v1"),
            ("/v1/search/...", "search"),
            ("/v1/search/health", "health"),
            ("/v1/projects/:project/search", "param"),
            ("/v1/projects/mine/search", "literal"),
        ]);
        check(&r, "/", Some(("fallback", "/")));
        check(&r, "/v1/", Some(("v1", "/")));
        check(&r, "/v1/auth/", Some(("v1", "/auth/")));
        check(&r, "/other/page", Some(("fallback", "/other/page")));
        check(&r, "/v1", Some(("v1", "")));
        check(&r, "/v1/auth/login", Some(("v1", "/auth/login")));
        check(&r, "/v1/search", Some(("search", "")));
        check(&r, "/v1/search/query/x", Some(("search", "/query/x")));
        check(&r, "/v1/search/health", Some(("health", "")));
        check(
            &r,
            "/v1/search/health/deep",
            Some(("search", "/health/deep")),
        );
        check(&r, "/v1/projects/p1/search", Some(("param", "")));
        check(&r, "/v1/projects/mine/search", Some(("literal", "")));
    }

    #[test]
    fn exact_routes_do_not_match_longer_paths() {
        let r = router(&[("/hello", "hello")]);
        check(&r, "/hello", Some(("hello", "")));
        check(&r, "/hello/", Some(("hello", "")));
        check(&r, "/hello/world", None);
        check(&r, "/", None);
    }

    #[test]
    fn params_are_captured() {
        let r = router(&[("/users/:id/posts/...", "posts")]);
        let m = r.route("/users/42/posts/7").unwrap();
        assert_eq!(m.params, vec![("id".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "/7");
        assert_eq!(m.component_route, "/users/:id/posts");
        let r = router(&[("/users/:id/...", "user")]);
        assert_eq!(r.route("/users/42/").unwrap().path_info, "/");
        assert_eq!(r.route("/users/42").unwrap().path_info, "");
    }

    #[test]
    fn chained_requests_route_among_the_target_s_own_routes() {
        let triggers = [
            ("/a/...", "a", false),
            ("/b/exact", "b", false),
            ("", "hidden", true),
        ]
        .map(|(route, c, private)| HttpTrigger {
            id: c.into(),
            route: if private {
                HttpRoute::Private
            } else {
                HttpRoute::Path(route.into())
            },
            component: c.into(),
        });
        let r = Router::build(&triggers).unwrap();
        let a = r.route_to("a", "/a/x");
        assert_eq!(
            (a.raw_route.as_str(), a.path_info.as_str()),
            ("/a/...", "/x")
        );
        // a's route is not b's: b gets the synthetic match, as on Spin.
        let b = r.route_to("b", "/a/x");
        assert_eq!((b.component.as_str(), b.raw_route.as_str()), ("b", "/..."));
        assert_eq!(b.path_info, "/a/x");
        assert_eq!(r.route_to("b", "/b/exact").raw_route, "/b/exact");
        let hidden = r.route_to("hidden", "/any/path");
        assert_eq!(hidden.path_info, "/any/path");
        assert_eq!(r.route("/any/path"), None);
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let triggers = [("/a/...", "one"), ("/a/...", "two")].map(|(route, c)| HttpTrigger {
            id: c.into(),
            route: HttpRoute::Path(route.into()),
            component: c.into(),
        });
        let error = Router::build(&triggers).unwrap_err().to_string();
        assert!(error.contains("duplicate route"), "{error}");
    }
}

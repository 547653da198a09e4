//! The host's spin.toml loader held to Spin's own parser fixtures (`spin-manifest/` in the reference
//! data, see `tests::reference_data`) and to the project's real manifest.

use std::path::{Path, PathBuf};

use host::manifest::{self, App, HttpRoute};

/// Spin's fixtures, or `None` (the test is skipped with a notice) where the reference data is absent.
fn fixtures(test: &str) -> Option<PathBuf> {
    tests::reference_data("spin-manifest", test)
}

fn as_json(manifest: &manifest::AppManifest) -> serde_json::Value {
    serde_json::to_value(manifest).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn valid_manifests_parse_to_what_spin_parses() {
    let Some(fixtures) = fixtures("valid_manifests_parse_to_what_spin_parses") else {
        return;
    };
    for name in ["minimal", "maximal", "normalization"] {
        let toml = read(&fixtures.join(format!("{name}.toml")));
        let expected: serde_json::Value =
            serde_json::from_str(&read(&fixtures.join(format!("{name}.json")))).unwrap();
        let parsed = manifest::parse(&toml).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(as_json(&parsed), expected, "{name}");
    }
}

#[test]
fn normalisation_names_triggers_and_inline_components_as_spin_does() {
    let Some(fixtures) =
        fixtures("normalisation_names_triggers_and_inline_components_as_spin_does")
    else {
        return;
    };
    let mut parsed = manifest::parse(&read(&fixtures.join("normalization.toml"))).unwrap();
    parsed.normalize().unwrap();
    let expected = manifest::parse(&read(&fixtures.join("normalization.toml.norm"))).unwrap();
    assert_eq!(as_json(&parsed), as_json(&expected));
}

#[test]
fn invalid_manifests_are_rejected_with_spins_message() {
    let Some(fixtures) = fixtures("invalid_manifests_are_rejected_with_spins_message") else {
        return;
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures.join("invalid")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let expected = read(&path.with_extension("err"));
        let error = match manifest::parse(&read(&path)) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(error) => format!("{error:#}"),
        };
        // Spin's message is the last line; the lines above it locate the error in the TOML.
        let message = expected.trim_end().lines().last().unwrap().trim();
        assert!(
            error.contains(message),
            "{}: expected {message:?} in {error:?}",
            path.display()
        );
        let location = expected.lines().next().unwrap();
        if location.starts_with("TOML parse error at") {
            assert!(
                error.starts_with(location),
                "{}: expected location {location:?} in {error:?}",
                path.display()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn the_project_manifest_routes_each_function() {
    let app = App::load(&tests::workspace_root().join("spin.toml")).unwrap();
    let mut routes: Vec<(String, String)> = app
        .http
        .iter()
        .map(|t| match &t.route {
            HttpRoute::Path(path) => (path.clone(), t.component.clone()),
            HttpRoute::Private => panic!("no private routes yet"),
        })
        .collect();
    routes.sort();
    // Each function has its own prefix (health, access probes), and the one resource tree is split
    // among them by the most specific route.
    for name in ["auth", "ingest", "respond", "search"] {
        assert!(
            routes.contains(&(format!("/v1/{name}/..."), name.to_string())),
            "{routes:?}"
        );
    }
    let router = host::router::Router::build(&app.http).unwrap();
    for (path, component) in [
        ("/v1/auth/login", "auth"),
        ("/v1/orgs/o1/projects", "auth"),
        ("/v1/projects/p1", "auth"),
        ("/v1/projects/p1/keys", "auth"),
        ("/v1/projects/p1/members/u1", "auth"),
        ("/v1/projects/p1/documents", "ingest"),
        ("/v1/projects/p1/documents/d1/chunks", "ingest"),
        ("/v1/projects/p1/qa", "ingest"),
        ("/v1/projects/p1/jobs/j1", "ingest"),
        ("/v1/projects/p1/search", "search"),
        ("/v1/projects/p1/chat", "respond"),
        ("/v1/projects/p1/conversations/c1", "respond"),
        ("/v1/projects/p1/analytics", "respond"),
        ("/v1/chat/completions", "respond"),
    ] {
        let found = router.route(path).map(|m| m.component);
        assert_eq!(found.as_deref(), Some(component), "{path}");
    }
    for (_, component) in &routes {
        let source = app.source_path(component).unwrap();
        // Functions that import the auth interface are served composed with the auth component.
        let expected = match component.as_str() {
            "auth" => "target/wasm32-wasip2/release/auth.wasm".to_string(),
            other => format!("target/composed/{other}.wasm"),
        };
        assert!(source.ends_with(&expected), "{}", source.display());
    }
}

#[test]
fn unsupported_triggers_and_settings_are_refused_clearly() {
    let base = "spin_manifest_version = 2\n[application]\nname = \"x\"\n[component.c]\nsource = \"c.wasm\"\n";
    for (extra, needle) in [
        (
            "[[trigger.redis]]\ncomponent = \"c\"\nchannel = \"x\"\n",
            "trigger type `redis`",
        ),
        ("[[trigger.http]]\ncomponent = \"c\"\n", "has no `route`"),
        (
            "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"nope\"\n",
            "not declared",
        ),
        (
            "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"c\"\nexecutor = { type = \"wagi\" }\n",
            "not supported",
        ),
        (
            "[[trigger.http]]\nroute = \"a\"\ncomponent = \"c\"\n",
            "must start with '/'",
        ),
    ] {
        let error = App::from_text(&format!("{base}{extra}"), PathBuf::from("."))
            .map(|_| ())
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains(needle), "{extra}: {text}");
    }
}

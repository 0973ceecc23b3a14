//! The served OpenAPI document against what the server really answers: every documented route
//! is routed, and real answers (receipts, replays, journal entries, coded errors) have a status
//! the document lists for their route and a body its schema accepts, with no undeclared field.
//! So a new field in a response type, a new status or code, or a new route fails here until the
//! document says it.

mod common;
use common::Kind;
use serde_json::{json, Value};
use tally_server::client::Conn;
use tally_store::both;

/// Checks `v` against `schema` (the subset of OpenAPI 3.0 the document uses: `$ref`, `allOf`,
/// `oneOf`, `type`, `nullable`, `required`, `properties`, `additionalProperties`, `items`, bounds,
/// `enum`). Objects are strict: a field that is neither a property nor allowed by
/// `additionalProperties` is an error, so an undocumented field is caught.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/components/schemas/").expect("local ref");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "{at}: no schema {name}");
        return check(doc, target, v, at, errs);
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // One object made of its parts (how a flattened struct is described): their
        // properties and required fields together.
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in parts {
            let mut part = part;
            while let Some(r) = part.get("$ref").and_then(Value::as_str) {
                part = &doc["components"]["schemas"][r.rsplit('/').next().unwrap()];
            }
            for (k, p) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = p.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        return check(doc, &merged, v, at, errs);
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let mut why = Vec::new();
        let fits = alts
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                check(doc, alt, v, at, &mut e);
                why.extend(e.iter().cloned());
                e.is_empty()
            })
            .count();
        if fits != 1 {
            errs.push(format!("{at}: fits {fits} of the oneOf schemas ({why:?})"));
        }
        return;
    }
    if v.is_null() {
        if schema.get("type").is_some() && schema["nullable"] != true {
            errs.push(format!("{at}: null, not nullable"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(other) => panic!("{at}: type {other} not handled"),
    };
    if !type_ok {
        errs.push(format!("{at}: {v} is not of type {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            errs.push(format!("{at}: {v} not in {allowed:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
            || schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
        {
            errs.push(format!("{at}: {n} out of bounds"));
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            errs.push(format!("{at}: length {n} out of bounds"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
            || schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
        {
            errs.push(format!("{at}: {n} items out of bounds"));
        }
        if let Some(item) = schema.get("items") {
            for (i, x) in items.iter().enumerate() {
                check(doc, item, x, &format!("{at}[{i}]"), errs);
            }
        }
    }
    if let Some(fields) = v.as_object() {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !fields.contains_key(r) {
                errs.push(format!("{at}: required field {r} missing"));
            }
        }
        for (k, x) in fields {
            let sub = format!("{at}.{k}");
            match (
                schema["properties"].get(k),
                schema.get("additionalProperties"),
            ) {
                (Some(p), _) => check(doc, p, x, &sub, errs),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(extra)) if extra.is_object() => check(doc, extra, x, &sub, errs),
                _ => errs.push(format!("{sub}: not in the document")),
            }
        }
    }
}

/// The answer's status must be documented for the route, and its body fit that response's
/// schema (the shared `Error` response included).
fn conforms(doc: &Value, route: &str, method: &str, status: u16, body: &Value) {
    let responses = &doc["paths"][route][method]["responses"];
    assert!(!responses.is_null(), "{method} {route} is not documented");
    let mut r = &responses[status.to_string()];
    assert!(
        !r.is_null(),
        "{method} {route} answered {status} ({body}), which the document does not list"
    );
    if let Some(name) = r.get("$ref").and_then(Value::as_str) {
        r = &doc["components"]["responses"][name.rsplit('/').next().unwrap()];
    }
    if let Some(schema) = r.pointer("/content/application~1json/schema") {
        let mut errs = Vec::new();
        check(
            doc,
            schema,
            body,
            &format!("{method} {route} {status}"),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:#?}");
    }
}

/// (method, route as documented, path and query, authorization, idempotency key, body)
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    Option<&'a str>,
    Vec<u8>,
);

fn good(station: &str) -> Value {
    json!({"station_id": station, "round": 1, "registered": 1000, "cast": 600, "invalid": 9,
           "valid": 591, "votes": {"cand0": 197, "cand1": 197, "cand2": 197}})
}

both!(the_openapi_document_matches_the_answers);
async fn the_openapi_document_matches_the_answers(kind: Kind) {
    let (_dir, db, [admin, official, _]) = common::setup("openapi", kind);
    let addr = common::start(&db).await;
    let mut c = Conn::connect(&addr).await.unwrap();
    let r = c
        .request("GET", "/api/v1/openapi.json", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let doc = r.json();

    // Every documented route and method is routed (not the 404/405 fallback).
    for (route, ops) in doc["paths"].as_object().unwrap() {
        let path = route.replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            if route == "/events" {
                continue; // a stream that stays open; answered below with a bad `from`
            }
            let mut c = Conn::connect(&addr).await.unwrap();
            let r = c
                .request(&m, &format!("/api/v1{path}"), &[], b"")
                .await
                .unwrap();
            let j = r.json();
            assert!(
                r.status != 405 && j["message"] != "no such route",
                "{m} {route} is documented but not routed: {} {j}",
                r.status
            );
        }
    }

    // Every reference resolves.
    let text = doc.to_string();
    for r in text.split("\"#/components/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        let (kind, name) = name.split_once('/').unwrap();
        assert!(
            !doc["components"][kind][name].is_null(),
            "#/components/{kind}/{name} is referenced but not defined"
        );
    }

    // Requests: the bodies the API accepts fit the documented request schemas.
    let user_schema =
        &doc["paths"]["/users"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let mut errs = Vec::new();
    let new_user = json!({"role": "observer", "stations": ["S000001"]});
    check(&doc, user_schema, &new_user, "request", &mut errs);
    assert!(errs.is_empty(), "{errs:#?}");
    let sheet_schema =
        &doc["paths"]["/sheets"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let mut errs = Vec::new();
    check(&doc, sheet_schema, &good("S000002"), "request", &mut errs);
    check(
        &doc,
        sheet_schema,
        &json!([good("S000003"), good("S000004")]),
        "request",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:#?}");

    // Answers to real requests.
    let auth = |t: &str| format!("Bearer {t}");
    let (a_off, a_adm) = (auth(&official), auth(&admin));
    let long = "x".repeat(200);
    let cases: Vec<Case> = vec![
        ("get", "/election", "/election".into(), None, None, vec![]),
        (
            "get",
            "/stations",
            "/stations?round=1&limit=5".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/stations",
            "/stations?limit=501".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/stations",
            "/stations?area=Nowhere".into(),
            None,
            None,
            vec![],
        ),
        ("get", "/geo", "/geo".into(), None, None, vec![]),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            Some("k1"),
            good("S000002").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            Some("k1"),
            good("S000002").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            Some("k1"),
            good("S000005").to_string().into(),
        ),
        // The same numbers again: an `unchanged` receipt.
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            None,
            good("S000002").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            None,
            json!([good("S000003"), good("S000004")]).to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            None,
            None,
            good("S000006").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_adm),
            None,
            good("S000006").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            Some(&long),
            good("S000006").to_string().into(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            None,
            b"{".to_vec(),
        ),
        (
            "post",
            "/sheets",
            "/sheets".into(),
            Some(&a_off),
            None,
            json!([good("S000007"), {"station_id": "nowhere"}])
                .to_string()
                .into(),
        ),
        (
            "get",
            "/results",
            "/results?round=x".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/results",
            "/results?area=Nowhere".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/stations/{id}",
            "/stations/S000002".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/stations/{id}",
            "/stations/nowhere".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/journal",
            "/journal?from=1&limit=1000".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/journal",
            "/journal?limit=-1".into(),
            None,
            None,
            vec![],
        ),
        (
            "get",
            "/events",
            "/events?from=x".into(),
            None,
            None,
            vec![],
        ),
        (
            "post",
            "/users",
            "/users".into(),
            Some(&a_adm),
            None,
            json!({"role": "observer", "stations": ["S000001"]})
                .to_string()
                .into(),
        ),
        (
            "post",
            "/users",
            "/users".into(),
            Some(&a_off),
            None,
            json!({"role": "observer"}).to_string().into(),
        ),
        (
            "delete",
            "/users/{id}",
            "/users/abc".into(),
            Some(&a_adm),
            None,
            vec![],
        ),
        (
            "delete",
            "/users/{id}",
            "/users/999".into(),
            Some(&a_adm),
            None,
            vec![],
        ),
    ];
    for (method, route, path, token, key, body) in &cases {
        let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            h.push(("Authorization", t));
        }
        if let Some(k) = key {
            h.push(("Idempotency-Key", k));
        }
        // A connection of its own: some refusals close theirs.
        let mut c = Conn::connect(&addr).await.unwrap();
        let r = c
            .request(
                &method.to_ascii_uppercase(),
                &format!("/api/v1{path}"),
                &h,
                body,
            )
            .await
            .unwrap();
        conforms(&doc, route, method, r.status, &r.json());
    }
}

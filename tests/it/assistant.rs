//! Knowledge and the assistant through the real router with API tokens: uploads, search with
//! filters, passages by citation id, conversations answered by the extractive answerer,
//! streaming, the audit entry of each turn, and one tenant never seeing another's documents.

use crate::signin::{journal, text, Site};
use serde_json::Value;

fn token(site: &Site, tenant: &str, role: &str) -> String {
    let t = site
        .s
        .env
        .ok(&["token", "create", "--tenant", tenant, "--role", role]);
    format!("Bearer {}", t.trim())
}

/// A `multipart/form-data` body of files (as the part `file`).
pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    multipart_form(&[], "file", files)
}

/// A `multipart/form-data` body: text `fields` first, then `files` as parts named `part`.
pub fn multipart_form(
    fields: &[(&str, &str)],
    part: &str,
    files: &[(&str, &[u8])],
) -> (String, Vec<u8>) {
    let boundary = "strongroomtestboundary7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn call(site: &Site, auth: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (st, _, b) = site
        .s
        .send(
            method,
            path,
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await;
    let v = if b.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", text(&b)))
    };
    (st, v)
}

async fn upload(site: &Site, auth: &str, files: &[(&str, &[u8])]) -> (u16, Value) {
    let (ct, body) = multipart(files);
    let (st, _, b) = site
        .s
        .send(
            "POST",
            "/api/v1/documents",
            &[("authorization", auth), ("content-type", &ct)],
            &body,
        )
        .await;
    (
        st,
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", text(&b))),
    )
}

const PILOTAGE: &[u8] = b"# Pilotage\n\nEvery vessel above ninety metres takes a harbour pilot. The pilot boards at the outer buoy, two miles south of the breakwater.\n\nPilots are booked through the harbour office at least six hours ahead.\n";
const FEES: &[u8] = b"name,fee_eur,unit\nberth,12,per metre per day\npilotage,400,per movement\n";

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_uploaded_listed_searched_cited_and_removed_over_the_api() {
    let site = Site::new();
    let t = site.tenant.to_string();
    let op = token(&site, &t, "operator");

    let (st, v) = upload(
        &site,
        &op,
        &[
            ("pilotage.md", PILOTAGE),
            ("fees.csv", FEES),
            ("broken.csv", b"a,b\n1,2,3\n"),
        ],
    )
    .await;
    assert_eq!(st, 207, "{v}");
    assert_eq!(v["added"].as_array().unwrap().len(), 2);
    assert_eq!(v["refused"][0]["name"], "broken.csv");
    assert_eq!(v["refused"][0]["code"], "KNW-0011");
    assert!(
        v["refused"][0]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{v}"
    );
    let pilot_id = v["added"][0]["id"].as_str().unwrap().to_string();

    // A file past the size limit is refused by name; the others in its upload go in.
    let big = vec![b'a'; strongroom::knowledge::library::MAX_BYTES + (1 << 20)];
    let (st, v) = upload(
        &site,
        &op,
        &[
            ("big.txt", &big),
            ("small.txt", b"Tugs are booked with the pilot."),
        ],
    )
    .await;
    assert_eq!(st, 207, "{v}");
    assert_eq!(v["refused"][0]["name"], "big.txt");
    assert_eq!(v["refused"][0]["code"], "KNW-0003");
    assert_eq!(v["added"][0]["name"], "small.txt");

    let (st, v) = upload(&site, &op, &[("x.docx", b"PK\x03\x04")]).await;
    assert_eq!(st, 400, "{v}");
    let (st, _, b) = site
        .s
        .send(
            "POST",
            "/api/v1/documents",
            &[("authorization", &op), ("content-type", "text/plain")],
            b"hello",
        )
        .await;
    assert_eq!(st, 400);
    assert!(text(&b).contains("multipart/form-data"), "{}", text(&b));

    let (st, v) = call(&site, &op, "GET", "/api/v1/documents", b"").await;
    assert_eq!(st, 200);
    assert_eq!(v["documents"].as_array().unwrap().len(), 3, "{v}");
    // A second upload of the same name is a new version.
    upload(
        &site,
        &op,
        &[("pilotage.md", b"Pilots now board at the inner buoy.")],
    )
    .await;
    let (st, v) = call(
        &site,
        &op,
        "GET",
        &format!("/api/v1/documents/{pilot_id}"),
        b"",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["versions"][0]["version"], 2);

    let (st, v) = call(
        &site,
        &op,
        "GET",
        "/api/v1/search?q=pilot%20buoy&type=markdown",
        b"",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let hits = v["results"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "only the latest version is searched: {v}");
    assert!(hits[0]["text"].as_str().unwrap().contains("inner buoy"));
    let (_, v) = call(&site, &op, "GET", "/api/v1/search?q=pilotage&type=csv", b"").await;
    assert_eq!(
        v["results"][0]["text"],
        "name: pilotage; fee_eur: 400; unit: per movement"
    );
    for (q, word) in [
        ("/api/v1/search?q=x&limit=0", "limit"),
        ("/api/v1/search?q=x&limit=abc", "limit"),
        ("/api/v1/search?q=x&type=exe", "type"),
        ("/api/v1/search?q=x&since=tuesday", "since"),
        ("/api/v1/search?q=x&document=..%2Fetc", "document"),
    ] {
        let (st, v) = call(&site, &op, "GET", q, b"").await;
        assert_eq!(st, 400, "{q}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(word),
            "{q}: {v}"
        );
    }

    // The first version stays citable while the document is kept.
    let old = format!("{pilot_id}:1:0-40");
    let (st, v) = call(&site, &op, "GET", &format!("/api/v1/passages/{old}"), b"").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["superseded"], true);
    assert_eq!(v["text"].as_str().unwrap().len(), 40);
    let (st, _) = call(&site, &op, "GET", "/api/v1/passages/nonsense", b"").await;
    assert_eq!(st, 400);

    // An auditor reads no knowledge; nobody without a token reads anything.
    let auditor = token(&site, &t, "auditor");
    assert_eq!(
        call(&site, &auditor, "GET", "/api/v1/documents", b"")
            .await
            .0,
        403
    );
    assert_eq!(
        call(&site, "Bearer nope", "GET", "/api/v1/search?q=x", b"")
            .await
            .0,
        401
    );

    let (st, _) = call(
        &site,
        &op,
        "DELETE",
        &format!("/api/v1/documents/{pilot_id}"),
        b"",
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(&site, &op, "GET", &format!("/api/v1/passages/{old}"), b"").await;
    assert_eq!(st, 404);
    let (st, v) = call(
        &site,
        &op,
        "DELETE",
        &format!("/api/v1/documents/{pilot_id}"),
        b"",
    )
    .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("KNW-0007")));
    let entries = journal(&site);
    let remove = entries
        .iter()
        .find(|e| e["action"] == "knowledge.remove")
        .unwrap();
    assert_eq!(remove["actor"]["kind"], "token", "{remove}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_extractive_assistant_cites_its_passages_and_audits_every_turn() {
    let site = Site::new();
    let t = site.tenant.to_string();
    let op = token(&site, &t, "operator");
    upload(&site, &op, &[("pilotage.md", PILOTAGE), ("fees.csv", FEES)]).await;

    let (st, thread) = call(&site, &op, "POST", "/api/v1/conversations", b"").await;
    assert_eq!(st, 201, "{thread}");
    let id = thread["id"].as_str().unwrap().to_string();
    let ask = format!("/api/v1/conversations/{id}/ask");
    let (st, turn) = call(
        &site,
        &op,
        "POST",
        &ask,
        br#"{"question": "Where does the pilot board?"}"#,
    )
    .await;
    assert_eq!(st, 200, "{turn}");
    assert_eq!(turn["outcome"], "answered");
    assert_eq!(turn["model"], "extractive");
    let answer = turn["answer"].as_str().unwrap();
    assert!(
        answer.contains("The pilot boards at the outer buoy"),
        "{answer}"
    );
    let cited = turn["citations"].as_array().unwrap();
    assert!(!cited.is_empty());
    assert!(answer.contains(&format!("[{}]", cited[0]["n"])), "{answer}");
    // Each citation opens the passage it names, which holds the quoted words.
    let c = cited[0]["citation"].as_str().unwrap();
    let (st, passage) = call(&site, &op, "GET", &format!("/api/v1/passages/{c}"), b"").await;
    assert_eq!(st, 200);
    assert!(passage["text"].as_str().unwrap().contains("outer buoy"));

    let (st, none) = call(
        &site,
        &op,
        "POST",
        &ask,
        br#"{"question": "Who audits the payroll?"}"#,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(none["outcome"], "nothing_found");
    assert!(none["citations"].as_array().unwrap().is_empty());
    assert!(none["answer"].as_str().unwrap().contains("found nothing"));

    // Broken requests are named, and nothing is stored for them.
    for (body, code) in [
        (&br#"{"question": "  "}"#[..], "AST-0001"),
        (br#"{"question": 7}"#, "AST-0007"),
        (br#"{"q": "x"}"#, "AST-0007"),
        (b"{", "AST-0007"),
    ] {
        let (st, v) = call(&site, &op, "POST", &ask, body).await;
        assert_eq!((st, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let long = serde_json::json!({ "question": "x".repeat(4001) }).to_string();
    assert_eq!(
        call(&site, &op, "POST", &ask, long.as_bytes()).await.1["error"]["code"],
        "AST-0002"
    );

    let (_, v) = call(
        &site,
        &op,
        "GET",
        &format!("/api/v1/conversations/{id}"),
        b"",
    )
    .await;
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    assert_eq!(v["conversation"]["title"], "Where does the pilot board?");
    assert_eq!(turns[0]["citations"], turn["citations"]);

    // One audit entry per turn: model, retrieved and cited ids, outcome, and the prompt and
    // answer as a preview with their SHA-256 (the default retention).
    let entries: Vec<Value> = journal(&site)
        .into_iter()
        .filter(|e| e["action"] == "assistant.turn")
        .collect();
    assert_eq!(entries.len(), 2);
    let p = &entries[0]["params"];
    assert_eq!(p["model"], "extractive");
    assert_eq!(p["outcome"], "answered");
    assert_eq!(p["cited"][0], c);
    assert!(p["retrieved"].as_array().unwrap().iter().any(|r| r == c));
    assert_eq!(p["prompt"]["sha256"].as_str().unwrap().len(), 64);
    assert!(p["prompt"]["preview"].as_str().unwrap().chars().count() <= 200);
    assert!(p["answer"]["preview"]
        .as_str()
        .unwrap()
        .contains("pilot boards"));
    assert!(p["latency_ms"].is_u64());
    assert_eq!(entries[0]["actor"]["kind"], "token");
    assert_eq!(entries[1]["params"]["outcome"], "nothing_found");

    // Another person's thread is not found; an auditor may not use the assistant.
    let other = token(&site, &t, "operator");
    assert_eq!(
        call(
            &site,
            &other,
            "GET",
            &format!("/api/v1/conversations/{id}"),
            b""
        )
        .await
        .0,
        404
    );
    let (st, v) = call(&site, &other, "POST", &ask, br#"{"question": "pilot"}"#).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("AST-0004")));
    let (_, list) = call(&site, &other, "GET", "/api/v1/conversations", b"").await;
    assert!(list["conversations"].as_array().unwrap().is_empty());
    let auditor = token(&site, &t, "auditor");
    assert_eq!(
        call(&site, &auditor, "POST", "/api/v1/conversations", b"")
            .await
            .0,
        403
    );
    assert_eq!(
        call(&site, &op, "GET", "/api/v1/conversations/zzz", b"")
            .await
            .0,
        400
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_answer_arrives_in_pieces_then_as_the_stored_turn() {
    let site = Site::new();
    let t = site.tenant.to_string();
    let op = token(&site, &t, "operator");
    upload(&site, &op, &[("pilotage.md", PILOTAGE)]).await;
    let (_, thread) = call(
        &site,
        &op,
        "POST",
        "/api/v1/conversations",
        br#"{"title": "Harbour"}"#,
    )
    .await;
    assert_eq!(thread["title"], "Harbour");
    let path = format!(
        "/api/v1/conversations/{}/stream",
        thread["id"].as_str().unwrap()
    );
    let (st, h, b) = site
        .s
        .send(
            "POST",
            &path,
            &[("authorization", &op), ("content-type", "application/json")],
            br#"{"question": "How far ahead are pilots booked?"}"#,
        )
        .await;
    assert_eq!(st, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = text(&b);
    let events: Vec<(&str, Value)> = body
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect();
    assert!(events.len() >= 2, "{body}");
    assert_eq!(events.last().unwrap().0, "turn");
    let streamed: String = events
        .iter()
        .filter(|(n, _)| *n == "delta")
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect();
    let turn = &events.last().unwrap().1;
    assert_eq!(streamed, turn["answer"].as_str().unwrap());
    assert!(streamed.contains("six hours ahead"), "{streamed}");
    assert!(turn["id"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_in_one_tenant_never_retrieves_another_tenants_documents() {
    let site = Site::new();
    let a = site.tenant.to_string();
    let b = site.s.env.create_tenant("beta");
    let (ta, tb) = (token(&site, &a, "operator"), token(&site, &b, "operator"));
    upload(
        &site,
        &ta,
        &[(
            "vault.txt",
            b"The vault code rotates every quarter at alpha.",
        )],
    )
    .await;
    upload(
        &site,
        &tb,
        &[("vault.txt", b"The vault code rotates every month at beta.")],
    )
    .await;
    for (auth, own, other) in [(&ta, "quarter", "month"), (&tb, "month", "quarter")] {
        let (_, thread) = call(&site, auth, "POST", "/api/v1/conversations", b"").await;
        let path = format!(
            "/api/v1/conversations/{}/ask",
            thread["id"].as_str().unwrap()
        );
        let (st, turn) = call(
            &site,
            auth,
            "POST",
            &path,
            br#"{"question": "How often does the vault code rotate?"}"#,
        )
        .await;
        assert_eq!(st, 200, "{turn}");
        let all = turn.to_string();
        assert!(all.contains(own) && !all.contains(other), "{all}");
        let (_, v) = call(&site, auth, "GET", "/api/v1/search?q=vault%20code", b"").await;
        let all = v.to_string();
        assert!(all.contains(own) && !all.contains(other), "{all}");
    }
    // A thread id of tenant A means nothing in tenant B.
    let (_, thread) = call(&site, &ta, "POST", "/api/v1/conversations", b"").await;
    let path = format!("/api/v1/conversations/{}", thread["id"].as_str().unwrap());
    assert_eq!(call(&site, &tb, "GET", &path, b"").await.0, 404);
}

//! The knowledge and assistant pages through the real router with a signed-in session:
//! upload (CSRF in the multipart form), versions, removal, passages, search with filters and
//! marked snippets, and a conversation asked without JavaScript whose citations are links.

use crate::signin::{between, form_post, page_get, Browser, Site};

/// Posts files as the documents form does, with the session's CSRF token (or none).
async fn upload(
    site: &Site,
    b: &Browser,
    files: &[(&str, &[u8])],
    csrf: Option<&str>,
) -> (u16, String, String) {
    let fields: Vec<(&str, &str)> = csrf.map(|t| ("csrf", t)).into_iter().collect();
    let (ct, body) = crate::assistant::multipart_form(&fields, "files", files);
    let (st, h, out) = site
        .s
        .send(
            "POST",
            "/documents",
            &[("cookie", &b.cookie), ("content-type", &ct)],
            &body,
        )
        .await;
    let location = h
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (st, location, crate::signin::text(&out))
}

const GUIDE: &[u8] = b"# Harbour guide\n\nThe pilot boards at the outer buoy. Tugs are ordered <script>alert(1)</script> through channel 14.\n";

#[tokio::test(flavor = "multi_thread")]
async fn documents_are_added_viewed_searched_and_removed_through_the_pages() {
    let site = Site::new();
    let (op, _) = site.signed_in("op@acme.example", "operator").await;
    let (st, _, page) = page_get(&site, &op, "/documents").await;
    assert_eq!(st, 200);
    assert!(page.contains("No documents yet"), "{page}");
    for nav in [
        "href=\"/assistant\"",
        "href=\"/documents\"",
        "href=\"/search\"",
    ] {
        assert!(page.contains(nav), "{nav}");
    }

    // Without the session's token the upload is refused and nothing is added.
    let (st, _, _) = upload(&site, &op, &[("guide.txt", GUIDE)], None).await;
    assert_eq!(st, 403);
    let (st, _, _) = upload(&site, &op, &[("guide.txt", GUIDE)], Some(&"0".repeat(64))).await;
    assert_eq!(st, 403);
    let (st, location, _) = upload(
        &site,
        &op,
        &[("guide.txt", GUIDE), ("fees.csv", b"item,eur\nberth,12\n")],
        Some(&op.csrf),
    )
    .await;
    assert_eq!((st, location.as_str()), (303, "/documents?done=added-2"));
    let (_, _, page) = page_get(&site, &op, &location).await;
    assert!(page.contains("2 documents added."), "{page}");
    assert!(
        page.contains(">guide.txt</a>") && page.contains(">fees.csv</a>"),
        "{page}"
    );

    // A refused file is named on the form; the others are added.
    let (st, _, page) = upload(
        &site,
        &op,
        &[
            ("bad.json", b"{"),
            ("notes.txt", b"Berths are assigned daily."),
        ],
        Some(&op.csrf),
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("Bad.json: line 1"), "{page}");
    assert!(page.contains("1 of the files were added."), "{page}");

    // Search marks the matched words; the HTML in a document stays text.
    let (st, _, page) = page_get(&site, &op, "/search?q=pilot+buoy").await;
    assert_eq!(st, 200);
    assert!(page.contains("<mark>pilot</mark>"), "{page}");
    let (_, _, page) = page_get(&site, &op, "/search?q=tugs+channel").await;
    assert!(!page.contains("<script>alert"), "unescaped document text");
    assert!(
        page.contains("&lt;script&gt;") || page.contains("&#60;script&#62;"),
        "{page}"
    );
    let results = &page[page.find("class=\"results\"").unwrap()..];
    let href = between(results, "<li><a href=\"", "\"").to_string();
    assert!(href.starts_with("/passages/"), "{href}");
    let (st, _, passage) = page_get(&site, &op, &href).await;
    assert_eq!(st, 200);
    assert!(passage.contains("Tugs are ordered"), "{passage}");
    assert!(!passage.contains("<script>alert"));
    let (_, _, page) = page_get(&site, &op, "/search?q=berth&type=csv").await;
    assert!(
        page.contains("fees.csv") && !page.contains("notes.txt</a>"),
        "{page}"
    );
    let (st, _, page) = page_get(&site, &op, "/search?q=berth&since=someday").await;
    assert_eq!(st, 400);
    assert!(
        page.contains("href=\"#since\""),
        "the error links to its field: {page}"
    );

    // Versions and removal (confirmed).
    let (_, _, list) = page_get(&site, &op, "/documents").await;
    let at = list.find(">guide.txt</a>").unwrap();
    let doc = &list[list[..at].rfind("/documents/").unwrap() + 11..][..32];
    let (st, _, page) = page_get(&site, &op, &format!("/documents/{doc}")).await;
    assert_eq!(st, 200);
    assert!(page.contains("<td>1</td>"), "{page}");
    let path = format!("/documents/{doc}/remove");
    let (st, _, page) = form_post(&site, &op, &path, &[], &[]).await;
    assert_eq!(st, 400, "{page}");
    assert!(page.contains("Tick the box"), "{page}");
    let (st, h, _) = form_post(&site, &op, &path, &[("confirm", "yes")], &[]).await;
    assert_eq!(st, 303);
    assert_eq!(h["location"], "/documents?done=removed");
    assert_eq!(page_get(&site, &op, &href).await.0, 404);

    // An auditor sees none of it.
    let (aud, _) = site.signed_in("au@acme.example", "auditor").await;
    let (st, _, page) = page_get(&site, &aud, "/documents").await;
    assert_eq!(st, 403);
    assert!(!page.contains("href=\"/documents\""));
    let (st, _, _) = upload(&site, &aud, &[("x.txt", b"words")], Some(&aud.csrf)).await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_is_asked_without_javascript_and_its_citations_are_links() {
    let site = Site::new();
    let (op, _) = site.signed_in("op@acme.example", "operator").await;
    upload(&site, &op, &[("guide.md", GUIDE)], Some(&op.csrf)).await;
    let (st, _, page) = page_get(&site, &op, "/assistant").await;
    assert_eq!(st, 200);
    assert!(page.contains("No conversations yet"), "{page}");
    let (st, h, _) = form_post(&site, &op, "/assistant", &[], &[]).await;
    assert_eq!(st, 303);
    let thread = h["location"].to_str().unwrap().to_string();
    assert!(thread.starts_with("/assistant/"), "{thread}");

    let (st, _, page) = form_post(
        &site,
        &op,
        &format!("{thread}/ask"),
        &[("question", "   ")],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("href=\"#question\""), "{page}");
    let (st, h, _) = form_post(
        &site,
        &op,
        &format!("{thread}/ask"),
        &[("question", "Where does the pilot board?")],
        &[],
    )
    .await;
    assert_eq!(st, 303);
    assert!(h["location"].to_str().unwrap().contains("#turn-"));
    let (_, _, page) = page_get(&site, &op, &thread).await;
    assert!(
        page.contains("You asked:</strong> Where does the pilot board?"),
        "{page}"
    );
    assert!(
        page.contains("The pilot boards at the outer buoy."),
        "{page}"
    );
    let link = between(&page, "<div class=\"answer\">", "</div>");
    let href = between(link, "<a href=\"", "\"");
    assert!(href.starts_with("/passages/"), "{link}");
    assert_eq!(page_get(&site, &op, href).await.0, 200);
    assert!(page.contains("src=\"/static/assistant.js\""));

    let (_, _, list) = page_get(&site, &op, "/assistant").await;
    assert!(
        list.contains("Where does the pilot board?"),
        "the first question names the thread: {list}"
    );
    // Another person's conversation is not found.
    let (other, _) = site.signed_in("o2@acme.example", "operator").await;
    assert_eq!(page_get(&site, &other, &thread).await.0, 404);
    let (st, h, script) = site.s.send("GET", "/static/assistant.js", &[], b"").await;
    assert_eq!(st, 200);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(crate::signin::text(&script).contains("/stream"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assistant_policy_is_set_on_its_settings_page() {
    let site = Site::with_config(&crate::models::endpoint(
        "local",
        "openai",
        &["http://127.0.0.1:9"],
        "m",
        "",
    ));
    let (owner, _) = site.signed_in("ow@acme.example", "owner").await;
    // The gateway keeps the tenant's rules between calls; a change saved here holds for
    // the very next call.
    let token = format!(
        "Bearer {}",
        site.s
            .env
            .ok(&[
                "token",
                "create",
                "--tenant",
                site.tenant.as_str(),
                "--role",
                "operator"
            ])
            .trim()
    );
    let models = || async {
        let (st, _, body) = site
            .s
            .send("GET", "/v1/models", &[("authorization", &token)], b"")
            .await;
        assert_eq!(st, 200, "{}", crate::signin::text(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(models().await, ["extractive"]);
    let (st, _, page) = page_get(&site, &owner, "/settings/assistant").await;
    assert_eq!(st, 200);
    assert!(page.contains("id=\"ep-local\""), "{page}");
    assert!(page.contains("value=\"extractive\" selected"), "{page}");
    // A model the tenant may not use is refused, named on its field; nothing is saved.
    let (st, _, page) = form_post(
        &site,
        &owner,
        "/settings/assistant",
        &[
            ("model", "local"),
            ("retention", "preview"),
            ("grounded_only", "on"),
        ],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("href=\"#model\""), "{page}");
    let (st, _, page) = form_post(
        &site,
        &owner,
        "/settings/assistant",
        &[
            ("model", "x"),
            ("retention", "preview"),
            ("egress_allow", "https://x.test/"),
        ],
        &[],
    )
    .await;
    assert_eq!(st, 400);
    assert!(page.contains("href=\"#egress_allow\""), "{page}");
    let (st, h, _) = form_post(
        &site,
        &owner,
        "/settings/assistant",
        &[
            ("endpoints", "local"),
            ("model", "local"),
            ("retention", "full"),
            ("egress_allow", "api.example.com"),
            ("gateway_context", "on"),
        ],
        &[],
    )
    .await;
    assert_eq!(st, 303);
    assert_eq!(h["location"], "/settings/assistant?done=saved");
    assert_eq!(models().await, ["extractive", "local"]);
    let shown: serde_json::Value = serde_json::from_str(&site.s.env.ok(&[
        "assistant",
        "policy",
        "--tenant",
        site.tenant.as_str(),
    ]))
    .unwrap();
    assert_eq!(shown["model"], "local");
    assert_eq!(shown["grounded_only"], false, "an unticked box is off");
    assert_eq!(shown["retention"], "full");
    assert_eq!(shown["gateway_context"], true, "a ticked box is on");
    assert_eq!(
        shown["egress_allow"],
        serde_json::json!(["api.example.com"])
    );
    // An auditor reads the page without the means to change it.
    let (aud, _) = site.signed_in("au@acme.example", "auditor").await;
    let (st, _, page) = page_get(&site, &aud, "/settings/assistant").await;
    assert_eq!(st, 200);
    assert!(!page.contains("Save assistant policy"));
    let (st, _, _) = form_post(
        &site,
        &aud,
        "/settings/assistant",
        &[("model", "extractive"), ("retention", "preview")],
        &[],
    )
    .await;
    assert_eq!(st, 403);
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::pseudonym::Pseudonyms;
use super::*;

fn found(text: &str) -> Vec<(String, String)> {
    let d = Detector::default();
    d.find(text)
        .iter()
        .map(|f| {
            (
                d.label_name(f.label).to_owned(),
                text[f.start..f.end].to_owned(),
            )
        })
        .collect()
}

fn one(text: &str, kind: &str, value: &str) {
    let got = found(text);
    assert!(
        got.iter().any(|(k, v)| k == kind && v == value),
        "expected {kind} {value:?} in {text:?}, found {got:?}"
    );
}

fn none(text: &str) {
    let got = found(text);
    assert!(
        got.is_empty(),
        "expected nothing in {text:?}, found {got:?}"
    );
}

#[test]
fn emails_but_not_url_users() {
    one(
        "write to <anna.mueller+hr@example.co.uk>.",
        "EMAIL",
        "anna.mueller+hr@example.co.uk",
    );
    one("mailto:ops@corp.de", "EMAIL", "ops@corp.de");
    none("clone https://deploy@git.example.org/repo.git now");
    none("user@localhost and @scope/pkg");
}

#[test]
fn url_passwords_only_the_password() {
    one(
        "DATABASE_URL=postgres://app:S3cr3t!pw@db.internal:5432/prod",
        "URL_PASSWORD",
        "S3cr3t!pw",
    );
    one("redis://:hunter2@cache:6379/0", "URL_PASSWORD", "hunter2");
    none("see https://example.com/path?x=1#y and postgres://db.internal:5432/prod");
    none("postgres://app:${DB_PASSWORD}@db/prod");
}

#[test]
fn cards_need_luhn_and_an_issuer() {
    one(
        "card 4111 1111 1111 1111 exp 12/27",
        "CREDIT_CARD",
        "4111 1111 1111 1111",
    );
    one(
        "amex 3782-822463-10005.",
        "CREDIT_CARD",
        "3782-822463-10005",
    );
    one("mc 5555555555554444", "CREDIT_CARD", "5555555555554444");
    none("card 4111 1111 1111 1112 exp");
    none("tracking 9400 1000 0000 0000 0000 00 and 1234567812345670 (no issuer 1)");
}

#[test]
fn ibans_need_mod_97() {
    one(
        "IBAN: DE89 3704 0044 0532 0130 00, BIC",
        "IBAN",
        "DE89 3704 0044 0532 0130 00",
    );
    one(
        "naar NL91ABNA0417164300 graag",
        "IBAN",
        "NL91ABNA0417164300",
    );
    one(
        "GB82 WEST 1234 5698 7654 32",
        "IBAN",
        "GB82 WEST 1234 5698 7654 32",
    );
    none("DE89 3704 0044 0532 0130 01");
    none("Referenz RF18 5390 0754 7034");
}

#[test]
fn phones_in_five_countries() {
    one("call (415) 555-0132 today", "PHONE", "(415) 555-0132");
    one("call 415.555.0132", "PHONE", "415.555.0132");
    one("tel +1 415 555 0132.", "PHONE", "+1 415 555 0132");
    one("ring 020 7946 0958", "PHONE", "020 7946 0958");
    one("mobile +44 7700 900123", "PHONE", "+44 7700 900123");
    one("Tel. +49 (0)30 1234567", "PHONE", "+49 (0)30 1234567");
    one("Tel. 030/1234567", "PHONE", "030/1234567");
    one("tél. 06.12.34.56.78", "PHONE", "06.12.34.56.78");
    one("bel 06-12345678", "PHONE", "06-12345678");
    one("bel +31 20 123 4567", "PHONE", "+31 20 123 4567");
    none("Bestellnummer 4839201174, am 15.03.2024 um 10:22:33");
    none("ts 2024-03-15 10:22:33.123+01:00 and 03/15/2024");
    none("Verwendungszweck: 0042 8891 2201; Rechnung Nr. 2024/10/0815");
    none("commande n° 2024-118-337, prix € 1.234,56");
}

#[test]
fn phones_written_without_separators_where_the_words_before_say_so() {
    one(
        "Call me on 07700900123 if it breaks",
        "PHONE",
        "07700900123",
    );
    one("Tel.: 0612345678", "PHONE", "0612345678");
    one(
        "Meine Handynummer lautet 01701234567.",
        "PHONE",
        "01701234567",
    );
    one("Telefonnummer: 030123456789", "PHONE", "030123456789");
    one("appelez-moi au 0612345678", "PHONE", "0612345678");
    one("bel me op 0201234567", "PHONE", "0201234567");
    one("phone 4155550132", "PHONE", "4155550132");
    one("mobile #14155550132", "PHONE", "14155550132");
    one("callback: 2025550143)", "PHONE", "2025550143");
    // The same digits as other numbers, or without a word for a phone before them.
    none("Your order 07700900123 has shipped.");
    none("Call about order 0612345678 today");
    none("Bitte rufen Sie wegen Rechnung 0612345678 an");
    none("DHL 0612345678 is on its way");
    none("tel\n0612345678");
    none("phone 1234567890 (the area code cannot start with 1)");
    none("phone 0012345678 or 061234567 or 0612345678901");
    none("phone 06123456789x and 0612345678.5");
    none("telemetry 0612345678 and tell 0612345678");
    none("call the ops desk about SR 2024 0612345678");
    none("confirmé au téléphone. Le transporteur indique DHL 9944843515 comme numéro");
    none("Ask on the phone. Then quote 0612345678 on the form");
    one("Tel. no. 0612345678", "PHONE", "0612345678");
    // Payment references in groups, which national numbers can look like.
    none("Vermeld betalingskenmerk 0484 4950 0324 bij de betaling");
    none("Verwendungszweck: 0343 9160 3510");
    none("arrived with reference 0231 7954 5689.");
    none("Indique la referencia de pago 0269 1527 0848 en la transferencia");
    one(
        "My preferred number is 020 7946 0958",
        "PHONE",
        "020 7946 0958",
    );
    one(
        "Reference contact, tel. 020 7946 0958",
        "PHONE",
        "020 7946 0958",
    );
}

#[test]
fn ip_addresses_not_versions() {
    one("from 10.0.0.5:8080 ok", "IP_ADDRESS", "10.0.0.5");
    one("net 192.168.1.0/24", "IP_ADDRESS", "192.168.1.0");
    one("at [2001:db8::1]:443", "IP_ADDRESS", "2001:db8::1");
    one(
        "link fe80::1ff:fe23:4567:890a.",
        "IP_ADDRESS",
        "fe80::1ff:fe23:4567:890a",
    );
    one("loopback ::1 only", "IP_ADDRESS", "::1");
    none("v1.2.3.4 and version 10.0.1.2 and Chrome/120.0.0.1 and 256.1.1.1");
    none("at 10:22:33, mac 00:1a:2b:3c:4d:5e, std::io");
}

#[test]
fn ssn_and_nino() {
    one("SSN 123-45-6789", "US_SSN", "123-45-6789");
    one(
        "Social Security number: 123 45 6789",
        "US_SSN",
        "123 45 6789",
    );
    none("ref 666-45-6789 and 123-00-6789 and 123 45 6789");
    one("NI number AB123456C.", "UK_NINO", "AB123456C");
    one("NINO: JK 12 34 56 A", "UK_NINO", "JK 12 34 56 A");
    none("codes GB123456A and DA123456C and AB123456E");
}

#[test]
fn api_keys_by_prefix_and_by_name() {
    let gh = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5";
    one(&format!("token {gh} leaked"), "API_KEY", gh);
    one(
        "key AKIAIOSFODNN7EXAMPLQ here",
        "API_KEY",
        "AKIAIOSFODNN7EXAMPLQ",
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    one(&format!("Authorization: Bearer {jwt}"), "API_KEY", jwt);
    one(
        "api_key=Zr8Qw2LkP9xT4mN7vB3c",
        "API_KEY",
        "Zr8Qw2LkP9xT4mN7vB3c",
    );
    one(
        r#"{"client_secret": "q7W9e2R4t6Y8u0I1o3P5a7S9"}"#,
        "API_KEY",
        "q7W9e2R4t6Y8u0I1o3P5a7S9",
    );
    one(
        "Authorization: Bearer k9Jd72hQx81LmZ0pWq4r",
        "API_KEY",
        "k9Jd72hQx81LmZ0pWq4r",
    );
    none("api_key=YOUR_API_KEY_HERE password=changeme secret: true token: null timeout=30");
    none("<YOUR_API_KEY> ${DB_PASSWORD} {{ api_key }} sk-... token=xxxxxxxxxxxxxxxxxxxx");
    none("monkey=Zr8Qw2LkP9xT4mN7vB3c sha256=9f86d081884c7d659a2feaa0c55ad015");
}

#[test]
fn private_keys_in_three_encodings() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
    let plain = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----");
    one(&format!("key:\n{plain}\n"), "PRIVATE_KEY", &plain);
    let json = format!("-----BEGIN RSA PRIVATE KEY-----\\n{body}\\n-----END RSA PRIVATE KEY-----");
    one(
        &format!(r#"{{"private_key": "{json}\n"}}"#),
        "PRIVATE_KEY",
        &json,
    );
    let yaml =
        format!("-----BEGIN EC PRIVATE KEY-----\n    {body}\n    -----END EC PRIVATE KEY-----");
    one(
        &format!("tls:\n  key: |\n    {yaml}\n"),
        "PRIVATE_KEY",
        &yaml,
    );
    none("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    // Cut off before its END line: still taken, up to the end of the body.
    let cut = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}");
    one(&format!("{cut}\n\nthat was it"), "PRIVATE_KEY", &cut);
}

#[test]
fn person_names_best_effort() {
    one("Dr. Anna Müller will call", "PERSON", "Anna Müller");
    one("Herr Jan de Vries kommt", "PERSON", "Jan de Vries");
    one(
        "ticket assigned to Lukas Becker yesterday",
        "PERSON",
        "Lukas Becker",
    );
    one(
        "Kind regards,\nOluwaseun Adeyemi",
        "PERSON",
        "Oluwaseun Adeyemi",
    );
    none("Anna and the team met on Monday in New York");
}

#[test]
fn hard_negatives_stay_unflagged() {
    none("UUID 550e8400-e29b-41d4-a716-446655440000, commit 3f9c2a1, INV-2024-00042");
    none("sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    none("1Z999AA10123456784 JIRA-12345 INC0012345 E2E-20240315-000042 2024-03-15T10:22:33Z");
    none("ts=1710498153 build 4.12.0.1 v2.0.0-rc.1 10115 Berlin SW1A 1AA 1012 AB Amsterdam");
}

#[test]
fn spans_are_code_points() {
    let text = "Grüße — mail anna@example.de";
    let d = Detector::default();
    let f = d.find(text);
    let cp = to_char_offsets(text, &f);
    let chars: Vec<char> = text.chars().collect();
    let (s, e) = cp[0];
    assert_eq!((s, e), (13, 28));
    assert_eq!(chars[s..e].iter().collect::<String>(), "anna@example.de");
}

#[test]
fn overlapping_candidates_settle_on_the_longest_earliest() {
    // A key's base64 body may hold anything; the block wins.
    let text =
        "-----BEGIN PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLQ 10.0.0.1\n-----END PRIVATE KEY-----";
    let got = found(text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "PRIVATE_KEY");
}

#[test]
fn tenant_rules_are_checked_when_set() {
    assert!(matches!(
        Rule::new("employee", "E\\d+"),
        Err(RuleError::BadName(_))
    ));
    assert!(matches!(
        Rule::new("EMAIL", "x"),
        Err(RuleError::Builtin(_))
    ));
    assert!(matches!(
        Rule::new("EMP", "E\\d*|"),
        Err(RuleError::MatchesEmpty { .. })
    ));
    assert!(matches!(
        Rule::new("EMP", "(unclosed"),
        Err(RuleError::Syntax { .. })
    ));
    assert!(matches!(
        Rule::new("EMP", &"a".repeat(600)),
        Err(RuleError::TooLong { .. })
    ));
    // A pattern whose compiled program is huge is refused, not built.
    assert!(matches!(
        Rule::new("EMP", "\\w{1000}\\w{1000}"),
        Err(RuleError::Syntax { .. })
    ));
    let r = Rule::new("EMPLOYEE_ID", "EMP-\\d{6}").unwrap();
    let d = Detector::new(vec![r.clone(), r.clone()]);
    assert!(matches!(d, Err(RuleError::Duplicate(_))));
    let d = Detector::new(vec![r]).unwrap();
    let text = "badge EMP-004211 for anna@example.org";
    let names: Vec<&str> = d.find(text).iter().map(|f| d.label_name(f.label)).collect();
    assert_eq!(names, ["EMPLOYEE_ID", "EMAIL"]);
}

#[test]
fn pseudonyms_are_stable_within_a_call_and_restored() {
    let d = Detector::default();
    let mut p = Pseudonyms::new();
    let a = p.redact(&d, "mail anna@example.org or bob@example.org");
    let b = p.redact(&d, "again anna@example.org");
    assert_eq!(a, "mail <EMAIL_1> or <EMAIL_2>");
    assert_eq!(b, "again <EMAIL_1>");
    assert_eq!(p.counts().get("EMAIL"), Some(&3));
    assert_eq!(
        p.restore("Wrote to <EMAIL_2>; <EMAIL_9> and <b>"),
        "Wrote to bob@example.org; <EMAIL_9> and <b>"
    );
    // The mapping never prints.
    assert!(!format!("{p:?}").contains("anna"));
}

#[test]
fn a_placeholder_split_across_stream_pieces_is_restored() {
    let d = Detector::default();
    let mut p = Pseudonyms::new();
    p.redact(&d, "anna@example.org and 4111 1111 1111 1111");
    let answer = "Sent to <EMAIL_1>, card <CREDIT_CARD_1>. 2 < 3 <done";
    // Every way of cutting the answer in two, and one piece per byte.
    for cut in 1..answer.len() {
        let mut r = p.stream();
        let mut out = r.push(&answer[..cut]);
        out.push_str(&r.push(&answer[cut..]));
        out.push_str(&r.finish());
        assert_eq!(
            out, "Sent to anna@example.org, card 4111 1111 1111 1111. 2 < 3 <done",
            "cut at {cut}"
        );
    }
    let mut r = p.stream();
    let mut out = String::new();
    for ch in answer.chars() {
        out.push_str(&r.push(&ch.to_string()));
    }
    out.push_str(&r.finish());
    assert!(out.contains("anna@example.org") && out.contains("4111 1111 1111 1111"));
}

#[test]
fn the_eight_byte_word_scan_agrees_with_the_byte_table() {
    // Every byte value at every position of a 17-byte run.
    for v in 0..=255u8 {
        for at in 0..17 {
            let mut b = vec![b'a'; 17];
            b[at] = v;
            let slow = (0..).find(|&k| k == b.len() || !is_word(b[k])).unwrap();
            assert_eq!(word_run_end(&b, 0), slow, "byte {v:#x} at {at}");
        }
    }
}

#[test]
fn the_particle_gate_knows_every_particle() {
    for p in names::PARTICLES {
        assert!(names::particle(p.as_bytes()), "{p}");
    }
    assert!(!names::particle(b"and"));
}

#[test]
fn placeholder_text_already_in_a_call_is_never_issued_or_filled_in() {
    let d = Detector::default();
    let mut p = Pseudonyms::new();
    let typed = "my template says <EMAIL_1> and <NOT A PLACEHOLDER_> <X_y>";
    p.reserve(typed);
    p.reserve("mail anna@example.org");
    assert_eq!(p.redact(&d, typed), typed);
    assert_eq!(p.redact(&d, "mail anna@example.org"), "mail <EMAIL_2>");
    assert_eq!(
        p.restore("<EMAIL_1> is literal, <EMAIL_2> is Anna"),
        "<EMAIL_1> is literal, anna@example.org is Anna"
    );
}

#[test]
fn text_in_any_script_after_a_less_than_sign_is_looked_at_whole() {
    let d = Detector::default();
    let mut p = Pseudonyms::new();
    // The longest a placeholder may be ends inside a character here, at every offset.
    let base = "a < 東京都の人口は大阪府より多いですか？と質問しました <EMAIL_1>";
    for pad in 0..4 {
        let text = format!("{}{base} <{}", "x".repeat(pad), "é".repeat(30));
        p.reserve(&text);
        assert_eq!(p.restore(&text), text);
    }
    p.redact(&d, "mail anna@example.org");
    let answer = "返信 < 東京都の人口は大阪府より多いですか <EMAIL_2> 送信しました";
    assert_eq!(
        p.restore(answer),
        "返信 < 東京都の人口は大阪府より多いですか anna@example.org 送信しました"
    );
    for (at, _) in answer.char_indices().skip(1) {
        let mut r = p.stream();
        let mut out = r.push(&answer[..at]);
        out.push_str(&r.push(&answer[at..]));
        out.push_str(&r.finish());
        assert_eq!(out, p.restore(answer), "cut at {at}");
    }
}

#[test]
fn an_at_sign_in_any_of_many_url_authorities_is_not_an_address() {
    let mut text: String = (0..500)
        .map(|i| format!("see https://u{i}:pw{i}x@h{i}.example.com/ and "))
        .collect();
    text.push_str("mail anna@example.org, not ftp://bob@files.example.net");
    let got = found(&text);
    let emails: Vec<&str> = got
        .iter()
        .filter(|(k, _)| k == "EMAIL")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(emails, ["anna@example.org"]);
    assert_eq!(got.iter().filter(|(k, _)| k == "URL_PASSWORD").count(), 500);
    one(&text, "URL_PASSWORD", "pw499x");
}

#[test]
fn a_jwt_is_found_among_runs_that_only_look_like_headers() {
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2J5dGVz";
    let junk = "eyJ-".repeat(3000);
    one(&format!("{junk} token {jwt} end"), "API_KEY", jwt);
    // Of a header run longer than a segment may be, the part that fits is taken.
    let long = format!("{junk}.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2J5dGVz");
    let got = found(&long);
    assert_eq!(got.len(), 1);
    assert!(long.ends_with(&got[0].1) && got[0].1.find('.') == Some(8192));
    let short = format!("{}{}", "eyJ-".repeat(10), jwt);
    one(&format!("x {short} y"), "API_KEY", &short);
    // Many headers ending at one dot share what follows it.
    let many = format!(
        "{}.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2J5dGVz",
        "eyJ-".repeat(100)
    );
    assert_eq!(found(&many).len(), 1, "{:?}", found(&many));
}

/// Texts made to hit the scans' worst cases take time in proportion to their length: the
/// bound is hundreds of times what they take, and a scan that looks back over earlier
/// matches at every candidate would take minutes.
#[test]
fn adversarial_texts_are_scanned_in_linear_time() {
    let d = Detector::default();
    for unit in ["ab://@", "eyJ-", "x://u:p@", "a@b.co "] {
        let text = unit.repeat((4 << 20) / unit.len());
        let start = std::time::Instant::now();
        let _ = d.find(&text);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{unit:?} took {:?}",
            start.elapsed()
        );
    }
}

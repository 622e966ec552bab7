//! The second factor: TOTP (RFC 6238: SHA-1, six digits, 30-second steps, one step of
//! drift either way) with ten one-time recovery codes.
//!
//! The seed is sealed in the realm's file under a key derived from the system key; the last
//! time step accepted is kept with it, so a code (or an older one) is accepted once. Recovery
//! codes are stored as keyed hashes and each works once.

use super::accounts::store_err;
use super::directory::Directory;
use super::email::Email;
use super::permission::{Permission, Realm};
use super::IdentityError;
use crate::audit::Outcome;
use crate::door::{Audit, Door};
use crate::ids::UserId;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

pub const ISSUER: &str = "Strongroom";
const STEP: i64 = 30;
/// How many recovery codes an enrolment hands out.
pub const RECOVERY_CODES: usize = 10;

/// What the enrolment page shows: the `otpauth://` URI, the same as a QR code (SVG), and the
/// seed in base32 for typing by hand.
pub struct Enrolment {
    pub uri: String,
    pub qr_svg: String,
    pub secret_base32: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment([redacted])")
    }
}

fn totp(seed: &[u8], email: &Email) -> Result<TOTP, IdentityError> {
    let label = email.as_str().replace(':', "_");
    TOTP::new(
        Algorithm::SHA1,
        6,
        0,
        STEP as u64,
        seed.to_vec(),
        Some(ISSUER.into()),
        label,
    )
    .map_err(|e| IdentityError::BadName(format!("cannot make the second factor: {e}")))
}

fn context(user: &UserId) -> Vec<u8> {
    format!("totp/{user}").into_bytes()
}

fn must_be_self<D: Door>(door: &D, user: &UserId) -> Result<(), IdentityError> {
    if door.caller().actor.id == user.as_str() {
        Ok(())
    } else {
        Err(super::Denied("one's own second factor").into())
    }
}

/// Whether an account has a confirmed second factor, and how many recovery codes are left.
///
/// # Errors
/// A storage fault.
pub fn status(c: &Connection, user: &UserId) -> rusqlite::Result<(bool, i64)> {
    let on = c
        .query_row(
            "SELECT 1 FROM totp WHERE user_id = ?1 AND confirmed_us IS NOT NULL",
            [user.as_str()],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let left = c.query_row(
        "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_us IS NULL",
        [user.as_str()],
        |r| r.get(0),
    )?;
    Ok((on, left))
}

/// Starts (or starts again) enrolling the caller: a new 160-bit seed, sealed, unconfirmed.
///
/// # Errors
/// Not the caller's own account, already enrolled, or a storage fault.
pub fn begin_blocking<D: Door>(
    door: &D,
    dir: &Arc<Directory>,
    user: &UserId,
    email: &Email,
) -> Result<Enrolment, IdentityError> {
    must_be_self(door, user)?;
    let mut seed = Zeroizing::new([0u8; 20]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed[..])
        .map_err(|_| crate::keyring::KeyringError::Random)?;
    let t = totp(&seed[..], email)?;
    let sealed = dir.sealer().seal(&context(user), &seed[..])?;
    let uid = user.clone();
    door.change_blocking(move |tx| {
        let c = tx.conn();
        if status(c, &uid).map_err(store_err)?.0 {
            return Err(IdentityError::AlreadyInState(
                "the second factor".into(),
                "set up; remove it first to set it up again",
            ));
        }
        c.execute(
            "INSERT INTO totp (user_id, secret, confirmed_us, last_step, created_us) \
             VALUES (?1, ?2, NULL, 0, ?3) ON CONFLICT(user_id) DO UPDATE SET \
             secret = ?2, confirmed_us = NULL, last_step = 0, created_us = ?3",
            params![uid.as_str(), sealed, tx.now_us()],
        )
        .map_err(store_err)?;
        Ok(((), Audit::new("auth.totp_begin", uid.as_str())))
    })?;
    let uri = t.get_url();
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| IdentityError::BadName(format!("cannot draw the QR code: {e}")))?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrolment {
        uri,
        qr_svg,
        secret_base32: t.get_secret_base32(),
    })
}

/// The time step a code matches, if it matches one within a step of now and is newer than
/// `last_step`.
fn matching_step(t: &TOTP, code: &str, now_us: i64, last_step: i64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now_step = now_us.div_euclid(1_000_000) / STEP;
    let mut found = None;
    // Every candidate is computed and compared, so timing says nothing about which matched.
    for step in [now_step - 1, now_step, now_step + 1] {
        let expected = t.generate(u64::try_from(step * STEP).unwrap_or(0));
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && step > last_step {
            found = Some(step);
        }
    }
    found
}

/// An unsealed seed with the last time step it accepted.
type Seed = (Zeroizing<Vec<u8>>, i64);

fn seed_of(
    c: &Connection,
    dir: &Directory,
    user: &UserId,
    confirmed: bool,
) -> Result<Option<Seed>, IdentityError> {
    let sql = if confirmed {
        "SELECT secret, last_step FROM totp WHERE user_id = ?1 AND confirmed_us IS NOT NULL"
    } else {
        "SELECT secret, last_step FROM totp WHERE user_id = ?1 AND confirmed_us IS NULL"
    };
    let row: Option<(Vec<u8>, i64)> = c
        .query_row(sql, [user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(store_err)?;
    match row {
        None => Ok(None),
        Some((sealed, last)) => Ok(Some((dir.sealer().unseal(&context(user), &sealed)?, last))),
    }
}

/// A fresh recovery code: 12 characters from an alphabet without look-alikes, in groups.
fn recovery_code() -> Result<String, IdentityError> {
    let pw = super::password::one_time()?;
    Ok(pw.expose()[..14].to_string())
}

fn normalise_recovery(code: &str) -> String {
    code.trim().to_lowercase().replace([' ', '-'], "")
}

/// Confirms enrolment with a first code; returns the recovery codes, to show once.
///
/// # Errors
/// Not the caller, nothing to confirm, a wrong code ([`IdentityError::WrongCode`]), or a
/// storage fault.
pub fn confirm_blocking<D: Door>(
    door: &D,
    dir: &Arc<Directory>,
    user: &UserId,
    email: &Email,
    code: &str,
) -> Result<Vec<String>, IdentityError> {
    must_be_self(door, user)?;
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| recovery_code())
        .collect::<Result<_, _>>()?;
    let hashes: Vec<[u8; 32]> = codes
        .iter()
        .map(|c| dir.secret_hash("recovery", normalise_recovery(c).as_bytes()))
        .collect();
    let (uid, dir2, email, code) = (user.clone(), dir.clone(), email.clone(), code.to_string());
    let ok = door.change_blocking(move |tx| {
        let c = tx.conn();
        let Some((seed, last)) = seed_of(c, &dir2, &uid, false)? else {
            return Err(IdentityError::NotFound(
                "no second factor being set up; start again".into(),
            ));
        };
        let t = totp(&seed, &email)?;
        let Some(step) = matching_step(&t, &code, tx.now_us(), last) else {
            let audit = Audit::new("auth.totp_enrol", uid.as_str()).outcome(Outcome::Failure);
            return Ok((false, audit));
        };
        c.execute(
            "UPDATE totp SET confirmed_us = ?2, last_step = ?3 WHERE user_id = ?1",
            params![uid.as_str(), tx.now_us(), step],
        )
        .map_err(store_err)?;
        c.execute(
            "DELETE FROM recovery_codes WHERE user_id = ?1",
            [uid.as_str()],
        )
        .map_err(store_err)?;
        for h in &hashes {
            c.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                params![uid.as_str(), &h[..]],
            )
            .map_err(store_err)?;
        }
        Ok((true, Audit::new("auth.totp_enrol", uid.as_str())))
    })?;
    if ok {
        Ok(codes)
    } else {
        Err(IdentityError::WrongCode)
    }
}

/// How a second-factor check was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    Code,
    /// A recovery code, with how many are left.
    Recovery {
        left: i64,
    },
}

/// Checks a code at sign-in: a current TOTP code (each time step once) or an unused recovery
/// code. The attempt is journaled either way.
///
/// # Errors
/// [`IdentityError::WrongCode`], no second factor, or a storage fault.
pub fn check_blocking<D: Door>(
    door: &D,
    dir: &Arc<Directory>,
    user: &UserId,
    email: &Email,
    code: &str,
) -> Result<Passed, IdentityError> {
    must_be_self(door, user)?;
    let recovery_hash = dir.secret_hash("recovery", normalise_recovery(code).as_bytes());
    let (uid, dir2, email, code) = (user.clone(), dir.clone(), email.clone(), code.to_string());
    let passed = door.change_blocking(move |tx| {
        let c = tx.conn();
        let Some((seed, last)) = seed_of(c, &dir2, &uid, true)? else {
            return Err(IdentityError::NotFound("no second factor".into()));
        };
        let t = totp(&seed, &email)?;
        if let Some(step) = matching_step(&t, &code, tx.now_us(), last) {
            c.execute(
                "UPDATE totp SET last_step = ?2 WHERE user_id = ?1",
                params![uid.as_str(), step],
            )
            .map_err(store_err)?;
            let audit =
                Audit::new("auth.totp", uid.as_str()).params(serde_json::json!({ "with": "code" }));
            return Ok((Some(Passed::Code), audit));
        }
        let used = c
            .execute(
                "UPDATE recovery_codes SET used_us = ?3 WHERE user_id = ?1 AND code_hash = ?2 \
                 AND used_us IS NULL",
                params![uid.as_str(), &recovery_hash[..], tx.now_us()],
            )
            .map_err(store_err)?;
        if used == 1 {
            let left = status(c, &uid).map_err(store_err)?.1;
            let audit = Audit::new("auth.totp", uid.as_str()).params(
                serde_json::json!({ "with": "recovery_code", "recovery_codes_left": left }),
            );
            return Ok((Some(Passed::Recovery { left }), audit));
        }
        let audit = Audit::new("auth.totp", uid.as_str()).outcome(Outcome::Failure);
        Ok((None, audit))
    })?;
    passed.ok_or(IdentityError::WrongCode)
}

/// Removes an account's second factor: the account itself, or someone who manages accounts
/// (a lost phone). The policy may then send it to enrolment at its next sign-in.
///
/// # Errors
/// Permission, none to remove, or a storage fault.
pub fn remove_blocking<D: Door>(door: &D, user: &UserId) -> Result<(), IdentityError> {
    let caller = door.caller();
    if caller.actor.id != user.as_str() {
        caller.require(match door.realm() {
            Realm::Platform => Permission::PlatformUsersManage,
            Realm::Tenant => Permission::UsersManage,
        })?;
    }
    let uid = user.clone();
    let (caller, realm) = (caller.clone(), door.realm());
    door.change_blocking(move |tx| {
        let c = tx.conn();
        if super::accounts::resolve(c, uid.as_str())
            .map_err(store_err)?
            .is_none()
        {
            return Err(IdentityError::NotFound(format!("no account {uid}")));
        }
        super::accounts::require_may_act_for(c, &caller, realm, &uid)?;
        let n = c
            .execute("DELETE FROM totp WHERE user_id = ?1", [uid.as_str()])
            .map_err(store_err)?;
        c.execute(
            "DELETE FROM recovery_codes WHERE user_id = ?1",
            [uid.as_str()],
        )
        .map_err(store_err)?;
        if n == 0 {
            return Err(IdentityError::NotFound("no second factor to remove".into()));
        }
        Ok(((), Audit::new("auth.totp_remove", uid.as_str())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_within_one_step_and_only_after_the_last_one_used() {
        let email = Email::parse("a@example.com").unwrap();
        let t = totp(&[7u8; 20], &email).unwrap();
        let now = 1_800_000_000_000_000i64;
        let step = now / 1_000_000 / STEP;
        let code = t.generate(u64::try_from(step * STEP).unwrap());
        assert_eq!(matching_step(&t, &code, now, 0), Some(step));
        assert_eq!(matching_step(&t, &code, now + 30_000_000, 0), Some(step));
        assert_eq!(
            matching_step(&t, &code, now + 61_000_000, 0),
            None,
            "too old"
        );
        assert_eq!(matching_step(&t, &code, now, step), None, "replayed");
        for bad in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert_eq!(matching_step(&t, bad, now, 0), None, "{bad}");
        }
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(&t, &spaced, now, 0), Some(step));
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalised() {
        let a = recovery_code().unwrap();
        let b = recovery_code().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 14);
        assert_eq!(
            normalise_recovery(&format!(" {} ", a.to_uppercase())),
            a.replace('-', "")
        );
    }
}

//! Single sign-on per tenant with OpenID Connect: the authorization-code flow with PKCE
//! (S256), a nonce and a state, through the installation's one outbound client.
//!
//! - Settings live in the tenant's file; the client secret is sealed under an identity key
//!   bound to the tenant, and no page or export shows it again.
//! - The flow's secrets (state, nonce, PKCE verifier, redirect URI, expiry) travel in a
//!   sealed cookie, so nothing is held in server memory for a sign-in that never returns and
//!   any node of a cluster can finish it. The state in the callback must equal the sealed one.
//! - A person is found by the provider's subject (linked at first sign-in), else by a
//!   verified e-mail address; with just-in-time creation on, a new account is made with the
//!   role the claim maps to. A mapped role that differs from the account's is applied at
//!   sign-in (the provider is the source of truth for its people's roles).
//! - The sign-in then goes the way a password sign-in goes: the same journal entries, the
//!   tenant's address lists, and the second-factor step when the account has one.

use super::accounts::{self, Account, NewAccount};
use super::permission::{Caller, Permission, Realm};
use super::sessions::Client;
use super::signin::{self, SignedIn};
use super::{Directory, Email, IdentityError};
use crate::app::App;
use crate::door::{self, Audit, Door};
use crate::ids::{TenantId, UserId};
use crate::keyring::SecretString;
use crate::outbound::Outbound;
use base64::Engine as _;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The tables, a step of the identity module's tenant schema.
pub const TENANT_TABLES: &str = "
CREATE TABLE sso (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    enabled       INTEGER NOT NULL,
    issuer        TEXT NOT NULL,
    client_id     TEXT NOT NULL,
    client_secret BLOB NOT NULL,
    scopes        TEXT NOT NULL,
    role_claim    TEXT NOT NULL,
    role_map      TEXT NOT NULL,
    default_role  TEXT,
    jit           INTEGER NOT NULL,
    changed_us    INTEGER NOT NULL
) STRICT;
CREATE TABLE sso_subjects (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL UNIQUE REFERENCES users(id),
    created_us INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
";

/// How long a started sign-in may take at the provider.
pub const FLOW_SECS: i64 = 600;
/// How long a provider's metadata and keys are reused.
const METADATA_SECS: i64 = 300;
/// Most lines of a role map.
const MAX_MAP: usize = 100;
/// The path the provider sends people back to.
pub const CALLBACK_PATH: &str = "/login/sso/callback";

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("single sign-on is not set up for that organisation or address; sign in with your password, or ask your administrator for your organisation's sign-in link")]
    NotAvailable,
    #[error("this sign-in did not start in this browser, or took longer than 10 minutes; start it again")]
    FlowLost,
    #[error("the identity provider refused the sign-in: {0}")]
    Provider(String),
    #[error("cannot reach the identity provider: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer failed verification ({0}); nobody was signed in")]
    BadToken(String),
    #[error("your account at the identity provider maps to no role here; ask your administrator to map one of your groups")]
    NoRole,
    #[error("there is no account here for {0}, and accounts are not created at first sign-in; ask your administrator")]
    NoAccount(String),
    #[error("the identity provider has not verified the e-mail address {0}")]
    Unverified(String),
    #[error("the identity provider does not say that it verified the e-mail address {0}; an administrator can trust this provider's addresses in the single sign-on settings")]
    Unvouched(String),
    #[error(
        "the identity provider sent no e-mail address; allow the `email` scope for this client"
    )]
    NoEmail,
    #[error("your account here is disabled; ask your administrator")]
    Disabled,
    #[error("the identity provider does not map {0} to owner, so it cannot take over that owner's account; sign in with your password, or ask an owner to map your group to owner")]
    OwnerUnmapped(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl SsoError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "SSO-0001",
            Self::NotAvailable => "SSO-0002",
            Self::FlowLost => "SSO-0003",
            Self::Provider(_) => "SSO-0004",
            Self::Unreachable(_) => "SSO-0005",
            Self::BadToken(_) => "SSO-0006",
            Self::NoRole => "SSO-0007",
            Self::NoAccount(_) => "SSO-0008",
            Self::Unverified(_) => "SSO-0009",
            Self::NoEmail => "SSO-0010",
            Self::Disabled => "SSO-0011",
            Self::Unvouched(_) => "SSO-0012",
            Self::OwnerUnmapped(_) => "SSO-0013",
            Self::Identity(e) => e.code(),
        }
    }

    /// The word the journal records for a failed sign-in.
    fn reason(&self) -> &'static str {
        match self {
            Self::Invalid { .. } | Self::NotAvailable => "not_configured",
            Self::FlowLost => "state",
            Self::Provider(_) => "provider_refused",
            Self::Unreachable(_) => "provider_unreachable",
            Self::BadToken(_) => "token",
            Self::NoRole => "no_role",
            Self::NoAccount(_) => "no_account",
            Self::Unverified(_) | Self::Unvouched(_) => "email_unverified",
            Self::NoEmail => "no_email",
            Self::Disabled => "disabled",
            Self::OwnerUnmapped(_) => "owner_unmapped",
            Self::Identity(_) => "refused",
        }
    }
}

impl From<crate::store::StoreError> for SsoError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Identity(e.into())
    }
}

impl From<crate::tenants::TenantError> for SsoError {
    fn from(e: crate::tenants::TenantError) -> Self {
        Self::Identity(e.into())
    }
}

impl From<super::Denied> for SsoError {
    fn from(e: super::Denied) -> Self {
        Self::Identity(e.into())
    }
}

impl From<crate::keyring::KeyringError> for SsoError {
    fn from(e: crate::keyring::KeyringError) -> Self {
        Self::Identity(e.into())
    }
}

crate::domain_error!(SsoError, |e| {
    use crate::error::ErrorKind;
    match e {
        // A callback that belongs to no started sign-in is a malformed request, not a
        // failed credential.
        SsoError::Invalid { .. } | SsoError::NotAvailable | SsoError::FlowLost => {
            ErrorKind::Invalid
        }
        SsoError::Provider(_) | SsoError::BadToken(_) => ErrorKind::Unauthenticated,
        SsoError::Unreachable(_) => ErrorKind::Busy,
        SsoError::NoRole
        | SsoError::NoAccount(_)
        | SsoError::Unverified(_)
        | SsoError::Unvouched(_)
        | SsoError::NoEmail
        | SsoError::OwnerUnmapped(_)
        | SsoError::Disabled => ErrorKind::Forbidden,
        SsoError::Identity(e) => crate::error::DomainError::kind(e),
    }
});

/// A tenant's single sign-on settings, as shown (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub enabled: bool,
    pub issuer: String,
    pub client_id: String,
    pub scopes: String,
    /// The claim whose value (a string or a list of strings) picks the role.
    pub role_claim: String,
    /// Claim value to role, first match wins.
    pub role_map: Vec<(String, String)>,
    /// For a person whose claim matches no line; `None` refuses them.
    pub default_role: Option<String>,
    /// Create an account at first sign-in.
    pub jit: bool,
    /// Take the provider's e-mail addresses as verified when its tokens do not say
    /// (`email_verified` absent, as from Microsoft Entra ID). An address the provider says
    /// it has not verified is refused either way.
    pub trust_email: bool,
    pub has_secret: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: String::new(),
            client_id: String::new(),
            scopes: "openid email profile".into(),
            role_claim: "groups".into(),
            role_map: Vec::new(),
            default_role: None,
            jit: false,
            trust_email: false,
            has_secret: false,
        }
    }
}

/// New settings; `client_secret: None` keeps the stored one.
#[derive(Debug)]
pub struct Update {
    pub settings: Settings,
    pub client_secret: Option<SecretString>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> SsoError {
    SsoError::Invalid {
        key,
        message: message.into(),
    }
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic())
}

/// Parses a role map written one `claim value = role` per line.
///
/// # Errors
/// A line without `=`, an empty side, or more than 100 lines.
pub fn parse_role_map(raw: &str) -> Result<Vec<(String, String)>, SsoError> {
    let mut out = Vec::new();
    for (no, line) in raw.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((value, role)) = line.rsplit_once('=') else {
            return Err(invalid(
                "role_map",
                format!("line {}: write `claim value = role`", no + 1),
            ));
        };
        let (value, role) = (value.trim(), role.trim());
        if value.is_empty() || role.is_empty() || value.len() > 256 || role.len() > 64 {
            return Err(invalid(
                "role_map",
                format!(
                    "line {}: both the claim value and the role must be given",
                    no + 1
                ),
            ));
        }
        out.push((value.to_string(), role.to_string()));
    }
    if out.len() > MAX_MAP {
        return Err(invalid("role_map", "at most 100 lines"));
    }
    Ok(out)
}

/// The role-map lines as the settings form shows them.
pub fn role_map_text(map: &[(String, String)]) -> String {
    map.iter()
        .map(|(v, r)| format!("{v} = {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Settings {
    fn check(&self) -> Result<(), SsoError> {
        let issuer = url::Url::parse(self.issuer.trim()).map_err(|_| {
            invalid(
                "issuer",
                "enter the provider's issuer URL, e.g. https://login.example.com/realms/acme",
            )
        })?;
        if issuer.scheme() != "https"
            || issuer.host().is_none()
            || issuer.query().is_some()
            || issuer.fragment().is_some()
            || !issuer.username().is_empty()
        {
            return Err(invalid(
                "issuer",
                "the issuer must be an https:// URL without query or credentials",
            ));
        }
        if !printable(&self.client_id) || self.client_id.len() > 256 {
            return Err(invalid(
                "client_id",
                "enter the client id the provider gave (printable, no spaces)",
            ));
        }
        let scopes: Vec<&str> = self.scopes.split_whitespace().collect();
        if !scopes.contains(&"openid")
            || scopes.len() > 20
            || scopes.iter().any(|s| !printable(s) || s.len() > 64)
        {
            return Err(invalid(
                "scopes",
                "list scopes separated by spaces, including openid, e.g. openid email profile",
            ));
        }
        let claim_ok = !self.role_claim.is_empty()
            && self.role_claim.len() <= 64
            && self
                .role_claim
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
        if !claim_ok {
            return Err(invalid(
                "role_claim",
                "enter a claim name such as groups or roles",
            ));
        }
        Ok(())
    }
}

fn secret_context(tenant: &TenantId) -> Vec<u8> {
    format!("sso-client-secret:{tenant}").into_bytes()
}

fn db(e: rusqlite::Error) -> SsoError {
    SsoError::Identity(accounts::store_err(e))
}

/// The stored settings and the sealed secret, without a permission check (sign-in reads
/// them on behalf of someone not yet signed in).
fn stored(c: &rusqlite::Connection) -> Result<Option<(Settings, Vec<u8>)>, SsoError> {
    c.query_row(
        "SELECT enabled, issuer, client_id, client_secret, scopes, role_claim, role_map, \
         default_role, jit, trust_email FROM sso WHERE id = 1",
        [],
        |r| {
            let map: String = r.get(6)?;
            let secret: Vec<u8> = r.get(3)?;
            Ok((
                Settings {
                    enabled: r.get::<_, i64>(0)? != 0,
                    issuer: r.get(1)?,
                    client_id: r.get(2)?,
                    has_secret: !secret.is_empty(),
                    scopes: r.get(4)?,
                    role_claim: r.get(5)?,
                    role_map: serde_json::from_str(&map).unwrap_or_default(),
                    default_role: r.get(7)?,
                    jit: r.get::<_, i64>(8)? != 0,
                    trust_email: r.get::<_, i64>(9)? != 0,
                },
                secret,
            ))
        },
    )
    .optional()
    .map_err(db)
}

/// The tenant's settings, defaults when none were saved.
///
/// # Errors
/// Permission (`settings.read`) or a storage fault.
pub fn read_blocking<D: Door>(door: &D) -> Result<Settings, SsoError> {
    door.caller().require(Permission::SettingsRead)?;
    Ok(door
        .read_blocking(stored)?
        .map(|(s, _)| s)
        .unwrap_or_default())
}

/// Saves the tenant's settings.
///
/// # Errors
/// Permission (`settings.manage`; mapping anyone to `owner` also needs `owners.manage`), a
/// bad value (named), an unknown role, enabling without a secret, or a storage fault (then
/// nothing changed).
pub fn update_blocking<D: Door>(door: &D, dir: &Directory, update: Update) -> Result<(), SsoError> {
    let caller = door.caller();
    caller.require(Permission::SettingsManage)?;
    let tenant = door
        .tenant_id()
        .cloned()
        .ok_or_else(|| invalid("tenant", "single sign-on is set per tenant"))?;
    let mut s = update.settings;
    s.issuer = s.issuer.trim().trim_end_matches('/').to_string();
    s.client_id = s.client_id.trim().to_string();
    s.scopes = s.scopes.split_whitespace().collect::<Vec<_>>().join(" ");
    s.role_claim = s.role_claim.trim().to_string();
    s.check()?;
    let gives_owner = s
        .role_map
        .iter()
        .map(|(_, r)| r.as_str())
        .chain(s.default_role.as_deref())
        .any(|r| r == "owner");
    if gives_owner {
        caller.require(Permission::OwnersManage)?;
    }
    // Nor any role with more power than the caller's own (a tenant's role can be as strong).
    let mapped: Vec<String> = s
        .role_map
        .iter()
        .map(|(_, r)| r.clone())
        .chain(s.default_role.clone())
        .collect();
    let who = caller.clone();
    door.read_blocking(move |c| {
        mapped
            .iter()
            .try_for_each(|r| accounts::require_covers(c, &who, Realm::Tenant, r))
    })?;
    let sealed = match &update.client_secret {
        Some(secret) => {
            if secret.expose().is_empty() || secret.expose().len() > 1024 {
                return Err(invalid(
                    "client_secret",
                    "enter the client secret (at most 1024 characters)",
                ));
            }
            Some(
                dir.sealer()
                    .seal(&secret_context(&tenant), secret.expose().as_bytes())?,
            )
        }
        None => None,
    };
    door.change_blocking(move |tx| {
        let c = tx.conn();
        for role in s
            .role_map
            .iter()
            .map(|(_, r)| r.as_str())
            .chain(s.default_role.as_deref())
        {
            if accounts::permissions_of(c, Realm::Tenant, role)
                .map_err(db)?
                .is_none()
            {
                return Err(SsoError::Identity(IdentityError::UnknownRole(
                    role.to_string(),
                )));
            }
        }
        let old = stored(c)?;
        let secret = match (&sealed, &old) {
            (Some(new), _) => new.clone(),
            (None, Some((_, old))) => old.clone(),
            (None, None) => Vec::new(),
        };
        if s.enabled && secret.is_empty() {
            return Err(invalid(
                "client_secret",
                "enter the client secret before turning single sign-on on",
            ));
        }
        let map = serde_json::to_string(&s.role_map).unwrap_or_else(|_| "[]".into());
        c.execute(
            "INSERT INTO sso (id, enabled, issuer, client_id, client_secret, scopes, role_claim, \
             role_map, default_role, jit, changed_us, trust_email) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (id) DO UPDATE SET enabled = ?1, issuer = ?2, client_id = ?3, \
             client_secret = ?4, scopes = ?5, role_claim = ?6, role_map = ?7, default_role = ?8, \
             jit = ?9, changed_us = ?10, trust_email = ?11",
            params![
                s.enabled,
                s.issuer,
                s.client_id,
                secret,
                s.scopes,
                s.role_claim,
                map,
                s.default_role,
                s.jit,
                tx.now_us(),
                s.trust_email
            ],
        )
        .map_err(db)?;
        let audit = Audit::new("sso.update", "sso").params(serde_json::json!({
            "enabled": s.enabled,
            "issuer": s.issuer,
            "client_id": s.client_id,
            "scopes": s.scopes,
            "role_claim": s.role_claim,
            "role_map": s.role_map,
            "default_role": s.default_role,
            "jit": s.jit,
            "trust_email": s.trust_email,
            "client_auth_changed": sealed.is_some(),
        }));
        Ok(((), audit))
    })
}

/// Claims beyond the standard ones (the role claim among them), kept as they came.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extra {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for Extra {}

type IdFields = IdTokenFields<
    Extra,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type OidcClient<A, T, U> = openidconnect::Client<
    Extra,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    A,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    T,
    U,
>;

/// A started sign-in, sealed into the browser's cookie until the provider sends it back.
#[derive(Debug, Serialize, Deserialize)]
struct Flow {
    tenant: String,
    state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
    expires_us: i64,
}

const FLOW_CONTEXT: &[u8] = b"sso-flow";

/// What the provider sent back to the callback.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207: the issuer that answered, checked where the provider sends it.
    pub iss: Option<String>,
}

/// Where a sign-in starts: the provider's page to send the browser to, and the sealed
/// cookie to set (`__Host-`, `SameSite=Lax` so it comes back with the provider's redirect).
#[derive(Debug)]
pub struct Started {
    pub location: String,
    pub cookie: String,
}

/// Single sign-on for every tenant: the outbound client and the providers' metadata.
#[derive(Debug)]
pub struct Sso {
    config: crate::config::OutboundConfig,
    outbound: OnceLock<Result<Outbound, String>>,
    metadata: Mutex<HashMap<String, (i64, Arc<CoreProviderMetadata>)>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sso {
    pub fn new(config: &crate::config::OutboundConfig) -> Self {
        Self {
            config: config.clone(),
            outbound: OnceLock::new(),
            metadata: Mutex::new(HashMap::new()),
        }
    }

    fn outbound(&self) -> Result<&Outbound, SsoError> {
        self.outbound
            .get_or_init(|| Outbound::new(&self.config).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| SsoError::Unreachable(e.clone()))
    }

    async fn provider(
        &self,
        issuer: &str,
        now_us: i64,
    ) -> Result<Arc<CoreProviderMetadata>, SsoError> {
        if let Ok(cache) = self.metadata.lock() {
            if let Some((at, m)) = cache.get(issuer) {
                if now_us - at < METADATA_SECS * 1_000_000 {
                    return Ok(m.clone());
                }
            }
        }
        let url = IssuerUrl::new(issuer.to_string()).map_err(|_| invalid("issuer", "not a URL"))?;
        let m = CoreProviderMetadata::discover_async(url, self.outbound()?)
            .await
            .map_err(|e| SsoError::Unreachable(discovery_error(&e)))?;
        let m = Arc::new(m);
        if let Ok(mut cache) = self.metadata.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(issuer.to_string(), (now_us, m.clone()));
        }
        Ok(m)
    }

    /// Whether the provider at `issuer` answers its discovery document, so an administrator
    /// who saves settings learns at once what a person signing in would meet.
    ///
    /// # Errors
    /// [`SsoError::Unreachable`] with the reason (it names hosts and addresses: for the
    /// administrator, never the public sign-in page).
    pub async fn reach(&self, issuer: &str, now_us: i64) -> Result<(), SsoError> {
        self.provider(issuer, now_us).await.map(|_| ())
    }

    /// Starts a sign-in at `tenant`'s provider. `hint` is passed on as `login_hint`.
    ///
    /// # Errors
    /// [`SsoError::NotAvailable`] when the tenant has no single sign-on on (or is not
    /// usable); the provider cannot be reached; a storage fault.
    pub async fn begin(
        &self,
        app: &Arc<App>,
        tenant: &TenantId,
        hint: Option<&Email>,
        redirect_uri: String,
    ) -> Result<Started, SsoError> {
        let settings = enabled_settings(app, tenant).await?;
        let now = app.clock().now_us();
        let meta = self.provider(&settings.0.issuer, now).await?;
        let client: OidcClient<_, _, _> = OidcClient::from_provider_metadata(
            (*meta).clone(),
            ClientId::new(settings.0.client_id.clone()),
            None,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri.clone()).map_err(|_| SsoError::NotAvailable)?,
        );
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in settings
            .0
            .scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
        {
            req = req.add_scope(Scope::new(scope.to_string()));
        }
        if let Some(h) = hint {
            req = req.add_extra_param("login_hint", h.as_str());
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        let flow = Flow {
            tenant: tenant.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            redirect_uri,
            expires_us: now + FLOW_SECS * 1_000_000,
        };
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&flow).unwrap_or_default());
        let sealed = app.directory().sealer().seal(FLOW_CONTEXT, &plain)?;
        Ok(Started {
            location: url.to_string(),
            cookie: b64(&sealed),
        })
    }

    /// Finishes a sign-in: checks the state against the sealed one, redeems the code with
    /// the PKCE verifier, verifies the ID token (signature, issuer, audience, expiry, nonce),
    /// reads the provider's user info, finds or creates the account, and opens a session.
    /// Every outcome is journaled: in the tenant's journal once the cookie names it, in the
    /// system journal before.
    ///
    /// # Errors
    /// Any check failing ([`SsoError`] says which), or the sign-in refused as a password
    /// sign-in would be (disabled account, address lists).
    pub async fn finish(
        &self,
        app: &Arc<App>,
        identity: &signin::Settings,
        cookie: Option<&str>,
        back: Callback,
        client: Client,
    ) -> Result<SignedIn, SsoError> {
        let now = app.clock().now_us();
        let flow = match open_flow(app, cookie, back.state.as_deref(), now) {
            Ok(f) => f,
            Err(e) => {
                signin::journal_unattached(app, "sso_state", client.ip).await;
                return Err(e);
            }
        };
        let tenant = TenantId::parse(&flow.tenant).map_err(|_| SsoError::FlowLost)?;
        let result = self.redeem(app, &tenant, &flow, back, now).await;
        let person = match result {
            Ok(p) => p,
            Err(e) => {
                journal_failure(app, &tenant, &e, client.ip).await;
                return Err(e);
            }
        };
        let (app2, dir, absolute) = (
            app.clone(),
            app.directory().clone(),
            identity.session_absolute_secs,
        );
        let ip = client.ip;
        let outcome = tokio::task::spawn_blocking(move || -> Result<SignedIn, SsoError> {
            let ctx = door::open_blocking(&app2, &tenant, Caller::system(Realm::Tenant), ip)?;
            let account = match find_or_create(&ctx, &dir, &person) {
                Ok(a) => a,
                Err(e) => {
                    let _ = journal_in(&ctx, e.reason(), &e.to_string(), Some(&person.subject));
                    return Err(e);
                }
            };
            // A disabled account is journaled as refused there; the person, who has proved
            // who they are at the provider, is told why.
            signin::record_blocking(&ctx, &dir, account, true, &client, absolute, "sso").map_err(
                |e| match e {
                    IdentityError::BadCredentials => SsoError::Disabled,
                    other => SsoError::from(other),
                },
            )
        })
        .await
        .map_err(|_| {
            SsoError::Identity(IdentityError::Store(
                crate::store::StoreError::JobPanicked {
                    what: "single sign-on".into(),
                },
            ))
        })?;
        outcome
    }

    async fn redeem(
        &self,
        app: &Arc<App>,
        tenant: &TenantId,
        flow: &Flow,
        back: Callback,
        now: i64,
    ) -> Result<Person, SsoError> {
        let (settings, sealed) = enabled_settings(app, tenant).await?;
        if let Some(error) = &back.error {
            let said = back
                .error_description
                .as_deref()
                .map(|d| format!("{error}: {}", clip(d)))
                .unwrap_or_else(|| clip(error));
            return Err(SsoError::Provider(said));
        }
        if let Some(iss) = &back.iss {
            if iss.trim_end_matches('/') != settings.issuer {
                return Err(SsoError::BadToken(
                    "the answer came from another issuer".into(),
                ));
            }
        }
        let code = back
            .code
            .ok_or_else(|| SsoError::Provider("no code in the answer".into()))?;
        let secret = app
            .directory()
            .sealer()
            .unseal(&secret_context(tenant), &sealed)
            .map_err(|_| {
                invalid(
                    "client_secret",
                    "the stored secret cannot be opened; enter it again",
                )
            })?;
        let secret = String::from_utf8(secret.to_vec())
            .map_err(|_| invalid("client_secret", "enter it again"))?;
        let meta = self.provider(&settings.issuer, now).await?;
        let oidc: OidcClient<_, _, _> = OidcClient::from_provider_metadata(
            (*meta).clone(),
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(
            RedirectUrl::new(flow.redirect_uri.clone()).map_err(|_| SsoError::FlowLost)?,
        );
        let http = self.outbound()?;
        let tokens = oidc
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| SsoError::Provider("the provider has no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(http)
            .await
            .map_err(token_error)?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SsoError::BadToken("no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = id_token
            .claims(&oidc.id_token_verifier(), &nonce)
            .map_err(|e| SsoError::BadToken(claims_error(&e)))?;
        let mut person = Person {
            issuer: settings.issuer.clone(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified(),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            role: None,
        };
        let mut extra = claims.additional_claims().claims.clone();
        if let Ok(request) = oidc.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        ) {
            let info: openidconnect::UserInfoClaims<Extra, CoreGenderClaim> = request
                .request_async(http)
                .await
                .map_err(|e| SsoError::Provider(format!("user info: {}", clip(&e.to_string()))))?;
            person.email = person.email.or(info.email().map(|e| e.to_string()));
            person.email_verified = person.email_verified.or(info.email_verified());
            person.name = person
                .name
                .or(info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
            for (k, v) in &info.additional_claims().claims {
                extra.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        person.role = map_role(&settings, extra.get(&settings.role_claim));
        Ok(person)
    }
}

/// Who the provider says signed in.
#[derive(Debug, Clone)]
struct Person {
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    role: Option<String>,
}

/// The first line of the map whose value the claim holds, else the default role.
fn map_role(s: &Settings, claim: Option<&serde_json::Value>) -> Option<String> {
    let values: Vec<&str> = match claim {
        Some(serde_json::Value::String(v)) => vec![v.as_str()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    s.role_map
        .iter()
        .find(|(v, _)| values.contains(&v.as_str()))
        .map(|(_, r)| r.clone())
        .or_else(|| s.default_role.clone())
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn discovery_error<E: std::error::Error>(e: &openidconnect::DiscoveryError<E>) -> String {
    match e {
        openidconnect::DiscoveryError::Request(inner) => clip(&inner.to_string()),
        openidconnect::DiscoveryError::Response(status, _, _) => {
            format!("its discovery document answered HTTP {}", status.as_u16())
        }
        openidconnect::DiscoveryError::Validation(v) => {
            format!("invalid discovery document: {}", clip(v))
        }
        other => clip(&other.to_string()),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: openidconnect::RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> SsoError {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            let said = r
                .error_description()
                .map(|d| format!("{}: {}", r.error().as_ref(), clip(d)))
                .unwrap_or_else(|| r.error().as_ref().to_string());
            SsoError::Provider(said)
        }
        openidconnect::RequestTokenError::Request(inner) => {
            SsoError::Unreachable(clip(&inner.to_string()))
        }
        openidconnect::RequestTokenError::Parse(_, _) => {
            SsoError::Provider("its token answer could not be read".into())
        }
        other => SsoError::Provider(clip(&other.to_string())),
    }
}

fn claims_error(e: &openidconnect::ClaimsVerificationError) -> String {
    use openidconnect::ClaimsVerificationError as C;
    match e {
        C::InvalidNonce(_) => "the nonce does not match this sign-in".into(),
        C::Expired(_) => "the ID token has expired".into(),
        C::InvalidAudience(_) => "the ID token is for another client".into(),
        C::InvalidIssuer(_) => "the ID token is from another issuer".into(),
        C::SignatureVerification(_) => "the ID token's signature does not verify".into(),
        other => clip(&other.to_string()),
    }
}

/// The tenant's settings and sealed secret when single sign-on is on.
async fn enabled_settings(
    app: &Arc<App>,
    tenant: &TenantId,
) -> Result<(Settings, Vec<u8>), SsoError> {
    let (app, tenant) = (app.clone(), tenant.clone());
    let found = tokio::task::spawn_blocking(move || -> Result<_, SsoError> {
        let ctx = match door::open_blocking(&app, &tenant, Caller::system(Realm::Tenant), None) {
            Ok(ctx) => ctx,
            Err(_) => return Ok(None),
        };
        ctx.read_blocking(stored)
    })
    .await
    .map_err(|_| SsoError::NotAvailable)??;
    match found {
        Some((s, secret)) if s.enabled && !secret.is_empty() => Ok((s, secret)),
        _ => Err(SsoError::NotAvailable),
    }
}

/// The sealed flow of the browser's cookie, if it is this installation's, not expired, and
/// its state is the one the provider sent back.
fn open_flow(
    app: &App,
    cookie: Option<&str>,
    state: Option<&str>,
    now_us: i64,
) -> Result<Flow, SsoError> {
    let raw = cookie.ok_or(SsoError::FlowLost)?;
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| SsoError::FlowLost)?;
    let plain = app
        .directory()
        .sealer()
        .unseal(FLOW_CONTEXT, &sealed)
        .map_err(|_| SsoError::FlowLost)?;
    let flow: Flow = serde_json::from_slice(&plain).map_err(|_| SsoError::FlowLost)?;
    let state = state.ok_or(SsoError::FlowLost)?;
    let same = subtle::ConstantTimeEq::ct_eq(flow.state.as_bytes(), state.as_bytes());
    if !bool::from(same) || now_us > flow.expires_us {
        return Err(SsoError::FlowLost);
    }
    Ok(flow)
}

async fn journal_failure(
    app: &Arc<App>,
    tenant: &TenantId,
    e: &SsoError,
    ip: Option<std::net::IpAddr>,
) {
    let (app2, tenant, reason, detail) = (app.clone(), tenant.clone(), e.reason(), e.to_string());
    let done = tokio::task::spawn_blocking(move || -> Result<(), SsoError> {
        let ctx = door::open_blocking(&app2, &tenant, Caller::system(Realm::Tenant), ip)?;
        journal_in(&ctx, reason, &detail, None)
    })
    .await;
    if !matches!(done, Ok(Ok(()))) {
        // The tenant cannot take the entry (deleted meanwhile): the system journal does.
        signin::journal_unattached(app, "sso_unavailable", ip).await;
    }
}

/// A refused single sign-on in the tenant's journal, with the provider's subject when the
/// provider had vouched for someone.
fn journal_in<D: Door>(
    ctx: &D,
    reason: &'static str,
    detail: &str,
    subject: Option<&str>,
) -> Result<(), SsoError> {
    let mut params =
        serde_json::json!({ "method": "sso", "reason": reason, "detail": clip(detail) });
    if let Some(s) = subject {
        params["subject"] = clip(s).into();
    }
    ctx.change_blocking(move |_tx| {
        let audit = Audit::new("auth.sign_in", "unknown")
            .params(params.clone())
            .outcome(crate::audit::Outcome::Failure);
        Ok::<_, SsoError>(((), audit))
    })
}

/// The account of the person: linked by subject, else by verified address (and linked
/// then), else created when the tenant allows it. The mapped role is applied. An address is
/// verified when the provider says so, or says nothing and the tenant trusts it: an address
/// alone must not hand an existing account to whoever holds it at a provider that does not
/// check it.
fn find_or_create<D: Door>(ctx: &D, dir: &Directory, p: &Person) -> Result<Account, SsoError> {
    let linked: Option<String> = ctx.read_blocking(|c| {
        c.query_row(
            "SELECT user_id FROM sso_subjects WHERE issuer = ?1 AND subject = ?2",
            params![p.issuer, p.subject],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)
    })?;
    let account = match linked {
        Some(id) => ctx.read_blocking(|c| {
            accounts::resolve(c, &id)
                .map_err(db)?
                .ok_or_else(|| SsoError::NoAccount(p.email.clone().unwrap_or_default()))
        })?,
        None => {
            let email = p.email.as_deref().ok_or(SsoError::NoEmail)?;
            let email = Email::parse(email).map_err(|_| SsoError::NoEmail)?;
            let settings = ctx
                .read_blocking(stored)?
                .map(|(s, _)| s)
                .unwrap_or_default();
            match p.email_verified {
                Some(true) => {}
                None if settings.trust_email => {}
                None => return Err(SsoError::Unvouched(email.to_string())),
                Some(false) => return Err(SsoError::Unverified(email.to_string())),
            }
            let existing =
                ctx.read_blocking(|c| accounts::resolve(c, email.as_str()).map_err(db))?;
            let account = match existing {
                Some(a) => {
                    // Linked by address, the account goes to whoever the provider says holds
                    // it. An owner's only to a provider that maps them to owner: whoever set
                    // a provider up could otherwise take an owner's account by its address
                    // (the last owner keeps the role the provider would take away).
                    if a.role == "owner" && p.role.as_deref() != Some("owner") {
                        return Err(SsoError::OwnerUnmapped(email.to_string()));
                    }
                    a
                }
                None => {
                    if !settings.jit {
                        return Err(SsoError::NoAccount(email.to_string()));
                    }
                    let role = p.role.clone().ok_or(SsoError::NoRole)?;
                    let name = p
                        .name
                        .as_deref()
                        .and_then(|n| crate::text::display_name(n, 100).ok());
                    accounts::create_sso_blocking(
                        ctx,
                        dir,
                        &NewAccount {
                            email: email.to_string(),
                            name,
                            role,
                        },
                    )?
                }
            };
            link(ctx, p, &account.id)?;
            account
        }
    };
    match &p.role {
        None => Err(SsoError::NoRole),
        Some(role) if *role != account.role => {
            match accounts::set_role_blocking(ctx, account.id.as_str(), role) {
                Ok(changed) => Ok(changed),
                // The provider cannot take the last owner away; the account keeps its role.
                Err(IdentityError::LastOwner(_)) => Ok(account),
                Err(e) => Err(e.into()),
            }
        }
        Some(_) => Ok(account),
    }
}

/// Links the provider's subject to the account. A one-time password never used is removed
/// on the way: the person signs in through the provider now, and an unused initial
/// credential should not stay valid beside it.
fn link<D: Door>(ctx: &D, p: &Person, user: &UserId) -> Result<(), SsoError> {
    let (issuer, subject, user) = (p.issuer.clone(), p.subject.clone(), user.clone());
    ctx.change_blocking(move |tx| {
        let c = tx.conn();
        c.execute(
            "INSERT INTO sso_subjects (issuer, subject, user_id, created_us) VALUES (?1, ?2, ?3, ?4)",
            params![issuer, subject, user.as_str(), tx.now_us()],
        )
        .map_err(db)?;
        let removed = c
            .execute(
                "UPDATE users SET password_hash = NULL, must_change = 0, changed_us = ?2 \
                 WHERE id = ?1 AND must_change = 1",
                params![user.as_str(), tx.now_us()],
            )
            .map_err(db)?;
        let audit = Audit::new("sso.link", user.as_str()).params(serde_json::json!({
            "issuer": issuer,
            "subject": clip(&subject),
            "unused_initial_login_removed": removed > 0,
        }));
        Ok(((), audit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_maps_parse_and_refuse_by_line() {
        let m = parse_role_map("admins = admin\n\n  staff=operator \n").unwrap();
        assert_eq!(
            m,
            vec![
                ("admins".to_string(), "admin".to_string()),
                ("staff".to_string(), "operator".to_string())
            ]
        );
        let e = parse_role_map("admins = admin\nnot a line")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_role_map(" = admin").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let many = "g = operator\n".repeat(101);
        assert!(parse_role_map(&many).is_err());
    }

    #[test]
    fn the_first_matching_line_picks_the_role() {
        let s = Settings {
            role_map: parse_role_map("ops = operator\nadmins = admin").unwrap(),
            ..Settings::default()
        };
        let groups = serde_json::json!(["admins", "ops"]);
        assert_eq!(map_role(&s, Some(&groups)).as_deref(), Some("operator"));
        let one = serde_json::json!("admins");
        assert_eq!(map_role(&s, Some(&one)).as_deref(), Some("admin"));
        assert_eq!(map_role(&s, Some(&serde_json::json!(["x"]))), None);
        assert_eq!(map_role(&s, None), None);
        let with_default = Settings {
            default_role: Some("auditor".into()),
            ..s
        };
        assert_eq!(
            map_role(&with_default, Some(&serde_json::json!(7))).as_deref(),
            Some("auditor")
        );
    }

    #[test]
    fn settings_are_checked_before_they_are_saved() {
        let good = Settings {
            issuer: "https://idp.example.com/realms/acme".into(),
            client_id: "strongroom".into(),
            ..Settings::default()
        };
        assert!(good.check().is_ok());
        for (bad, key) in [
            (
                Settings {
                    issuer: "http://idp.example.com".into(),
                    ..good.clone()
                },
                "issuer",
            ),
            (
                Settings {
                    issuer: "not a url".into(),
                    ..good.clone()
                },
                "issuer",
            ),
            (
                Settings {
                    client_id: "has space".into(),
                    ..good.clone()
                },
                "client_id",
            ),
            (
                Settings {
                    scopes: "email profile".into(),
                    ..good.clone()
                },
                "scopes",
            ),
            (
                Settings {
                    role_claim: "a b".into(),
                    ..good.clone()
                },
                "role_claim",
            ),
        ] {
            match bad.check() {
                Err(SsoError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}

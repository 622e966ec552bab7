// Test identity provider for tests/it/sso.rs, built on oidc-provider 9.
//
//   node tests/oidc/idp.mjs CONFIG_JSON_PATH
//
// CONFIG_JSON_PATH holds:
//   {
//     "cert": "/path/server.pem", "key": "/path/server.key",   // TLS for 127.0.0.1
//     "signing_key": "/path/signing.key",   // PKCS#8 P-256 key that signs ID tokens (ES256)
//     "clients": [{ "client_id": "...", "client_secret": "...",
//                   "redirect_uris": ["https://..."], "code_ttl_secs": 60 }],
//     "accounts": [{ "sub": "...", "email": "...", "email_verified": true,
//                    "name": "...", "groups": ["..."] }]   // extra keys become claims too
//   }
//
// Once ready it prints exactly one line to stdout,
//   idp: listening on https://127.0.0.1:<port>
// and runs until killed or until its stdin closes (the test keeps it piped, so
// the IdP never outlives the test). Everything else goes to stderr.
//
// Logins need no human: GET /interaction/:uid picks the account whose email is
// the login_hint (else the first account) and grants login and consent at once;
// a login_hint naming no account ends the flow with error=access_denied.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';

import Provider, { interactionPolicy } from 'oidc-provider';

// stdout carries only the "listening" line the test waits for; oidc-provider
// prints notices with console.info, so send those to stderr.
console.info = console.error;
console.log = console.error;

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node idp.mjs CONFIG_JSON_PATH');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const accounts = config.accounts ?? [];
const clients = config.clients ?? [];
const codeTtl = new Map(clients.map((c) => [c.client_id, c.code_ttl_secs ?? 60]));

const standardClaims = new Set(['sub', 'email', 'email_verified', 'name', 'groups']);
const extraClaims = [...new Set(accounts.flatMap((a) => Object.keys(a)))]
  .filter((k) => !standardClaims.has(k));

const byEmail = (email) => accounts.find(
  (a) => typeof a.email === 'string' && a.email.toLowerCase() === String(email).toLowerCase(),
);

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

// The ID-token signing key (P-256, ES256) comes from the test, fresh per run, so the
// library's development keys (and their warning) are not used. Not generated here: Node 20
// can deadlock when a key-generation job is collected while that key is exported to JWK.
const signingKey = {
  ...crypto.createPrivateKey(fs.readFileSync(config.signing_key)).export({ format: 'jwk' }),
  alg: 'ES256', use: 'sig', kid: crypto.randomUUID(),
};

// oidc-provider only honours login_hint when it has to prompt; with a session
// cookie for another account already in the client's jar it would silently
// reuse that account. Make a mismatching login_hint force a new login.
const policy = interactionPolicy.base();
policy.get('login').checks.push(new interactionPolicy.Check(
  'login_hint_mismatch',
  'login_hint names another account than the current session',
  (ctx) => {
    const hint = ctx.oidc.params.login_hint;
    const sub = ctx.oidc.session.accountId;
    if (hint === undefined || sub === undefined) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
    const current = accounts.find((a) => a.sub === sub);
    return current && current === byEmail(hint)
      ? interactionPolicy.Check.NO_NEED_TO_PROMPT
      : interactionPolicy.Check.REQUEST_PROMPT;
  },
));

const server = https.createServer({
  cert: fs.readFileSync(config.cert),
  key: fs.readFileSync(config.key),
});

// The issuer must carry the ephemeral port, so the provider exists only after listen.
let provider;
let callback;

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction cookie does not match the URL');
  const { params, prompt } = details;

  const account = params.login_hint === undefined ? accounts[0] : byEmail(params.login_hint);
  if (!account) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: params.login_hint === undefined ? 'no accounts configured' : 'no such account',
    }, { mergeWithLastSubmission: false });
    return;
  }

  // oidc-provider switches accounts inside one session only through an
  // auto-submitted logout form, which a cookie-jar HTTP client never posts.
  // End the other account's session here so the resume goes straight on.
  if (details.session && details.session.accountId !== account.sub) {
    const old = details.session.cookie && await provider.Session.find(details.session.cookie);
    if (old) await old.destroy();
    delete details.session;
    await details.persist();
  }

  const grant = new provider.Grant({ accountId: account.sub, clientId: params.client_id });
  grant.addOIDCScope('openid email profile groups');
  const missing = prompt.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();

  await provider.interactionFinished(req, res, {
    login: { accountId: account.sub },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

server.on('request', (req, res) => {
  const m = req.method === 'GET' && /^\/interaction\/([^/?]+)(?:\?.*)?$/.exec(req.url);
  if (!m) {
    callback(req, res);
    return;
  }
  interaction(req, res, decodeURIComponent(m[1])).catch((err) => {
    console.error('idp: interaction failed:', err);
    if (!res.headersSent) {
      res.statusCode = 400;
      res.setHeader('Content-Type', 'text/plain');
    }
    res.end(`interaction failed: ${err.message}\n`);
  });
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;

  provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys: [signingKey] },
    cookies: { keys: ['strongroom-test-idp-cookie-key-7f3c2a9d1e'] },
    clientAuthMethods: ['client_secret_basic'],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      // Account keys beyond the standard ones ride on the openid scope so a
      // test can add any claim; like the rest they are served by userinfo.
      openid: ['sub', ...extraClaims],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    interactions: {
      policy,
      url: (ctx, i) => `/interaction/${i.uid}`,
    },
    ttl: {
      AuthorizationCode: (ctx, code, client) => codeTtl.get(client.clientId) ?? 60,
      AccessToken: 3600,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    async findAccount(ctx, id) {
      const account = accounts.find((a) => a.sub === id);
      if (!account) return undefined;
      return { accountId: account.sub, claims: async () => ({ ...account }) };
    },
    renderError(ctx, out, error) {
      console.error('idp: error page:', out, error?.stack ?? '');
      ctx.type = 'text/plain';
      ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
    },
  });
  // oidc-provider 9 takes a client secret from the form body as readily as
  // from Basic auth; refuse the former so tests catch a client that posts it.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token' && !/^basic /i.test(ctx.get('authorization'))) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Basic realm="idp"');
      ctx.body = { error: 'invalid_client', error_description: 'client_secret_basic is required' };
      return;
    }
    await next();
  });
  callback = provider.callback();

  for (const ev of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'introspection.error', 'revocation.error', 'end_session.error']) {
    provider.on(ev, (ctx, err) => console.error(`idp: ${ev}:`, err?.message ?? err, err?.error_detail ?? ''));
  }

  process.stdout.write(`idp: listening on ${issuer}\n`);
});

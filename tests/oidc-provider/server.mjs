// A real OpenID Connect provider (npm `oidc-provider`) for Roster's tests of
// single sign-on. Started by tests/src/oidc.rs (roster_tests::oidc) with the
// machine's Node; never used in production.
//
// Configuration, one JSON document in the environment variable
// ROSTER_OIDC_CONFIG:
//   {
//     "port": 0,                       // 0: any free port (printed, see below)
//     "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."] },
//     "accounts": [ { "sub": "...", "email": "...", "email_verified": true, "password": "..." } ],
//     "id_token_claims": true          // false: email only from the userinfo endpoint
//   }
// Once listening it prints one line `listening <issuer>` on stdout.
//
// The login page (GET /interaction/<uid>) is a plain form:
//   form#login  input#email[name=email]  input#password[name=password]  button#submit
// A wrong email or password renders the form again with p#error.
// Consent is implied for the one (first-party) client.
//
// PKCE (S256) is required of every authorization request.
//
// Test-only endpoints, for the relying party's negative tests (tokens the
// provider itself would never issue, signed with its real keys):
//   POST /_test/id-token  {"claims": {...}, "alg": "RS256"|"none"|"HS256", "key": "current"|"next"}
//        -> the compact JWT. "HS256" signs with the client secret; "next"
//           signs with a key the JWKS does not publish until /_test/rotate.
//   POST /_test/rotate    -> publishes the "next" key in /jwks (key rotation).
import { createServer } from 'node:http';
import { generateKeyPairSync, createHmac, createSign, randomUUID, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.ROSTER_OIDC_CONFIG ?? '{}');
for (const field of ['client', 'accounts']) {
  if (!config[field]) {
    console.error(`ROSTER_OIDC_CONFIG: missing "${field}"`);
    process.exit(2);
  }
}

function rsaKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    jwk: { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' },
    pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
  };
}
const currentKey = rsaKey();
const nextKey = rsaKey();
let rotated = false;

function publicJwk(jwk) {
  const { kty, n, e, kid, alg, use } = jwk;
  return { kty, n, e, kid, alg, use };
}

const accounts = new Map(config.accounts.map((a) => [a.sub, a]));

const server = createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client.client_id,
    client_secret: config.client.client_secret,
    redirect_uris: config.client.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [currentKey.jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  features: { devInteractions: { enabled: false } },
  // "id_token_claims": false keeps email out of the ID token (then only the
  // userinfo endpoint answers it), as some providers do.
  conformIdTokenClaims: config.id_token_claims === false,
  pkce: { required: () => true },
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: account.email, email_verified: account.email_verified, name: account.email };
      },
    };
  },
  // First-party client: the grant the login implies, no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body><main><h1>Test provider: sign in</h1>
${error ? `<p id="error" role="alert">${escape(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${escape(uid)}/login">
<label for="email">Email</label> <input id="email" name="email" type="email" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password">
<button id="submit" type="submit">Sign in</button>
</form></main></body></html>`;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function mint({ claims, alg = 'RS256', key = 'current' }) {
  const signer = key === 'next' ? nextKey : currentKey;
  const header = alg === 'RS256' ? { alg, typ: 'JWT', kid: signer.jwk.kid } : { alg, typ: 'JWT' };
  const input = `${b64url(header)}.${b64url(claims)}`;
  if (alg === 'none') return `${input}.`;
  if (alg === 'HS256') {
    return `${input}.${createHmac('sha256', config.client.client_secret).update(input).digest('base64url')}`;
  }
  if (alg !== 'RS256') throw new Error(`unsupported alg ${alg}`);
  const signature = createSign('RSA-SHA256').update(input).sign(signer.pem).toString('base64url');
  return `${input}.${signature}`;
}

// Routes the harness owns, in front of the provider's.
provider.use(async (ctx, next) => {
  const { path, method } = ctx;
  if (method === 'GET' && path === '/jwks') {
    const keys = [publicJwk(currentKey.jwk)];
    if (rotated) keys.push(publicJwk(nextKey.jwk));
    ctx.type = 'application/jwk-set+json';
    ctx.body = JSON.stringify({ keys });
    return;
  }
  if (method === 'POST' && path === '/_test/rotate') {
    rotated = true;
    ctx.status = 204;
    return;
  }
  if (method === 'POST' && path === '/_test/id-token') {
    ctx.type = 'text/plain';
    ctx.body = mint(JSON.parse(await readBody(ctx.req)));
    return;
  }
  const m = path.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!m) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== m[1]) ctx.throw(400, 'interaction mismatch');
  if (method === 'GET' && !m[2]) {
    ctx.type = 'html';
    ctx.body = loginPage(details.uid);
    return;
  }
  if (method === 'POST' && m[2]) {
    const form = new URLSearchParams(await readBody(ctx.req));
    const account = config.accounts.find((a) => a.email === form.get('email'));
    if (!account || account.password !== form.get('password')) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'Wrong email or password.');
      return;
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
      login: { accountId: account.sub },
    }, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return;
  }
  return next();
});

server.on('request', provider.callback());
process.stdout.write(`listening ${issuer}\n`);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));

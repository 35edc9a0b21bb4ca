// Gets a token from tokenmint with openid-client, the way its documentation shows: discovery(),
// then clientCredentialsGrant(). Usage:
//   node token.mjs ISSUER METHOD ALGORITHM RESOURCE [SCOPE]
// METHOD: client_secret_basic | client_secret_post | private_key_jwt; ALGORITHM: oidc | oauth2
// (which well-known document discovery reads). Credentials come from the environment, never argv:
// TOKENMINT_CLIENT_ID, TOKENMINT_CLIENT_SECRET, or TOKENMINT_CLIENT_KEY (PKCS#8 PEM, ES256) and
// TOKENMINT_CLIENT_KID. Prints one JSON object: the token response and what went on the wire
// (parameter names, how Basic credentials were encoded: never the credentials themselves).
import * as client from 'openid-client';
import { decodeJwt, decodeProtectedHeader, importPKCS8 } from 'jose';

const [issuer, method, algorithm, resource, scope] = process.argv.slice(2);
const env = process.env;

const sent = [];
async function observe(url, options) { // a customFetch that only records, then calls fetch
  sent.push({ url, headers: new Headers(options.headers), body: options.body ? String(options.body) : '' });
  return fetch(url, options);
}

function formDecode(value) {
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

function describe(request) {
  const form = new URLSearchParams(request.body);
  const wire = { parameters: [...form.keys()].sort(), basic: null, assertion: null };
  const authorization = request.headers.get('authorization');
  if (authorization?.startsWith('Basic ')) {
    const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8');
    const [user, password] = decoded.split(':');
    wire.basic = {
      raw: user === env.TOKENMINT_CLIENT_ID && password === env.TOKENMINT_CLIENT_SECRET,
      form_urlencoded: formDecode(user) === env.TOKENMINT_CLIENT_ID
        && formDecode(password) === env.TOKENMINT_CLIENT_SECRET,
    };
  }
  if (form.has('client_assertion')) {
    const claims = decodeJwt(form.get('client_assertion'));
    wire.assertion = { header: decodeProtectedHeader(form.get('client_assertion')), aud: claims.aud,
                       lifetime: claims.exp - claims.iat, iss: claims.iss, sub: claims.sub };
  }
  return wire;
}

async function authentication() {
  if (method === 'client_secret_basic') return client.ClientSecretBasic(env.TOKENMINT_CLIENT_SECRET);
  if (method === 'client_secret_post') return client.ClientSecretPost(env.TOKENMINT_CLIENT_SECRET);
  if (method === 'private_key_jwt') {
    const key = await importPKCS8(env.TOKENMINT_CLIENT_KEY, 'ES256');
    return client.PrivateKeyJwt({ key, kid: env.TOKENMINT_CLIENT_KID });
  }
  throw new Error(`unknown method ${method}`);
}

let result;
try {
  const config = await client.discovery(new URL(issuer), env.TOKENMINT_CLIENT_ID, undefined, await authentication(), {
    algorithm, timeout: 10, execute: [client.allowInsecureRequests], [client.customFetch]: observe,
  });
  const metadata = config.serverMetadata();
  const token = await client.clientCredentialsGrant(config, scope ? { resource, scope } : { resource });
  result = { ok: true, issuer: metadata.issuer, discovered_from: sent[0].url, token_endpoint: metadata.token_endpoint,
             token: { ...token }, wire: describe(sent.find((request) => request.url === metadata.token_endpoint)) };
} catch (error) {
  // ResponseBodyError carries the OAuth error, WWWAuthenticateChallengeError the parsed challenges;
  // both keep the Response (others may have it as their cause)
  const response = error.response ?? (error.cause instanceof Response ? error.cause : null);
  result = { ok: false, name: error.name, code: error.code, error: error.error, status: response?.status,
             challenges: Array.isArray(error.cause) ? error.cause : null,
             body: response && !response.bodyUsed ? await response.text().catch(() => null) : null,
             message: error.message };
}
process.stdout.write(JSON.stringify(result));

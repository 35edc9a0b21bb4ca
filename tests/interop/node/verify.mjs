// Verifies an access token with jose as a Node resource server would: the issuer's JWKS (from its
// RFC 8414 metadata, createRemoteJWKSet), then jwtVerify checking iss, aud and typ at+jwt.
// Usage: TOKENMINT_ACCESS_TOKEN=… node verify.mjs ISSUER AUDIENCE
// Prints one JSON object: { ok, header, payload } or { ok: false, code, claim }.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, audience] = process.argv.slice(2);

let result;
try {
  const metadata = `${issuer}/.well-known/oauth-authorization-server`;
  const response = await fetch(metadata, { signal: AbortSignal.timeout(10000) });
  const { jwks_uri: jwksUri } = await response.json();
  const keys = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: 10000 });
  const { payload, protectedHeader } = await jwtVerify(process.env.TOKENMINT_ACCESS_TOKEN, keys, {
    issuer, audience, typ: 'at+jwt', algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    requiredClaims: ['sub', 'client_id', 'jti', 'iat', 'exp'],
  });
  result = { ok: true, header: protectedHeader, payload, jwks_uri: jwksUri };
} catch (error) {
  result = { ok: false, code: error.code, claim: error.claim, message: error.message };
}
process.stdout.write(JSON.stringify(result));

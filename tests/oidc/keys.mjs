// Signing keys for the test provider: writes OUT_JSON, a JWKS with a new RSA key first (the one
// that signs) followed by the keys of PREVIOUS_JSON, if given — a key rotation.
//
// Usage: node keys.mjs OUT_JSON [PREVIOUS_JSON]
import crypto from 'node:crypto';
import fs from 'node:fs';

const [out, previous] = process.argv.slice(2);
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
const keys = previous ? JSON.parse(fs.readFileSync(previous, 'utf8')).keys : [];
fs.writeFileSync(out, JSON.stringify({ keys: [key, ...keys] }), { mode: 0o600 });

// The OpenID Provider for Orrery's OIDC login test: oidc-provider (OpenID Certified) with its
// development login pages, one confidential client (Orrery), accounts and their groups read
// from a JSON file at every login (so the test can change them), and signing keys from a JWKS
// file (so the test can rotate them: the first key signs).
//
// Usage: node provider.mjs PORT CLIENT_SECRET REDIRECT_URI USERS_JSON KEYS_JSON
import fs from 'node:fs';
import Provider from 'oidc-provider';

const [port, clientSecret, redirectUri, usersFile, keysFile] = process.argv.slice(2);
const users = () => JSON.parse(fs.readFileSync(usersFile, 'utf8'));
const jwks = JSON.parse(fs.readFileSync(keysFile, 'utf8'));

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'orrery',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks,
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  pkce: { required: () => true },
  cookies: { keys: ['orrery-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const user = users()[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        const now = users()[id] || user;
        return { sub: id, preferred_username: id, name: id, email: now.email, groups: now.groups };
      },
    };
  },
});
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on http://127.0.0.1:${port}`);
});

// Signing in to the stage's OpenID Connect issuer from the page, as a public client: the
// authorization code flow with PKCE (RFC 7636, S256). The state and the verifier wait in
// sessionStorage while the issuer's login page is open; the tokens are kept in sessionStorage
// only (never in the page's URL, never logged) and go when the tab does.
//
// settings is config.json's signIn: {issuer, clientId, authorizationEndpoint, tokenEndpoint,
// endSessionEndpoint, scope}.

const PENDING = "wschat.signin.pending";
const TOKENS = "wschat.signin.tokens";
// An ID token that expires sooner than this is refreshed before a connect.
const REFRESH_MARGIN_MS = 60_000;
// What the issuer adds to the page's URL on its way back.
const ANSWER_PARAMS = ["code", "state", "error", "error_description", "error_uri", "iss", "session_state"];

export class SignInError extends Error {}

const stored = {
  get(key) {
    try { return JSON.parse(sessionStorage.getItem(key)); } catch { return null; }
  },
  set(key, value) { sessionStorage.setItem(key, JSON.stringify(value)); },
  remove(key) { sessionStorage.removeItem(key); },
};

function base64url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function challengeOf(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

// A JWT's claims, not verified: the page only needs to know when its token expires (the
// stage's authorizer checks the signature). null when it is not a JWT.
export function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="));
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export class SignIn {
  constructor(settings) {
    this.settings = settings;
  }

  // Where the issuer sends the person back: this page, without its query or fragment (the
  // callback URL registered for the app client).
  get redirectUri() {
    return `${location.origin}${location.pathname}`;
  }

  get signedIn() {
    return typeof stored.get(TOKENS)?.idToken === "string";
  }

  // To the issuer's login page. Resolves only when it cannot go (then throws SignInError).
  async begin() {
    if (!globalThis.crypto?.subtle) {
      throw new SignInError("Signing in needs a secure page: open it over https (or on localhost).");
    }
    const state = randomString(16);
    const verifier = randomString(32);
    stored.set(PENDING, { state, verifier, redirectUri: this.redirectUri });
    const url = new URL(this.settings.authorizationEndpoint);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("client_id", this.settings.clientId);
    url.searchParams.set("redirect_uri", this.redirectUri);
    url.searchParams.set("scope", this.settings.scope);
    url.searchParams.set("state", state);
    url.searchParams.set("code_challenge", await challengeOf(verifier));
    url.searchParams.set("code_challenge_method", "S256");
    location.assign(url.toString());
  }

  // When this page is the issuer's answer (?code=&state= or ?error=): takes the code and state
  // out of the URL, checks the state and redeems the code. true when that signed the person
  // in, false when the page was not an answer; SignInError when the answer is refused.
  async completeRedirect() {
    const params = new URLSearchParams(location.search);
    if (!params.has("code") && !params.has("error")) return false;
    const answer = Object.fromEntries(ANSWER_PARAMS.map((name) => [name, params.get(name)]));
    for (const name of ANSWER_PARAMS) params.delete(name);
    const rest = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
    const pending = stored.get(PENDING);
    stored.remove(PENDING); // one answer per request: a replayed URL finds nothing to match
    if (answer.error) {
      throw new SignInError(`The sign-in did not complete: ${answer.error_description || answer.error}.`);
    }
    if (!pending || !answer.state || answer.state !== pending.state || !answer.code) {
      throw new SignInError("That sign-in answer was not for this page — sign in again.");
    }
    this.keep(await this.requestTokens({
      grant_type: "authorization_code",
      code: answer.code,
      redirect_uri: pending.redirectUri,
      code_verifier: pending.verifier,
    }));
    return true;
  }

  async requestTokens(fields) {
    let response;
    try {
      response = await fetch(this.settings.tokenEndpoint, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ client_id: this.settings.clientId, ...fields }),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new SignInError("The sign-in service could not be reached — try again.");
    }
    let answer = {};
    try { answer = await response.json(); } catch { /* not JSON: refused below */ }
    if (!response.ok || typeof answer.id_token !== "string") {
      throw new SignInError(`The sign-in service refused (${answer.error || response.status}) — sign in again.`);
    }
    return answer;
  }

  keep(answer) {
    // A refresh answer may carry no new refresh token: the old one stays good.
    const refreshToken = answer.refresh_token || stored.get(TOKENS)?.refreshToken || null;
    stored.set(TOKENS, { idToken: answer.id_token, refreshToken });
  }

  // The ID token to connect with, refreshed first when it expires within a minute; null when
  // there is none (or it cannot be refreshed) and the person has to sign in again.
  async idToken() {
    const tokens = stored.get(TOKENS);
    if (typeof tokens?.idToken !== "string") return null;
    const expires = claimsOf(tokens.idToken)?.exp;
    if (typeof expires === "number" && expires * 1000 - Date.now() > REFRESH_MARGIN_MS) return tokens.idToken;
    if (!tokens.refreshToken) {
      this.forget();
      return null;
    }
    try {
      this.keep(await this.requestTokens({ grant_type: "refresh_token", refresh_token: tokens.refreshToken }));
    } catch {
      this.forget();
      return null;
    }
    return stored.get(TOKENS).idToken;
  }

  forget() {
    stored.remove(TOKENS);
  }

  // Clears this tab's session storage, then goes to the issuer's end-session endpoint when it
  // has one (true) or stays (false).
  signOut() {
    sessionStorage.clear();
    const end = this.settings.endSessionEndpoint;
    if (!end) return false;
    const url = new URL(end);
    url.searchParams.set("client_id", this.settings.clientId);
    url.searchParams.set("post_logout_redirect_uri", this.redirectUri);
    location.assign(url.toString());
    return true;
  }
}

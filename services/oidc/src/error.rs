//! What can go wrong in a single sign-on, each saying what to fix.

/// An error of discovery or of a sign-in. Its message is for the
/// administrator who configures single sign-on (or who signs in): it names
/// what is wrong and what to do, and never holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the OpenID provider at {url} cannot be reached ({reason}): check the issuer URL and that Roster can reach it")]
    Unreachable { url: String, reason: String },

    #[error("{url} answered HTTP {status}, not a valid document: check the issuer URL (the provider must serve /.well-known/openid-configuration below it)")]
    BadStatus { url: String, status: u16 },

    #[error("{url} is not a valid {what}: {reason}")]
    BadDocument {
        url: String,
        what: &'static str,
        reason: String,
    },

    #[error("the provider at {configured} announces the issuer {announced}: set the issuer to exactly {announced}")]
    WrongIssuer {
        configured: String,
        announced: String,
    },

    #[error("the OpenID provider does not support {what}, which Roster requires")]
    Unsupported { what: String },

    #[error("the sign-in answer does not belong to this sign-in (its state differs): start the sign-in again")]
    StateMismatch,

    #[error("the sign-in took longer than {minutes} minutes: start it again")]
    LoginExpired { minutes: u64 },

    #[error("the OpenID provider refused the client's id or secret ({error}): check the client id and secret configured for single sign-on")]
    ClientRefused { error: String },

    #[error("the OpenID provider refused the authorization code ({error}{}): start the sign-in again", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    CodeRefused {
        error: String,
        description: Option<String>,
    },

    #[error(
        "the OpenID provider answered no ID token: is the `openid` scope allowed for this client?"
    )]
    NoIdToken,

    #[error("the ID token is signed with {alg}, which Roster refuses: configure the provider to sign ID tokens with an asymmetric key (RS256, PS256, ES256 or EdDSA)")]
    AlgorithmRefused { alg: String },

    #[error("the ID token is signed with a key the provider does not publish (kid {kid}) even after its keys were fetched again")]
    UnknownKey { kid: String },

    #[error(
        "the ID token's signature is not valid ({reason}): it was not issued by this provider"
    )]
    BadSignature { reason: String },

    #[error("the ID token was issued by {found}, not by the configured issuer {expected}")]
    TokenIssuer { expected: String, found: String },

    #[error("the ID token is for another client (audience {found}), not for {expected}: check the client id")]
    WrongAudience { expected: String, found: String },

    #[error("the ID token has expired or is not valid yet ({reason}): check the clocks of Roster and of the provider")]
    Expired { reason: String },

    #[error("the ID token's nonce does not match this sign-in: start the sign-in again")]
    NonceMismatch,

    #[error("the ID token is not valid: {reason}")]
    BadIdToken { reason: String },

    #[error("the provider's userinfo answer is for another subject than the ID token")]
    UserinfoSubject,
}

//! Bearer tokens for OAUTHBEARER logins to clusters: one cached provider
//! per token source (a token file re-read at each use, or the
//! client-credentials grant cached until shortly before expiry), for the
//! logins of kflip's own connections and of proxied sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::auth::oauth::{TokenProvider, TokenSource};
use crate::config::TokenRef;

fn providers() -> &'static Mutex<HashMap<TokenRef, Arc<TokenProvider>>> {
    static P: OnceLock<Mutex<HashMap<TokenRef, Arc<TokenProvider>>>> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// The provider of `token`'s source, made on first use. Errors name the
/// source, never a secret.
pub fn provider(token: &TokenRef) -> Result<Arc<TokenProvider>, String> {
    let mut all = providers().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = all.get(token) {
        return Ok(p.clone());
    }
    let source = match token {
        TokenRef::File(path) => TokenSource::File(path.clone()),
        TokenRef::ClientCredentials {
            endpoint,
            client_id,
            client_secret,
            scope,
        } => TokenSource::ClientCredentials {
            endpoint: endpoint.clone(),
            client_id: client_id.clone(),
            client_secret: client_secret.read().map_err(|e| e.to_string())?,
            scope: scope.clone(),
        },
    };
    let p = Arc::new(TokenProvider::new(source).map_err(|e| e.to_string())?);
    all.insert(token.clone(), p.clone());
    Ok(p)
}

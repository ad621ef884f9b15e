use super::server::ServerState;
use super::*;
use crate::auth::Secret;

fn users(mech: Mechanism) -> impl Fn(&str) -> Option<StoredCredential> {
    let alice = StoredCredential::derive("pencil", b"alice salt", 4096, mech);
    move |user: &str| (user == "alice").then(|| alice.clone())
}

/// The server's verdict on a login, and the client's on the server.
type Verdicts = (Result<(Vec<u8>, String)>, Option<Result<()>>);

/// A full login.
fn login(mech: Mechanism, user: &str, password: &str) -> Verdicts {
    let mut client = ScramClient::new(user, Secret::new(password), mech).unwrap();
    let mut server = ScramServer::new(mech, users(mech));
    let first = server.server_first(&client.client_first()).unwrap();
    let last = client.client_final(&first).unwrap();
    let verdict = server.server_final(&last);
    let checked = verdict.as_ref().ok().map(|(v, _)| client.verify(v));
    (verdict, checked)
}

#[test]
fn rfc7677_sha256_example() {
    let mech = Mechanism::Sha256;
    let mut client = ScramClient::new("user", Secret::new("pencil"), mech).unwrap();
    client.nonce = "rOprNGfwEbeRWgbNEkqO".into();
    assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let client_final = client.client_final(server_first).unwrap();
    assert_eq!(
        String::from_utf8(client_final).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    client
        .verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();

    // The server side of the same exchange, from the stored credential.
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let cred = StoredCredential::derive("pencil", &salt, 4096, mech);
    let mut server = ScramServer::new(mech, move |u: &str| (u == "user").then_some(cred));
    let first = server
        .server_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .unwrap();
    // The server's nonce is random; the RFC's proof covers the RFC's nonce,
    // so swap it in to check the server's arithmetic.
    let ServerState::SentFirst(p) = &mut server.state else {
        panic!("not waiting for client-final")
    };
    assert!(String::from_utf8(first)
        .unwrap()
        .starts_with("r=rOprNGfwEbeRWgbNEkqO"));
    p.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
    p.server_first = std::str::from_utf8(server_first).unwrap().into();
    let (v, user) = server
        .server_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    assert_eq!(v, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert_eq!(user, "user");
    assert!(server.is_authenticated());
}

#[test]
fn round_trip_both_mechanisms() {
    for mech in Mechanism::ALL {
        let (verdict, checked) = login(mech, "alice", "pencil");
        assert_eq!(verdict.unwrap().1, "alice");
        checked.unwrap().unwrap();
    }
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    for mech in Mechanism::ALL {
        let (wrong, _) = login(mech, "alice", "crayon");
        let (unknown, _) = login(mech, "mallory", "pencil");
        for e in [wrong.unwrap_err(), unknown.unwrap_err()] {
            assert!(matches!(e, AuthError::AuthenticationFailed), "{e}");
        }
    }
}

#[test]
fn unknown_user_gets_a_stable_believable_salt() {
    let mech = Mechanism::Sha512;
    let first = |user: &str| {
        let mut server = ScramServer::new(mech, users(mech));
        let msg = format!("n,,n={user},r=abc");
        let reply = String::from_utf8(server.server_first(msg.as_bytes()).unwrap()).unwrap();
        let salt = reply.split(',').nth(1).unwrap().to_string();
        let iterations = reply.split(',').nth(2).unwrap().to_string();
        (salt, iterations)
    };
    assert_eq!(first("mallory"), first("mallory"));
    assert_ne!(first("mallory").0, first("trudy").0);
    assert_eq!(first("mallory").1, "i=8192");
    let salt = B64
        .decode(first("mallory").0.trim_start_matches("s="))
        .unwrap();
    assert_eq!(salt.len(), SALT_LEN);
}

#[test]
fn tampered_proof_fails() {
    let mech = Mechanism::Sha256;
    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    let mut server = ScramServer::new(mech, users(mech));
    let first = server.server_first(&client.client_first()).unwrap();
    let last = String::from_utf8(client.client_final(&first).unwrap()).unwrap();
    let (head, proof) = last.rsplit_once(",p=").unwrap();
    let mut bytes = B64.decode(proof).unwrap();
    bytes[0] ^= 1;
    let tampered = format!("{head},p={}", B64.encode(bytes));
    let e = server.server_final(tampered.as_bytes()).unwrap_err();
    assert!(matches!(e, AuthError::AuthenticationFailed));
    // A failed server stays failed.
    assert!(server.server_final(last.as_bytes()).is_err());
}

#[test]
fn bad_nonce_fails() {
    let mech = Mechanism::Sha256;
    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    let mut server = ScramServer::new(mech, users(mech));
    let first = server.server_first(&client.client_first()).unwrap();
    let last = String::from_utf8(client.client_final(&first).unwrap()).unwrap();
    let forged = last.replacen(",r=", ",r=X", 1);
    assert!(server.server_final(forged.as_bytes()).is_err());

    // A server that does not extend the client's nonce is refused.
    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    client.client_first();
    let e = client
        .client_final(b"r=someoneelse,s=c2FsdA==,i=4096")
        .unwrap_err();
    assert!(e.to_string().contains("nonce"), "{e}");
}

#[test]
fn client_refuses_a_forged_server_and_weak_iterations() {
    let mech = Mechanism::Sha256;
    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    let nonce = client.nonce.clone();
    client.client_first();
    let server_first = format!("r={nonce}xyz,s=c2FsdA==,i=4096");
    client.client_final(server_first.as_bytes()).unwrap();
    let e = client.verify(b"v=AAAA").unwrap_err();
    assert!(matches!(e, AuthError::ServerSignature { .. }));

    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    client.client_first();
    let weak = format!("r={}xyz,s=c2FsdA==,i=1", client.nonce);
    assert!(matches!(
        client.client_final(weak.as_bytes()),
        Err(AuthError::Iterations { .. })
    ));

    let mut client = ScramClient::new("alice", Secret::new("pencil"), mech).unwrap();
    client.client_first();
    let first = format!("r={}xyz,s=c2FsdA==,i=4096", client.nonce);
    client.client_final(first.as_bytes()).unwrap();
    let e = client.verify(b"e=invalid-proof,\x01junk").unwrap_err();
    assert_eq!(
        e.to_string(),
        "SCRAM-SHA-256: the server refused the login: invalid-proof"
    );
}

#[test]
fn user_names_are_escaped() {
    let mech = Mechanism::Sha256;
    let name = "a,b=c";
    let cred = StoredCredential::derive("pw", b"salt", 4096, mech);
    let mut client = ScramClient::new(name, Secret::new("pw"), mech).unwrap();
    let first = client.client_first();
    assert!(first.starts_with(b"n,,n=a=2Cb=3Dc,r="));
    let mut server = ScramServer::new(mech, move |u: &str| (u == name).then_some(cred));
    let sf = server.server_first(&first).unwrap();
    let (v, user) = server
        .server_final(&client.client_final(&sf).unwrap())
        .unwrap();
    assert_eq!(user, name);
    client.verify(&v).unwrap();
}

#[test]
fn token_auth_is_sent_and_refused_by_kflip() {
    let mech = Mechanism::Sha512;
    let mut client = ScramClient::new("tokenid", Secret::new("hmac"), mech)
        .unwrap()
        .with_token_auth();
    let first = client.client_first();
    assert!(first.ends_with(b",tokenauth=true"));
    let mut server = ScramServer::new(mech, users(mech));
    assert!(matches!(
        server.server_first(&first),
        Err(AuthError::Unsupported { .. })
    ));
}

#[test]
fn malformed_messages_never_panic() {
    let mech = Mechanism::Sha256;
    let long = vec![b'a'; MAX_MESSAGE + 1];
    let firsts: &[&[u8]] = &[
        b"",
        b",",
        b"n",
        b"n,,",
        b"x,,n=alice,r=abc",
        b"p=tls-unique,,n=alice,r=abc",
        b"n,,r=abc,n=alice",
        b"n,,n=,r=abc",
        b"n,,n=al=ice,r=abc",
        b"n,,n=al=2",
        b"n,,n=alice,r=",
        b"n,,n=alice,r=a b",
        b"n,,n=alice",
        b"n,,m=ext,n=alice,r=abc",
        b"n,a=bob,n=alice,r=abc",
        b"n,bob,n=alice,r=abc",
        b"n,,n=alice,r=abc,=x",
        b"n,,n=\xff,r=abc",
        &long,
    ];
    for msg in firsts {
        let mut server = ScramServer::new(mech, users(mech));
        assert!(
            server.server_first(msg).is_err(),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
    let finals: &[&[u8]] = &[
        b"",
        b"c=biws",
        b"c=biws,r=abc",
        b"c=biws,p=AAAA",
        b"c=!!,r=abc,p=AAAA",
        b"c=biws,r=abc,p=!!",
        b"c=biws,r=abc,p=AAAA,x=1",
        b"c=eSws,r=abc,p=AAAA",
        b"r=abc,c=biws,p=AAAA",
    ];
    for msg in finals {
        let mut server = ScramServer::new(mech, users(mech));
        server.server_first(b"n,,n=alice,r=abc").unwrap();
        assert!(
            server.server_final(msg).is_err(),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
    let server_firsts: &[&[u8]] = &[
        b"",
        b"r=",
        b"s=c2FsdA==,r=x,i=4096",
        b"r=NONCEx,s=,i=4096",
        b"r=NONCEx,s=!!,i=4096",
        b"r=NONCEx,s=c2FsdA==",
        b"r=NONCEx,s=c2FsdA==,i=-1",
        b"r=NONCEx,s=c2FsdA==,i=99999999999999999999999",
        b"r=NONCEx,s=c2FsdA==,i=4096,",
        b"m=x,r=NONCEx,s=c2FsdA==,i=4096",
    ];
    for msg in server_firsts {
        let mut client = ScramClient::new("alice", Secret::new("pw"), mech).unwrap();
        client.nonce = "NONCE".into();
        client.client_first();
        let msg = String::from_utf8_lossy(msg);
        assert!(client.client_final(msg.as_bytes()).is_err(), "{msg}");
    }
    for msg in [&b""[..], b"x=1", b"v=!!", b"\xff"] {
        let mut client = ScramClient::new("alice", Secret::new("pw"), mech).unwrap();
        client.nonce = "NONCE".into();
        client.client_first();
        client.client_final(b"r=NONCEx,s=c2FsdA==,i=4096").unwrap();
        assert!(client.verify(msg).is_err());
    }
}

#[test]
fn steps_out_of_order_are_refused() {
    let mech = Mechanism::Sha256;
    let mut server = ScramServer::new(mech, users(mech));
    assert!(matches!(
        server.server_final(b"c=biws,r=a,p=AAAA"),
        Err(AuthError::OutOfOrder { .. })
    ));
    let mut server = ScramServer::new(mech, users(mech));
    server.server_first(b"n,,n=alice,r=abc").unwrap();
    assert!(server.server_first(b"n,,n=alice,r=abc").is_err());

    let mut client = ScramClient::new("alice", Secret::new("pw"), mech).unwrap();
    assert!(client.client_final(b"r=a,s=c2FsdA==,i=4096").is_err());
    assert!(client.verify(b"v=AAAA").is_err());
}

#[test]
fn debug_shows_no_key_material() {
    let cred = StoredCredential::derive("pw", b"salt", 4096, Mechanism::Sha256);
    assert_eq!(
        format!("{cred:?}"),
        "StoredCredential { iterations: 4096, .. }"
    );
}

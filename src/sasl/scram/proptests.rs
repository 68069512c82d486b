//! Property tests of SCRAM message handling: `saslname` escaping round trips, and a
//! full exchange with an independent client (the `sasl` crate) succeeds for any
//! username and password, and fails for any other password.

use proptest::prelude::*;
use sasl::client::mechanisms::Scram;
use sasl::client::Mechanism as ClientMechanism;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Credentials};

use super::decode_saslname;
use crate::sasl::{Mechanism, SaslServer, SaslStep, StoredCredentials};

/// RFC 5802 §5.1: "," is "=2C" and "=" is "=3D" in a saslname.
fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn exchange(
    mechanism: Mechanism,
    user: &str,
    password: &str,
    stored: &StoredCredentials,
) -> SaslStep {
    // The `sasl` crate (0.5.2) writes the username as given, unescaped: a name with ','
    // or '=' would break its client-first message, so it gets the escaped form.
    let creds = Credentials::default()
        .with_username(encode_saslname(user))
        .with_password(password)
        .with_channel_binding(ChannelBinding::None);
    let mut client: Box<dyn ClientMechanism> = match mechanism {
        Mechanism::ScramSha1 => match Scram::<Sha1>::from_credentials(creds) {
            Ok(c) => Box::new(c),
            Err(e) => panic!("client: {e:?}"),
        },
        _ => match Scram::<Sha256>::from_credentials(creds) {
            Ok(c) => Box::new(c),
            Err(e) => panic!("client: {e:?}"),
        },
    };
    let mut server = SaslServer::new(mechanism, "example.com", Default::default(), false, [3; 32]);
    let lookup = |name: &str| (name == user).then(|| stored.clone());
    let first = server.step(&client.initial(), &lookup);
    let SaslStep::Challenge(server_first) = first else {
        return first;
    };
    let Ok(last) = client.response(&server_first) else {
        panic!("the client rejected the server-first message");
    };
    server.step(&last, &lookup)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn saslnames_decode_what_was_encoded(name in "[^\u{0}]{1,24}") {
        prop_assert_eq!(decode_saslname(&encode_saslname(&name)), Ok(name));
    }

    #[test]
    fn a_lone_equals_sign_is_refused(prefix in "[a-z]{0,4}", suffix in "[a-z0-9]{0,2}") {
        let raw = format!("{prefix}={suffix}");
        prop_assume!(!suffix.starts_with("2C") && !suffix.starts_with("3D"));
        prop_assert!(decode_saslname(&raw).is_err());
    }

    #[test]
    fn exchanges_succeed_with_the_password_and_fail_without(
        // Names nodeprep keeps as they are (the lookup sees the normalised name),
        // with the two characters SCRAM must escape.
        user in "[a-z0-9][a-z0-9,=._-]{0,11}",
        password in "[!-~]{1,20}",
        other in "[!-~]{1,20}",
        sha256 in any::<bool>(),
    ) {
        let mechanism = if sha256 { Mechanism::ScramSha256 } else { Mechanism::ScramSha1 };
        let stored = StoredCredentials::derive(&password, 16)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        match exchange(mechanism, &user, &password, &stored) {
            SaslStep::Success { username, .. } => prop_assert_eq!(username, user.clone()),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        prop_assume!(other != password);
        let refused = matches!(exchange(mechanism, &user, &other, &stored), SaslStep::Failure(_));
        prop_assert!(refused, "a wrong password was accepted");
    }
}

use super::*;

const SUITES: [Suite; 3] = [
    Suite::Aes128GcmSha256,
    Suite::Aes256GcmSha384,
    Suite::Chacha20Poly1305Sha256,
];

fn secret_for(suite: Suite, seed: u8) -> Secret {
    let len = if suite == Suite::Aes256GcmSha384 {
        48
    } else {
        32
    };
    let bytes: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
    Secret::new(&bytes).expect("secret")
}

/// The sending and the receiving end of one direction.
fn pair(suite: Suite) -> (Direction, Direction) {
    (
        Direction::new(suite, secret_for(suite, 7)).expect("sender"),
        Direction::new(suite, secret_for(suite, 7)).expect("receiver"),
    )
}

fn open_one(receiver: &mut Direction, record: &mut [u8]) -> Result<(u8, Vec<u8>), RecordError> {
    let len = record_len(record)?.expect("a whole record");
    assert_eq!(len, record.len());
    receiver
        .open(record)
        .map(|(content_type, body)| (content_type, body.to_vec()))
}

#[test]
fn records_sealed_in_sequence_open_in_sequence() {
    for suite in SUITES {
        let (mut sender, mut receiver) = pair(suite);
        for (i, message) in [&b"<message/>"[..], b"", &[0u8; MAX_PLAINTEXT]]
            .into_iter()
            .enumerate()
        {
            let mut record = Vec::new();
            sender
                .seal(CONTENT_APPLICATION_DATA, message, &mut record)
                .expect("seal");
            assert_eq!(record.len(), HEADER_LEN + message.len() + 1 + TAG_LEN);
            assert_eq!(&record[..3], &[CONTENT_APPLICATION_DATA, 3, 3]);
            let (content_type, body) = open_one(&mut receiver, &mut record).expect("open");
            assert_eq!(
                (content_type, body.as_slice()),
                (CONTENT_APPLICATION_DATA, message),
                "{suite:?} record {i}"
            );
        }
    }
}

#[test]
fn a_changed_byte_or_a_skipped_record_fails_authentication() {
    for suite in SUITES {
        let (mut sender, mut receiver) = pair(suite);
        let mut first = Vec::new();
        sender
            .seal(CONTENT_APPLICATION_DATA, b"one", &mut first)
            .expect("seal");
        let mut second = Vec::new();
        sender
            .seal(CONTENT_APPLICATION_DATA, b"two", &mut second)
            .expect("seal");
        let mut changed = first.clone();
        changed[HEADER_LEN + 1] ^= 1;
        assert_eq!(
            open_one(&mut receiver, &mut changed),
            Err(RecordError::BadRecordMac)
        );
        // Records open only in the order they were sealed.
        let (_, mut fresh) = pair(suite);
        assert_eq!(
            open_one(&mut fresh, &mut second.clone()),
            Err(RecordError::BadRecordMac),
            "opened out of order"
        );
        // A failed open used up a sequence number: the connection is over anyway.
        assert!(open_one(&mut fresh, &mut first).is_err());
    }
}

#[test]
fn padding_is_removed_and_an_all_zero_record_is_refused() {
    let (mut sender, mut receiver) = pair(Suite::Aes128GcmSha256);
    // content, type, then zeros, sealed as a peer that pads would.
    let mut padded = b"<iq/>".to_vec();
    padded.push(CONTENT_APPLICATION_DATA);
    padded.extend_from_slice(&[0; 30]);
    let mut record = seal_raw(&mut sender, &padded);
    assert_eq!(
        open_one(&mut receiver, &mut record),
        Ok((CONTENT_APPLICATION_DATA, b"<iq/>".to_vec()))
    );
    let mut zeros = seal_raw(&mut sender, &[0; 10]);
    assert_eq!(
        open_one(&mut receiver, &mut zeros),
        Err(RecordError::UnexpectedMessage)
    );
}

/// Seals `inner` as the whole TLSInnerPlaintext (type and padding included).
fn seal_raw(sender: &mut Direction, inner: &[u8]) -> Vec<u8> {
    let length = inner.len() + TAG_LEN;
    let header = [23, 3, 3, (length >> 8) as u8, length as u8];
    let nonce = sender.next_nonce().expect("nonce");
    let mut body = inner.to_vec();
    let tag = sender
        .key
        .seal_in_place_separate_tag(nonce, Aad::from(header), &mut body)
        .expect("seal");
    let mut record = header.to_vec();
    record.extend_from_slice(&body);
    record.extend_from_slice(tag.as_ref());
    record
}

#[test]
fn record_headers_are_checked_before_anything_is_opened() {
    assert_eq!(record_len(&[23, 3, 3, 0]), Ok(None), "a partial header");
    assert_eq!(record_len(&[23, 3, 3, 0, 17]), Ok(None), "a partial body");
    assert_eq!(record_len(&[23, 3, 3, 0, 17, 0, 0]), Ok(None));
    assert_eq!(
        record_len(
            &[23, 3, 3, 0, 17]
                .iter()
                .copied()
                .chain([0; 17])
                .collect::<Vec<_>>()
        ),
        Ok(Some(22))
    );
    assert_eq!(
        record_len(&[21, 3, 3, 0, 2, 1, 0]),
        Err(RecordError::UnexpectedMessage),
        "an unprotected alert"
    );
    assert_eq!(
        record_len(&[20, 3, 3, 0, 1, 1]),
        Err(RecordError::UnexpectedMessage),
        "change_cipher_spec"
    );
    assert_eq!(
        record_len(&[23, 2, 0, 0, 20]),
        Err(RecordError::DecodeError)
    );
    let too_long = (MAX_CIPHERTEXT + 1) as u16;
    assert_eq!(
        record_len(&[23, 3, 3, (too_long >> 8) as u8, too_long as u8]),
        Err(RecordError::RecordOverflow)
    );
    assert_eq!(
        record_len(&[23, 3, 3, 0, 16]),
        Err(RecordError::DecodeError),
        "shorter than a tag"
    );
}

#[test]
fn only_a_lone_key_update_is_a_valid_handshake_record() {
    assert_eq!(key_update_request(&[24, 0, 0, 1, 0]), Ok(false));
    assert_eq!(key_update_request(&[24, 0, 0, 1, 1]), Ok(true));
    assert_eq!(
        key_update_request(&[24, 0, 0, 1, 2]),
        Err(RecordError::IllegalParameter)
    );
    assert_eq!(
        key_update_request(&[24, 0, 0, 1, 0, 24, 0, 0, 1, 0]),
        Err(RecordError::UnexpectedMessage),
        "a message after a key change in the same record"
    );
    assert_eq!(
        key_update_request(&[24, 0, 0]),
        Err(RecordError::UnexpectedMessage)
    );
    assert_eq!(
        key_update_request(&[4, 0, 0, 1, 0]),
        Err(RecordError::UnexpectedMessage),
        "a NewSessionTicket from a client"
    );
}

#[test]
fn both_ends_updating_keep_talking_and_a_stale_end_cannot_open() {
    for suite in SUITES {
        let (mut sender, mut receiver) = pair(suite);
        let (_, mut stale) = pair(suite);
        sender.update().expect("update");
        receiver.update().expect("update");
        let mut record = Vec::new();
        sender
            .seal(CONTENT_APPLICATION_DATA, b"after", &mut record)
            .expect("seal");
        assert_eq!(
            open_one(&mut receiver, &mut record.clone()),
            Ok((CONTENT_APPLICATION_DATA, b"after".to_vec()))
        );
        assert_eq!(
            open_one(&mut stale, &mut record),
            Err(RecordError::BadRecordMac)
        );
    }
}

#[test]
fn an_aes_key_is_worn_out_after_its_record_limit() {
    let (mut aes, _) = pair(Suite::Aes256GcmSha384);
    aes.set_sequence((1 << 24) - 1);
    assert!(!aes.worn_out());
    aes.seal(CONTENT_APPLICATION_DATA, b"x", &mut Vec::new())
        .expect("seal");
    assert!(aes.worn_out());
    aes.update().expect("update");
    assert!(!aes.worn_out(), "a new key starts afresh");

    let (mut chacha, _) = pair(Suite::Chacha20Poly1305Sha256);
    chacha.set_sequence(1 << 40);
    assert!(!chacha.worn_out());
    chacha.set_sequence(u64::MAX);
    assert_eq!(
        chacha.seal(CONTENT_APPLICATION_DATA, b"x", &mut Vec::new()),
        Err(RecordError::InternalError),
        "the last sequence number may not be used"
    );
}

/// A generation's key and IV as rustls reports them at the takeover.
fn raw_keys(suite: Suite, secret: &Secret) -> (Vec<u8>, Vec<u8>) {
    let mut key = vec![0u8; suite.aead().key_len()];
    let mut iv = vec![0u8; aead::NONCE_LEN];
    expand_label(suite.hkdf(), secret.as_bytes(), b"key", &mut key).expect("key");
    expand_label(suite.hkdf(), secret.as_bytes(), b"iv", &mut iv).expect("iv");
    (key, iv)
}

#[test]
fn keys_taken_over_work_with_the_secret_of_their_generation() {
    for suite in SUITES {
        let first = secret_for(suite, 7);
        let second = next_secret(suite, &first).expect("next secret");
        let (key, iv) = raw_keys(suite, &second);
        assert!(
            !secret_derives_iv(suite, &first, &iv),
            "{suite:?}: the first generation is not the one in use"
        );
        assert!(secret_derives_iv(suite, &second, &iv), "{suite:?}");
        assert!(
            Direction::from_keys(suite, secret_for(suite, 7), &key[1..], &iv, 0).is_err(),
            "{suite:?}: a key of the wrong length is refused"
        );
        // Taken over after one record of the second generation.
        let mut taken = Direction::from_keys(suite, second, &key, &iv, 1).expect("from keys");
        let mut peer = Direction::new(suite, secret_for(suite, 7)).expect("peer");
        peer.update().expect("peer update");
        peer.seal(CONTENT_APPLICATION_DATA, b"before", &mut Vec::new())
            .expect("seal");
        for round in 0..2 {
            let mut record = Vec::new();
            peer.seal(CONTENT_APPLICATION_DATA, b"<message/>", &mut record)
                .expect("seal");
            let (content_type, body) =
                open_one(&mut taken, &mut record).expect("opened with the keys taken over");
            assert_eq!(
                (content_type, body.as_slice()),
                (CONTENT_APPLICATION_DATA, &b"<message/>"[..]),
                "{suite:?} round {round}"
            );
            // The kept secret is the right one: after a KeyUpdate both ends still agree.
            peer.update().expect("peer update");
            taken.update().expect("update");
        }
    }
}

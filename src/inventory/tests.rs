use super::*;

fn addr() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

#[test]
fn a_connection_reports_each_fact_once_and_the_table_keeps_them() {
    let inv = Inventory::default();
    let conn = Conn::new(addr());
    conn.set_principal("alice");
    conn.set_software("librdkafka", "2.6.1");
    let produced = Fact::Produced {
        topic: "orders",
        acks: 1,
        kind: ProducerKind::Plain,
    };
    conn.note(&inv, "app", &produced);
    conn.note(&inv, "app", &produced);
    conn.note(&inv, "app", &Fact::Consumed("audit"));
    conn.note(
        &inv,
        "app",
        &Fact::Reset {
            group: "g",
            reset: Reset::Latest,
        },
    );
    let all = inv.snapshot();
    assert_eq!(all.len(), 1);
    let (who, e) = &all[0];
    assert_eq!(who.principal.as_deref(), Some("alice"));
    assert_eq!(e.software.as_deref(), Some("librdkafka 2.6.1"));
    assert!(e.produced.contains("orders") && e.consumed.contains("audit"));
    assert_eq!(e.acks.iter().copied().collect::<Vec<_>>(), [1]);
    let risks = switch_risks(e);
    assert_eq!(risks.len(), 3, "{risks:?}");
}

#[test]
fn tables_are_bounded() {
    let inv = Inventory::default();
    for i in 0..(MAX_CLIENTS + 10) {
        inv.record(
            &Who {
                client_id: format!("c{i}"),
                principal: None,
            },
            addr(),
            None,
            &Fact::Seen,
        );
    }
    assert_eq!(inv.snapshot().len(), MAX_CLIENTS);
    assert_eq!(inv.dropped(), 10);
    let who = Who {
        client_id: "c0".into(),
        principal: None,
    };
    for i in 0..(MAX_ITEMS + 5) {
        inv.record(&who, addr(), None, &Fact::Consumed(&format!("t{i}")));
    }
    let e = &inv.snapshot()[0].1;
    assert_eq!(e.consumed.len(), MAX_ITEMS);
}

#[test]
fn a_reset_is_matched_to_the_group_that_had_no_offset() {
    let r = Resets::default();
    assert!(!r.any());
    r.no_offset(addr(), "app", "g", "t", 0);
    assert!(r.any());
    assert_eq!(r.take(addr(), "other", "t", 0), None);
    assert_eq!(r.peek(addr(), "app", "t", 0).as_deref(), Some("g"));
    assert_eq!(r.take(addr(), "app", "t", 0).as_deref(), Some("g"));
    assert_eq!(r.take(addr(), "app", "t", 0), None);
}

use serde::Deserialize;

use super::*;
use crate::health::{BODY_LIMIT, Health, testing::*};

// ---- validation ----

#[test]
fn timing_validate_messages() {
    assert_eq!(Timing::default().validate(), Ok(()));
    assert_eq!(timing(100, 100, 1, 1).validate(), Ok(()));
    assert_eq!(timing(3_600_000, 1, 1, 1).validate(), Ok(()));
    let table = [
        (
            timing(99, 50, 2, 3),
            "interval_ms is 99; it must be at least 100",
        ),
        (
            timing(0, 0, 2, 3),
            "interval_ms is 0; it must be at least 100",
        ),
        (
            timing(3_600_001, 1000, 2, 3),
            "interval_ms is 3600001; it must be at most 3600000 (an hour)",
        ),
        (
            timing(2000, 0, 2, 3),
            "timeout_ms is 0; it must be more than 0",
        ),
        (
            timing(2000, 2001, 2, 3),
            "timeout_ms is 2001; it must not be more than interval_ms (2000)",
        ),
        (timing(2000, 1000, 0, 3), "rise is 0; it must be at least 1"),
        (timing(2000, 1000, 2, 0), "fall is 0; it must be at least 1"),
    ];
    for (bad, message) in table {
        assert_eq!(
            bad.validate(),
            Err(SpecError(message.to_owned())),
            "{bad:?}"
        );
    }
}

#[test]
fn check_validate_messages() {
    for good in [
        Check::None,
        Check::Tcp,
        Check::Icmp,
        http("/", 200, None),
        http("/health?full=1", 599, Some("ok")),
        http("/", 100, None),
        https(Some("backend.example"), true),
        https(Some("198.18.1.11"), false),
        https(None, false),
    ] {
        assert_eq!(good.validate(), Ok(()), "{good:?}");
    }
    let with_host = |tls: bool, host: &str| {
        let host = Some(host.to_owned());
        if tls {
            Check::Https {
                path: "/".to_owned(),
                expect_status: 200,
                body_contains: None,
                host,
                verify_certificate: false,
            }
        } else {
            Check::Http {
                path: "/".to_owned(),
                expect_status: 200,
                body_contains: None,
                host,
            }
        }
    };
    let long = "x".repeat(BODY_LIMIT + 1);
    let table = [
        (
            http("health", 200, None),
            "path \"health\" must start with '/'",
        ),
        (http("", 200, None), "path \"\" must start with '/'"),
        (
            http("/a b", 200, None),
            "path \"/a b\" is not a valid HTTP path: invalid uri character",
        ),
        (
            http("/", 99, None),
            "expect_status is 99; it must be an HTTP status, from 100 to 599",
        ),
        (
            http("/", 600, None),
            "expect_status is 600; it must be an HTTP status, from 100 to 599",
        ),
        (
            http("/", 200, Some(&long)),
            "body_contains is 65537 bytes long; only the first 65536 bytes of the body are read",
        ),
        (with_host(false, ""), "host \"\" is not a valid host name"),
        (
            with_host(false, "a b"),
            "host \"a b\" is not a valid host name",
        ),
        (
            with_host(false, "a\r\nX-Evil: 1"),
            "host \"a\\r\\nX-Evil: 1\" is not a valid host name",
        ),
        (
            with_host(true, "backend.example:8443"),
            "host \"backend.example:8443\" is not a valid TLS server name \
             (a DNS name or an IP address, without a port)",
        ),
    ];
    for (bad, message) in table {
        assert_eq!(
            bad.validate(),
            Err(SpecError(message.to_owned())),
            "{bad:?}"
        );
    }
    // A Host header with a port is fine over plain HTTP.
    assert_eq!(with_host(false, "backend.example:8080").validate(), Ok(()));
    // HealthSpec::validate checks both parts.
    let spec = HealthSpec {
        check: http("x", 200, None),
        timing: Timing::default(),
    };
    assert_eq!(
        spec.validate(),
        Err(SpecError("path \"x\" must start with '/'".to_owned()))
    );
    let spec = HealthSpec {
        check: Check::Tcp,
        timing: timing(50, 10, 1, 1),
    };
    assert_eq!(
        spec.validate().unwrap_err().to_string(),
        "interval_ms is 50; it must be at least 100"
    );
}

// ---- serde ----

fn parse(text: &str) -> Result<HealthSpec, String> {
    toml::from_str::<HealthSpec>(text).map_err(|error| error.message().to_owned())
}

#[test]
fn serde_reads_every_kind() {
    let defaults = Timing::default();
    assert_eq!(
        parse("kind = \"none\"").unwrap(),
        HealthSpec {
            check: Check::None,
            timing: defaults
        }
    );
    assert_eq!(
        parse("kind = \"tcp\"\ninterval_ms = 500\ntimeout_ms = 200\nrise = 1\nfall = 5").unwrap(),
        HealthSpec {
            check: Check::Tcp,
            timing: timing(500, 200, 1, 5)
        }
    );
    assert_eq!(
        parse("kind = \"icmp\"\nfall = 2").unwrap(),
        HealthSpec {
            check: Check::Icmp,
            timing: timing(2000, 1000, 2, 2)
        }
    );
    assert_eq!(
        parse("kind = \"http\"").unwrap(),
        HealthSpec {
            check: http("/", 200, None),
            timing: defaults
        }
    );
    assert_eq!(
        parse(
            "kind = \"http\"\npath = \"/healthz\"\nexpect_status = 204\n\
             body_contains = \"ok\"\nhost = \"www.example.com\"\ninterval_ms = 1000"
        )
        .unwrap(),
        HealthSpec {
            check: Check::Http {
                path: "/healthz".to_owned(),
                expect_status: 204,
                body_contains: Some("ok".to_owned()),
                host: Some("www.example.com".to_owned()),
            },
            timing: timing(1000, 1000, 2, 3)
        }
    );
    assert_eq!(
        parse("kind = \"https\"").unwrap().check,
        Check::Https {
            path: "/".to_owned(),
            expect_status: 200,
            body_contains: None,
            host: None,
            verify_certificate: false,
        }
    );
    assert_eq!(
        parse("kind = \"https\"\nverify_certificate = true\nhost = \"b.example\"")
            .unwrap()
            .check,
        Check::Https {
            path: "/".to_owned(),
            expect_status: 200,
            body_contains: None,
            host: Some("b.example".to_owned()),
            verify_certificate: true,
        }
    );
}

#[test]
fn serde_reads_the_module_doc_example_in_a_table() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Service {
        name: String,
        health: HealthSpec,
    }
    let service: Service = toml::from_str(
        r#"
        name = "web"

        [health]
        kind = "https"              # "none", "tcp", "http", "https" or "icmp"
        path = "/healthz"           # http, https: default "/"
        expect_status = 200         # http, https: default 200
        body_contains = "ok"        # http, https: default none (any body)
        host = "www.example.com"    # http, https: Host header and TLS server name;
                                    #   default the backend's address
        verify_certificate = false  # https only: default false
        interval_ms = 2000          # start of one probe to the start of the next
        timeout_ms = 1000           # bound on the whole probe; <= interval_ms
        rise = 2                    # successes in a row that bring a backend up
        fall = 3                    # failures in a row that take it down
        "#,
    )
    .unwrap();
    assert_eq!(service.name, "web");
    assert_eq!(
        service.health,
        HealthSpec {
            check: Check::Https {
                path: "/healthz".to_owned(),
                expect_status: 200,
                body_contains: Some("ok".to_owned()),
                host: Some("www.example.com".to_owned()),
                verify_certificate: false,
            },
            timing: Timing::default(),
        }
    );
    assert_eq!(service.health.validate(), Ok(()));
}

#[test]
fn serde_rejects_unknown_and_misplaced_fields() {
    let table = [
        (
            "kind = \"udp\"",
            "unknown variant `udp`, expected one of `none`, `tcp`, `http`, `https`, `icmp`",
        ),
        ("kind = \"http\"\nbogus = 1", "unknown field `bogus`"),
        ("kind = \"tcp\"\ninterval = 100", "unknown field `interval`"),
        ("interval_ms = 100", "missing field `kind`"),
        (
            "kind = \"tcp\"\npath = \"/\"",
            "path is only for kind = \"http\" or \"https\", not for kind = \"tcp\"",
        ),
        (
            "kind = \"icmp\"\nhost = \"a\"",
            "host is only for kind = \"http\" or \"https\", not for kind = \"icmp\"",
        ),
        (
            "kind = \"none\"\nexpect_status = 200",
            "expect_status is only for kind = \"http\" or \"https\", not for kind = \"none\"",
        ),
        (
            "kind = \"http\"\nverify_certificate = true",
            "verify_certificate is only for kind = \"https\", not for kind = \"http\"",
        ),
        ("kind = \"http\"\nexpect_status = 70000", "invalid value"),
        ("kind = \"tcp\"\nrise = -1", "invalid value"),
    ];
    for (text, message) in table {
        let error = parse(text).expect_err(text);
        assert!(error.starts_with(message), "{text:?}: {error}");
    }
}

#[test]
fn serde_check_and_timing_on_their_own() {
    assert_eq!(
        toml::from_str::<Check>("kind = \"http\"\npath = \"/x\"").unwrap(),
        http("/x", 200, None)
    );
    assert!(toml::from_str::<Check>("kind = \"tcp\"\npath = \"/x\"").is_err());
    assert!(toml::from_str::<Check>("kind = \"http\"\nrise = 1").is_err());
    assert_eq!(
        toml::from_str::<Timing>("rise = 5").unwrap(),
        timing(2000, 1000, 5, 3)
    );
    assert!(toml::from_str::<Timing>("kind = \"tcp\"").is_err());
    #[derive(Deserialize)]
    struct H {
        h: Health,
    }
    assert_eq!(toml::from_str::<H>("h = \"down\"").unwrap().h, Health::Down);
}

#[test]
fn serde_round_trip() {
    for spec in [
        HealthSpec::default(),
        HealthSpec {
            check: Check::Tcp,
            timing: timing(300, 100, 1, 2),
        },
        HealthSpec {
            check: Check::Icmp,
            timing: Timing::default(),
        },
        HealthSpec {
            check: http("/a", 204, Some("ok")),
            timing: Timing::default(),
        },
        HealthSpec {
            check: https(Some("b.example"), true),
            timing: Timing::default(),
        },
    ] {
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(parse(&text).as_ref(), Ok(&spec), "{text}");
    }
    assert_eq!(
        toml::to_string(&HealthSpec {
            check: Check::Tcp,
            timing: Timing::default()
        })
        .unwrap(),
        "kind = \"tcp\"\ninterval_ms = 2000\ntimeout_ms = 1000\nrise = 2\nfall = 3\n"
    );
}

//! The per-request deadline (`--request-timeout`): a guest that never returns is interrupted and
//! answered with 500, while the host keeps serving other requests.

use std::time::{Duration, Instant};

use gyre_tests::App;

use crate::{expect_json, probe_manifest};

#[test]
fn an_infinite_loop_answers_500_within_the_deadline() {
    let host = App::new(&probe_manifest("/...", ""))
        .host()
        .arg("--request-timeout")
        .arg("1s")
        .start();

    let started = Instant::now();
    let response = host.get("/?op=loop");
    let elapsed = started.elapsed();

    assert_eq!(response.status, 500, "{response:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the deadline was not enforced promptly: {elapsed:?}"
    );
}

#[test]
fn the_host_keeps_serving_while_a_request_loops() {
    let host = App::new(&probe_manifest("/...", ""))
        .host()
        .arg("--request-timeout")
        .arg("3s")
        .start();
    expect_json(&host.get("/"), 200); // warm: the component is compiled and the host is up

    std::thread::scope(|scope| {
        let looping = scope.spawn(|| {
            let started = Instant::now();
            (host.get("/?op=loop"), started.elapsed())
        });

        // Meanwhile ordinary requests are answered quickly, well inside the looping one's deadline.
        let started = Instant::now();
        for _ in 0..5 {
            expect_json(&host.get("/"), 200);
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(2500),
            "5 requests took {elapsed:?} while another one looped"
        );
        assert!(
            !looping.is_finished(),
            "the other requests should be answered while the loop is still running"
        );

        let (response, looped_for) = looping.join().expect("the looping request's thread");
        assert_eq!(response.status, 500, "{response:?}");
        assert!(
            looped_for < Duration::from_secs(8),
            "the deadline was not enforced promptly: {looped_for:?}"
        );
    });
}

#[test]
fn an_interrupted_request_releases_its_database_write_lock() {
    let host = App::new(&probe_manifest("/...", r#"sqlite_databases = ["default"]"#))
        .host()
        .arg("--request-timeout")
        .arg("1s")
        .start();

    // The probe opens a write transaction, then loops until the deadline kills the instance.
    assert_eq!(host.get("/?op=loop&hold=default").status, 500);

    expect_json(&host.get("/?op=insert&value=after-the-loop"), 200);
}

#[test]
fn a_trapping_component_answers_500_and_releases_its_write_lock() {
    let host = App::new(&probe_manifest("/...", r#"sqlite_databases = ["default"]"#))
        .host()
        .start();

    assert_eq!(host.get("/?op=panic&hold=default").status, 500);

    expect_json(&host.get("/?op=insert&value=after-the-trap"), 200);
    expect_json(&host.get("/"), 200);
}

//! Where the binaries under test are: $ADT_BIN_DIR if set (to test an
//! installed package: ADT_BIN_DIR=/usr/sbin), else the cargo target dir
//! this test binary was built in.

use std::path::PathBuf;

pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ADT_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.exists(),
            "{} does not exist (ADT_BIN_DIR)",
            path.display()
        );
        return path;
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

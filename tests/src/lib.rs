//! Support shared by Roster's integration and end-to-end tests: both storage
//! back-ends, an in-process application, and the real `roster` binary.
#![forbid(unsafe_code)]

pub mod backend;
pub mod bench;
pub mod browser;
pub mod console;
pub mod e2e;
pub mod ldap_tap;
pub mod oidc;
pub mod process;
pub mod recorder;
pub mod scale;
pub mod sync;

pub use backend::{Backend, TestStore};
pub use process::{Api, RosterProcess};

/// Runs an `async fn name(TestStore)` once per storage back-end, as tests
/// `name::postgres` and `name::sqlite`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    let s = $crate::TestStore::new($crate::Backend::Postgres).await;
                    super::$name(s).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    let s = $crate::TestStore::new($crate::Backend::Sqlite).await;
                    super::$name(s).await;
                }
            }
        )+
    };
}

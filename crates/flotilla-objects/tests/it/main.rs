//! flotilla-objects integration tests: one conformance suite, run against both backends.

// Test harness: a fresh store per test (local temp dir, or a fresh bucket on a moto S3 server).
mod harness;
// The behaviour every backend must share, written once.
mod conformance;
// Things that only make sense for one backend (URLs, unreachable services).
mod backend_specific;

/// Generates one `#[tokio::test]` per conformance case for a backend.
macro_rules! objects_conformance {
    ($backend:ident, $setup:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let harness = $setup.await;
                    crate::conformance::$case(&harness).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        objects_conformance!(
            $backend,
            $setup,
            [
                round_trip_20_mib_streamed,
                small_and_empty_bodies_round_trip,
                too_large_mid_stream_leaves_no_object,
                too_large_within_first_part_leaves_no_object,
                body_error_mid_stream_leaves_no_object,
                missing_objects_are_not_found,
                list_by_prefix_matches_whole_segments,
                delete_removes_and_is_idempotent,
                overwrite_replaces_content,
                path_escape_keys_are_refused,
                sanitised_upload_names_stay_in_the_asset_folder,
                unusual_but_valid_keys_round_trip,
            ]
        );
    };
}

all_cases!(local, crate::harness::Harness::local());
all_cases!(s3, crate::harness::Harness::s3());

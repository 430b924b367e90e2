//! The conformance suite of the `Store` trait, written once and run against every backend.
//!
//! A backend's test crate instantiates it with one line:
//!
//! ```ignore
//! flotilla_store_tests::store_conformance!(crate::harness);
//! ```
//!
//! where `harness` is an `async fn() -> Harness` that opens a fresh, isolated store. The
//! macro generates one `#[tokio::test]` per case, so each case is listed by name and cases
//! run in parallel. Every time-dependent case drives a [`ManualClock`]; none sleeps.
//!
//! # Layout
//! One module per area; each public `async fn(Harness)` in them is a case, and every case is
//! listed in [`store_conformance!`] (a unit test checks that none is missing).
//! - [`job_insert`]: enqueue, ids, fields, scheduling, unique keys, batches, payloads.
//! - [`job_list`]: filters and cursor paging of `job_list`.
//! - [`job_claim`]: claim order, strict queue order, leases and tokens set by a claim.
//! - [`lease`]: heartbeat, completion, per-job lease, expiry and reaping, fencing.
//! - [`retry`]: failure, retry policies, dead jobs, `job_retry`, replay and purge.
//! - [`queue`]: queue settings, pause/resume, stats, pruning.
//! - [`cancel`]: cancelling waiting and running jobs.
//! - [`runs`]: pipeline runs: steps enqueued as their dependencies succeed.
//! - [`copy`]: importing jobs, counters and schedules copied from another store.
//! - [`cron`]: firing schedules exactly once, backfill and skipping.
//! - [`limits`]: concurrency, group concurrency, rate limits, fairness.
//! - [`invalid`]: bad input refused with stable error codes.
//! - [`concurrency`]: property tests with many concurrent claimers.
//! - [`support`]: helpers that keep the cases short.
//!
//! # Invariants of the suite
//! - A case takes `now` from `h.clock` for every call and moves time only with
//!   `h.clock.advance`; nothing sleeps.
//! - Assertions are on behaviour and on [`flotilla_core::ErrorCode`]s, so every backend must
//!   agree exactly.

use std::any::Any;
use std::sync::Arc;

use flotilla_core::ManualClock;
use flotilla_store::Store;

pub mod cancel;
pub mod concurrency;
pub mod copy;
pub mod cron;
pub mod invalid;
pub mod job_claim;
pub mod job_insert;
pub mod job_list;
pub mod lease;
pub mod limits;
pub mod queue;
pub mod retry;
pub mod runs;
pub mod support;

/// A fresh store for one test case.
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// A second handle on the same database, as a second server would have one. Backends
    /// owned by one process (SQLite) hand out the same store again.
    pub other: Arc<dyn Store>,
    /// The test's clock; pass `clock.now()` as every `now`.
    pub clock: ManualClock,
    /// Keeps the store's resources (temporary directory, schema) alive for the test.
    pub guard: Box<dyn Any + Send + Sync>,
}

/// Re-exports the generated tests use, so a backend's test crate needs no direct dependency
/// on them.
#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// Generates one `#[tokio::test]` per conformance case, in one module per area (e.g.
/// `job_claim::strict_queue_order`), each running the case on a fresh harness from
/// `$harness`, the absolute path of an `async fn() -> Harness`.
#[macro_export]
macro_rules! store_conformance {
    ($harness:path) => {
        $crate::__store_conformance_cases! { [$crate::__store_conformance_tests] $harness }
    };
}

/// Generates the test modules from the case list (see [`store_conformance!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    ($harness:path; $($area:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use $crate::__private::tokio;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::$area::$case($harness().await).await
                    }
                )*
            }
        )*
    };
}

/// The one list of cases, by area: hands `$($args)*;` and the list to the macro named in
/// brackets.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*;
            job_insert {
                unknown_queue_is_refused,
                ids_increase_in_insertion_order,
                fields_round_trip,
                run_at_decides_scheduled_or_available,
                promote_due_reports_count_and_queues,
                unique_key_returns_the_live_job,
                unique_key_within_a_batch,
                unique_key_under_concurrent_enqueues,
                batch_is_all_or_nothing,
                payload_size_is_limited,
            }
            job_list {
                list_filters,
                list_pages_with_cursor,
            }
            job_claim {
                priority_then_run_at_then_id,
                strict_queue_order,
                claim_sets_lease_and_attempt,
                tokens_increase_across_claims,
                claim_respects_limit_and_never_repeats,
                handles_share_one_store,
            }
            lease {
                heartbeat_extends_lease_and_stores_progress,
                complete_stores_result,
                per_job_lease_overrides_queue,
                reap_takes_only_expired_leases_up_to_limit,
                expired_lease_retries_then_dies,
                current_token_works_past_expiry_until_reaped,
                timeout_caps_the_lease_and_reaps_as_timed_out,
                release_hands_jobs_back_unrun,
                release_cancels_or_keeps_earlier_attempts,
                claimed_jobs_carry_their_effective_timeout,
                old_token_is_fenced_off,
                complete_many_answers_per_item,
            }
            retry {
                fail_records_error_and_schedules_retry,
                zero_delay_retry_is_available_at_once,
                exhausted_attempts_go_dead,
                non_retryable_and_policy_none_die_at_once,
                max_attempts_defaults_from_policy,
                exponential_backoff_is_exact_without_jitter,
                fail_many_answers_per_item,
                job_retry_replays_and_runs_now,
                dead_replay_and_purge,
            }
            queue {
                upsert_get_and_list,
                pause_and_resume,
                stats_count_every_state,
                oldest_available_age,
                stats_totals_count_throughput,
                prune_follows_retention_and_spares_live_jobs,
            }
            cancel {
                waiting_jobs_are_cancelled_at_once,
                running_job_gets_request_then_fails_into_cancelled,
                requested_cancel_then_complete_succeeds,
                requested_cancel_then_lease_expiry_cancels,
                terminal_jobs_refuse_cancel,
            }
            runs {
                create_enqueues_the_first_steps,
                completions_enqueue_successors_with_inputs,
                a_refused_completion_enqueues_nothing,
                a_dead_step_fails_the_run_until_replayed,
                a_cancelled_step_cancels_the_run,
                bad_runs_are_refused,
                runs_list_newest_first_with_cursor,
            }
            copy {
                import_keeps_jobs_exactly_and_skips_existing,
                import_needs_the_queue,
                import_totals_and_cron,
            }
            cron {
                new_schedule_waits_for_its_next_tick,
                due_tick_fires_exactly_once_across_handles,
                missed_tick_within_backfill_runs_once,
                tick_older_than_backfill_is_skipped,
                upsert_list_and_delete,
                fire_due_respects_its_limit,
            }
            limits {
                queue_concurrency_caps_running_jobs,
                group_concurrency_caps_each_group,
                rate_limit_is_a_token_bucket,
                fair_queue_does_not_starve_fresh_work,
                unfair_queue_serves_in_order,
            }
            invalid {
                bad_queue_names,
                bad_job_fields,
                payload_too_large,
                unknown_job_ids,
                illegal_transitions,
                invalid_queue_config,
                invalid_cron_schedules,
            }
            concurrency {
                concurrent_claimers_never_share_a_job,
                concurrent_claimers_with_lost_leases,
            }
        }
    };
}

#[cfg(test)]
mod tests {
    /// Turns the case list into `(area, case)` pairs, referencing each case so that a listed
    /// case that does not exist fails to compile.
    macro_rules! listed {
        ($($area:ident { $($case:ident),* $(,)? })*) => {{
            let mut all: Vec<(&str, &str)> = Vec::new();
            $($(
                let _ = crate::$area::$case;
                all.push((stringify!($area), stringify!($case)));
            )*)*
            all
        }};
    }

    macro_rules! case_list {
        (; $($list:tt)*) => {
            listed! { $($list)* }
        };
    }

    const SOURCES: [(&str, &str); 13] = [
        ("runs", include_str!("runs.rs")),
        ("job_insert", include_str!("job_insert.rs")),
        ("job_list", include_str!("job_list.rs")),
        ("job_claim", include_str!("job_claim.rs")),
        ("lease", include_str!("lease.rs")),
        ("retry", include_str!("retry.rs")),
        ("queue", include_str!("queue.rs")),
        ("cancel", include_str!("cancel.rs")),
        ("copy", include_str!("copy.rs")),
        ("cron", include_str!("cron.rs")),
        ("limits", include_str!("limits.rs")),
        ("invalid", include_str!("invalid.rs")),
        ("concurrency", include_str!("concurrency.rs")),
    ];

    #[test]
    fn every_case_is_listed_in_the_macro() {
        let mut listed = __store_conformance_cases!([case_list]);
        let mut defined: Vec<(&str, &str)> = Vec::new();
        for (area, source) in SOURCES {
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ")
                    && let Some((name, args)) = rest.split_once('(')
                    && args.starts_with("h: Harness)")
                {
                    defined.push((area, name));
                }
            }
        }
        listed.sort();
        defined.sort();
        assert_eq!(
            listed, defined,
            "store_conformance! must list exactly the cases defined"
        );
    }
}

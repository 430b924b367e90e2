//! Reading jobs back with `job_list`: every filter (queue, state, kind, tag, creation
//! time) applies, results come newest first, and following the `next` cursor page by page
//! visits every match exactly once.

use flotilla_core::{Clock, JobId, JobState};
use flotilla_store::JobListParams;

use crate::Harness;
use crate::support::*;

/// `job_list` applies every filter given: queue, state, kind, tag and creation time.
pub async fn list_filters(h: Harness) {
    queue(&h, "a").await;
    queue(&h, "b").await;
    let t0 = h.clock.now();
    let a1 = insert(&h, job("a", "email").tag("x")).await;
    let b1 = insert(&h, job("b", "email")).await;
    h.clock.advance(secs(10));
    let t1 = h.clock.now();
    let a2 = insert(&h, job("a", "resize").tag("x").tag("y")).await;
    let a3 = insert(&h, job("a", "email").run_at(plus(t1, secs(60)))).await;
    let running = claim_one(&h, "b").await;
    assert_eq!(running.id, b1);

    let find = |params: JobListParams| {
        let h = &h;
        async move {
            list_all(h, params, 100)
                .await
                .iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    let all = JobListParams::default();
    assert_eq!(
        find(all.clone()).await,
        vec![a3, a2, b1, a1],
        "newest first"
    );
    assert_eq!(
        find(JobListParams {
            queue: Some("a".into()),
            ..all.clone()
        })
        .await,
        vec![a3, a2, a1]
    );
    assert_eq!(
        find(JobListParams {
            state: Some(JobState::Running),
            ..all.clone()
        })
        .await,
        vec![b1]
    );
    assert_eq!(
        find(JobListParams {
            state: Some(JobState::Scheduled),
            ..all.clone()
        })
        .await,
        vec![a3]
    );
    assert_eq!(
        find(JobListParams {
            kind: Some("email".into()),
            ..all.clone()
        })
        .await,
        vec![a3, b1, a1]
    );
    assert_eq!(
        find(JobListParams {
            tags: vec!["x".into()],
            ..all.clone()
        })
        .await,
        vec![a2, a1]
    );
    assert_eq!(
        find(JobListParams {
            tags: vec!["y".into()],
            ..all.clone()
        })
        .await,
        vec![a2]
    );
    assert_eq!(
        find(JobListParams {
            tags: vec!["x".into(), "y".into()],
            ..all.clone()
        })
        .await,
        vec![a2],
        "every tag must match"
    );
    assert_eq!(
        find(JobListParams {
            tags: vec!["y".into(), "z".into()],
            ..all.clone()
        })
        .await,
        vec![],
        "every tag must match"
    );
    assert_eq!(
        find(JobListParams {
            created_after: Some(t1),
            ..all.clone()
        })
        .await,
        vec![a3, a2]
    );
    assert_eq!(
        find(JobListParams {
            created_before: Some(t1),
            ..all.clone()
        })
        .await,
        vec![b1, a1]
    );
    assert_eq!(
        find(JobListParams {
            created_after: Some(t0),
            created_before: Some(t1),
            ..all.clone()
        })
        .await,
        vec![b1, a1]
    );
    let combined = JobListParams {
        queue: Some("a".into()),
        kind: Some("email".into()),
        state: Some(JobState::Available),
        ..all
    };
    assert_eq!(find(combined).await, vec![a1]);
}

/// `job_list` pages newest first; following `next` visits every match exactly once.
pub async fn list_pages_with_cursor(h: Harness) {
    queue(&h, "q").await;
    queue(&h, "noise").await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.extend(insert_n(&h, if n % 5 == 4 { "noise" } else { "q" }, 1).await);
    }
    let expected: Vec<JobId> = {
        let mut q: Vec<JobId> = ids
            .iter()
            .enumerate()
            .filter(|(n, _)| n % 5 != 4)
            .map(|(_, id)| *id)
            .collect();
        q.reverse();
        q
    };
    let params = JobListParams {
        queue: Some("q".into()),
        limit: 7,
        ..JobListParams::default()
    };
    let first = h.store.job_list(params.clone()).await.unwrap();
    assert_eq!(first.jobs.len(), 7);
    assert!(first.next.is_some(), "more pages follow");
    let walked: Vec<JobId> = list_all(&h, params, 7).await.iter().map(|j| j.id).collect();
    assert_eq!(walked, expected, "every match once, newest first");
    let one_page = list_all(
        &h,
        JobListParams {
            queue: Some("q".into()),
            ..JobListParams::default()
        },
        0,
    )
    .await;
    assert_eq!(one_page.len(), 20, "limit 0 means a page of 100");
}

//! One method of [`Client`] per `/v1` endpoint, grouped as producers, workers, admin and
//! health. Each documents its route; errors are [`ClientError`]s with the server's code.

use std::time::Duration;

use flotilla_core::JobId;
use flotilla_proto::{
    AckBatchRequest, AckBatchResponse, AckResponse, AssetPage, AssetUploadQuery, AssetView,
    CompleteRequest, CountResponse, DeadRequest, EnqueueBatchRequest, EnqueueBatchResponse,
    EnqueueResponse, FailRequest, FleetReport, FleetView, HealthResponse, HeartbeatRequest,
    HeartbeatResponse, Job, JobListQuery, JobPage, NewJob, PollRequest, PollResponse, QueueView,
    RegisterRequest, RegisterResponse, ResourceView, RunId, RunListQuery, ScalingSignal,
    WorkerStatusRequest, WorkerView,
};
use reqwest::Method;

use crate::{Client, ClientError, POLL_TIMEOUT_MARGIN};

/// The path segment of a job id.
fn id(job: JobId) -> String {
    job.to_string()
}

// ----- producers -----
impl Client {
    /// `POST /v1/jobs`: enqueues one job.
    pub async fn enqueue(&self, job: &NewJob) -> Result<EnqueueResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs"]);
        self.send_json(req, job).await
    }

    /// `POST /v1/jobs:batch`: enqueues several jobs, all or none.
    pub async fn enqueue_batch(
        &self,
        jobs: &EnqueueBatchRequest,
    ) -> Result<EnqueueBatchResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs:batch"]);
        self.send_json(req, jobs).await
    }

    /// `GET /v1/jobs/{id}`: one job.
    pub async fn job(&self, job: JobId) -> Result<Job, ClientError> {
        let req = self.request(Method::GET, &["v1", "jobs", &id(job)]);
        self.send(req).await
    }

    /// `GET /v1/jobs?...`: a page of jobs matching `query`, newest first.
    pub async fn jobs(&self, query: &JobListQuery) -> Result<JobPage, ClientError> {
        let req = self.request(Method::GET, &["v1", "jobs"]).query(query);
        self.send(req).await
    }

    /// `POST /v1/jobs/{id}/cancel`: cancels a waiting job at once, a running one at its
    /// next heartbeat.
    pub async fn cancel(&self, job: JobId) -> Result<Job, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs", &id(job), "cancel"]);
        self.send(req).await
    }

    /// `POST /v1/jobs/{id}/retry`: runs a dead, cancelled or scheduled job now.
    pub async fn retry(&self, job: JobId) -> Result<Job, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs", &id(job), "retry"]);
        self.send(req).await
    }
}

// ----- workers -----
impl Client {
    /// `POST /v1/workers`: registers a worker (or re-registers one under its old id).
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let http = self.request(Method::POST, &["v1", "workers"]);
        self.send_json(http, req).await
    }

    /// `POST /v1/workers/{id}/status`: a worker's periodic report.
    pub async fn worker_status(
        &self,
        worker_id: &str,
        status: &WorkerStatusRequest,
    ) -> Result<(), ClientError> {
        let req = self.request(Method::POST, &["v1", "workers", worker_id, "status"]);
        self.send_json(req, status).await
    }

    /// `GET /v1/workers`: every known worker with its health.
    pub async fn workers(&self) -> Result<Vec<WorkerView>, ClientError> {
        let req = self.request(Method::GET, &["v1", "workers"]);
        self.send(req).await
    }

    /// `POST /v1/poll`: a long-poll for up to `max_jobs` jobs. Its timeout is `wait_ms`
    /// plus [`POLL_TIMEOUT_MARGIN`], whatever the client's default.
    pub async fn poll(&self, poll: &PollRequest) -> Result<PollResponse, ClientError> {
        let timeout = Duration::from_millis(poll.wait_ms) + POLL_TIMEOUT_MARGIN;
        let req = self.request(Method::POST, &["v1", "poll"]).timeout(timeout);
        self.send_json(req, poll).await
    }

    /// `POST /v1/jobs/{id}/heartbeat`: extends the lease and reports progress; the answer
    /// says whether the job was cancelled.
    pub async fn heartbeat(
        &self,
        job: JobId,
        beat: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs", &id(job), "heartbeat"]);
        self.send_json(req, beat).await
    }

    /// `POST /v1/jobs/{id}/complete`: reports success with the lease token.
    pub async fn complete(
        &self,
        job: JobId,
        done: &CompleteRequest,
    ) -> Result<AckResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs", &id(job), "complete"]);
        self.send_json(req, done).await
    }

    /// `POST /v1/jobs/{id}/fail`: reports a failure with the lease token.
    pub async fn fail(&self, job: JobId, failed: &FailRequest) -> Result<AckResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "jobs", &id(job), "fail"]);
        self.send_json(req, failed).await
    }

    /// `POST /v1/ack:batch`: many completions and failures in one request.
    pub async fn ack_batch(&self, acks: &AckBatchRequest) -> Result<AckBatchResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "ack:batch"]);
        self.send_json(req, acks).await
    }
}

// ----- admin -----
impl Client {
    /// `GET /v1/queues`: every queue with its settings and numbers.
    pub async fn queues(&self) -> Result<Vec<QueueView>, ClientError> {
        let req = self.request(Method::GET, &["v1", "queues"]);
        self.send(req).await
    }

    /// `GET /v1/queues/{name}`: one queue.
    pub async fn queue(&self, name: &str) -> Result<QueueView, ClientError> {
        let req = self.request(Method::GET, &["v1", "queues", name]);
        self.send(req).await
    }

    /// `POST /v1/queues/{name}/pause`: stops handing out the queue's jobs.
    pub async fn pause(&self, name: &str) -> Result<QueueView, ClientError> {
        let req = self.request(Method::POST, &["v1", "queues", name, "pause"]);
        self.send(req).await
    }

    /// `POST /v1/queues/{name}/resume`: hands out the queue's jobs again.
    pub async fn resume(&self, name: &str) -> Result<QueueView, ClientError> {
        let req = self.request(Method::POST, &["v1", "queues", name, "resume"]);
        self.send(req).await
    }

    /// `GET /v1/dead?...`: a page of dead jobs (`queue`, `cursor` and `limit` apply).
    pub async fn dead(&self, query: &JobListQuery) -> Result<JobPage, ClientError> {
        let req = self.request(Method::GET, &["v1", "dead"]).query(query);
        self.send(req).await
    }

    /// `POST /v1/dead:replay`: makes dead jobs available again, with fresh attempts.
    pub async fn dead_replay(&self, which: &DeadRequest) -> Result<CountResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "dead:replay"]);
        self.send_json(req, which).await
    }

    /// `POST /v1/dead:purge`: deletes dead jobs.
    pub async fn dead_purge(&self, which: &DeadRequest) -> Result<CountResponse, ClientError> {
        let req = self.request(Method::POST, &["v1", "dead:purge"]);
        self.send_json(req, which).await
    }
}

// ----- fleets -----
impl Client {
    /// `GET /v1/queues/{name}/scaling`: what an autoscaler needs of one queue.
    pub async fn scaling(&self, queue: &str) -> Result<ScalingSignal, ClientError> {
        let req = self.request(Method::GET, &["v1", "queues", queue, "scaling"]);
        self.send(req).await
    }

    /// `PUT /v1/fleet/{name}`: a fleet supervisor's report of itself.
    pub async fn fleet_report(&self, report: &FleetReport) -> Result<(), ClientError> {
        let req = self.request(Method::PUT, &["v1", "fleet", &report.name]);
        self.send_json(req, report).await
    }

    /// `GET /v1/fleet`: the last report of every fleet supervisor.
    pub async fn fleets(&self) -> Result<Vec<FleetView>, ClientError> {
        let req = self.request(Method::GET, &["v1", "fleet"]);
        self.send(req).await
    }
}

// ----- health -----
impl Client {
    /// `GET /healthz`: whether the server process is alive.
    pub async fn healthz(&self) -> Result<HealthResponse, ClientError> {
        let req = self.request(Method::GET, &["healthz"]);
        self.send(req).await
    }

    /// `GET /readyz`: whether the server can serve (its store is reachable). A 503 comes
    /// back as [`ClientError::Api`] with code `unavailable` and the server's reason.
    pub async fn readyz(&self) -> Result<HealthResponse, ClientError> {
        let req = self.request(Method::GET, &["readyz"]);
        self.send(req).await
    }
}

// ----- assets -----
impl Client {
    /// `POST /v1/assets`: uploads `body` (a stream of chunks, e.g. a file read piece by
    /// piece) as `query.name` and starts `query.pipeline` over it. Uploads get
    /// [`UPLOAD_TIMEOUT`] instead of the client's timeout.
    pub async fn upload_asset(
        &self,
        query: &AssetUploadQuery,
        body: reqwest::Body,
    ) -> Result<AssetView, ClientError> {
        let req = self
            .request(Method::POST, &["v1", "assets"])
            .timeout(UPLOAD_TIMEOUT)
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send(req).await
    }

    /// `PUT /v1/resources/{name}`: stores a resource (logo, intro, outro) the pipelines'
    /// steps name (admin).
    pub async fn put_resource(
        &self,
        name: &str,
        body: reqwest::Body,
    ) -> Result<ResourceView, ClientError> {
        let req = self
            .request(Method::PUT, &["v1", "resources", name])
            .timeout(UPLOAD_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send(req).await
    }

    /// `GET /v1/assets/{id}`: an asset's status, steps and outputs.
    pub async fn asset(&self, asset: RunId) -> Result<AssetView, ClientError> {
        let req = self.request(Method::GET, &["v1", "assets", &asset.to_string()]);
        self.send(req).await
    }

    /// `GET /v1/assets?...`: a page of assets, newest first.
    pub async fn assets(&self, query: &RunListQuery) -> Result<AssetPage, ClientError> {
        let req = self.request(Method::GET, &["v1", "assets"]).query(query);
        self.send(req).await
    }

    /// `POST /v1/assets/{id}/release`: releases an asset held by moderation (admin).
    pub async fn release_asset(&self, asset: RunId) -> Result<AssetView, ClientError> {
        let req = self.request(
            Method::POST,
            &["v1", "assets", &asset.to_string(), "release"],
        );
        self.send(req).await
    }
}

/// How long an upload may take.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

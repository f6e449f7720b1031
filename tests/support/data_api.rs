//! A stand-in for the Amazon Redshift Data API (`redshift-data`, 2019-12-20, awsJson1_1) on a
//! loopback port, running the statements on a real PostgreSQL server, so the product's own SDK
//! client can be tested end to end: statement lifecycle (SUBMITTED → STARTED → FINISHED /
//! FAILED / ABORTED), one transaction per call, paginated results, cancellation, throttling,
//! and `COPY … FROM` S3 manifests (read from moto).
//!
//! ```ignore
//! let api = DataApiStandIn::start(&pg.url("dev"), &moto.endpoint());
//! // point aws-sdk-redshiftdata at api.endpoint(), with any credentials
//! api.throttle_next(2);
//! assert_eq!(api.stats().throttled, 2);
//! ```
#![allow(dead_code)]

#[path = "redshift_sql.rs"]
mod redshift_sql;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dynashift::aws::{s3_client, sdk_config, AwsSettings};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::sync::Notify;
use tokio_postgres::types::Type;
use tokio_postgres::{CancelToken, Client, NoTls, SimpleQueryMessage};

use self::redshift_sql::{pg_error, run_copy, translate, Translated};

/// SQL that makes PostgreSQL run the Redshift functions and collation the product's SQL uses.
/// Idempotent.
pub const REDSHIFT_ON_POSTGRES: &str = r#"
CREATE OR REPLACE FUNCTION public.from_hex(text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT decode($1, 'hex') $$;
CREATE OR REPLACE FUNCTION public.to_varbyte(text, text) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    CASE lower($2)
        WHEN 'hex' THEN RETURN decode($1, 'hex');
        WHEN 'utf8', 'utf-8' THEN RETURN convert_to($1, 'UTF8');
        WHEN 'base64' THEN RETURN decode($1, 'base64');
        ELSE RAISE EXCEPTION 'invalid format ''%'' for TO_VARBYTE', $2;
    END CASE;
END $$;
CREATE OR REPLACE FUNCTION public.from_varbyte(bytea, text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    CASE lower($2)
        WHEN 'hex' THEN RETURN encode($1, 'hex');
        WHEN 'utf8', 'utf-8' THEN RETURN convert_from($1, 'UTF8');
        WHEN 'base64' THEN RETURN translate(encode($1, 'base64'), E'\n', '');
        ELSE RAISE EXCEPTION 'invalid format ''%'' for FROM_VARBYTE', $2;
    END CASE;
END $$;
CREATE OR REPLACE FUNCTION public.json_parse(text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT CAST($1 AS jsonb) $$;
CREATE OR REPLACE FUNCTION public.getdate() RETURNS timestamp
    LANGUAGE sql STABLE AS $$ SELECT CAST(date_trunc('second', now()) AS timestamp) $$;
CREATE COLLATION IF NOT EXISTS public.case_sensitive FROM "C";
"#;

/// How long a statement stays SUBMITTED, so pollers see the real service's states.
const SUBMITTED_FOR: Duration = Duration::from_millis(20);
/// Records per `GetStatementResult` page: small, so that pagination is exercised.
const PAGE_ROWS: usize = 3;
/// The real service's limits: statements per `BatchExecuteStatement`, bytes per statement.
const MAX_SQLS: usize = 40;
const MAX_SQL_BYTES: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub submitted: usize,
    pub finished: usize,
    pub failed: usize,
    pub aborted: usize,
    pub throttled: usize,
    pub cancelled: usize,
}

pub struct DataApiStandIn {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl DataApiStandIn {
    /// Starts on 127.0.0.1:<free port>, executing on `pg_url` (libpq key=value, no TLS) and
    /// reading COPY manifests from the S3 at `s3_endpoint`. Call it outside any async runtime.
    pub fn start(pg_url: &str, s3_endpoint: &str) -> DataApiStandIn {
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            if std::env::var_os(var).is_none() {
                std::env::set_var(var, "testing");
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("data-api-stand-in")
            .build()
            .expect("the Data API stand-in's runtime");
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(s3_endpoint.to_string()),
            profile: None,
            max_attempts: Some(1),
        };
        let (listener, s3) = runtime.block_on(async {
            prepare_database(pg_url).await;
            let sdk = sdk_config(&settings).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port for the Data API stand-in");
            (listener, s3_client(&sdk, &settings))
        });
        let port = listener.local_addr().expect("the Data API stand-in's port").port();
        let shared = Arc::new(Shared { pg_url: pg_url.to_string(), s3, state: Mutex::new(State::default()) });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        runtime.spawn(serve(listener, shared.clone(), stopped));
        DataApiStandIn { runtime: Some(runtime), port, shared, stop: Some(stop) }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `n` HTTP requests (any operation) are answered with a ThrottlingException.
    pub fn throttle_next(&self, n: usize) {
        self.shared.lock().throttle = n;
    }

    /// The next `n` statements submitted stay STARTED for `hold` before they run; a
    /// CancelStatement meanwhile aborts them with nothing executed.
    pub fn hold_next(&self, n: usize, hold: Duration) {
        self.shared.lock().holds = std::iter::repeat_n(hold, n).collect();
    }

    /// Every accepted call's SQL texts, in submission order, exactly as received.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.shared.lock().calls.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats.clone()
    }
}

impl Drop for DataApiStandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Not blocking: the stand-in may be dropped inside a test's own async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn prepare_database(pg_url: &str) {
    let (client, conn) = tokio_postgres::connect(pg_url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("the Data API stand-in cannot connect to PostgreSQL ({pg_url}): {e}"));
    tokio::spawn(conn);
    // Serialized: two sessions replacing one function at once fail ("tuple concurrently updated").
    let sql = format!("BEGIN; SELECT pg_advisory_xact_lock(2019122001); {REDSHIFT_ON_POSTGRES} COMMIT;");
    if let Err(e) = client.batch_execute(&sql).await {
        panic!("the Data API stand-in cannot prepare PostgreSQL for Redshift SQL: {}", pg_error(&e));
    }
}

// ----- State ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Submitted,
    Started,
    Finished,
    Failed,
    Aborted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Submitted => "SUBMITTED",
            Status::Started => "STARTED",
            Status::Finished => "FINISHED",
            Status::Failed => "FAILED",
            Status::Aborted => "ABORTED",
        }
    }

    fn ended(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Aborted)
    }
}

/// Rows of a statement that returned some: (name, type) per column, Field objects per row.
struct ResultSet {
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Value>>,
}

/// Progress shared by a call and each of its statements.
struct Progress {
    status: Status,
    error: Option<String>,
    updated: SystemTime,
    started: Option<Instant>,
    duration: Option<Duration>,
}

impl Progress {
    fn new(now: SystemTime) -> Progress {
        Progress { status: Status::Submitted, error: None, updated: now, started: None, duration: None }
    }

    fn start(&mut self) {
        self.status = Status::Started;
        self.started = Some(Instant::now());
        self.updated = SystemTime::now();
    }

    fn end(&mut self, status: Status, error: Option<String>) {
        self.status = status;
        self.error = error;
        self.updated = SystemTime::now();
        self.duration = Some(self.started.map_or(Duration::ZERO, |s| s.elapsed()));
    }

    /// The members both a statement and a sub-statement describe themselves with.
    fn describe(&self, created: SystemTime, out: &mut Map<String, Value>) {
        out.insert("Status".into(), self.status.as_str().into());
        if let Some(e) = &self.error {
            out.insert("Error".into(), e.clone().into());
        }
        out.insert("CreatedAt".into(), epoch(created).into());
        out.insert("UpdatedAt".into(), epoch(self.updated).into());
        let nanos = self.duration.map_or(-1, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        out.insert("Duration".into(), nanos.into());
        out.insert("ResultSize".into(), (-1).into());
    }
}

struct Sub {
    sql: String,
    progress: Progress,
    /// Rows returned or affected; -1 until finished.
    rows: i64,
    result: Option<ResultSet>,
}

/// One ExecuteStatement or BatchExecuteStatement call.
struct Call {
    batch: bool,
    /// Database, ClusterIdentifier… as given, echoed back.
    target: Map<String, Value>,
    created: SystemTime,
    progress: Progress,
    subs: Vec<Sub>,
    /// Set while the call has a PostgreSQL session.
    cancel: Option<CancelToken>,
    /// Between the decision to commit and its outcome, which a cancel then waits for.
    committing: bool,
    abort: Arc<Notify>,
}

impl Call {
    /// Statement `n` failed: the call fails with its error, later statements never ran.
    fn fail_at(&mut self, n: usize, error: String) {
        for (i, sub) in self.subs.iter_mut().enumerate().filter(|(_, s)| !s.progress.status.ended()) {
            match i == n {
                true => sub.progress.end(Status::Failed, Some(error.clone())),
                false => sub.progress.end(Status::Aborted, None),
            }
        }
        self.progress.end(Status::Failed, Some(error));
    }

    fn abort(&mut self) {
        for sub in self.subs.iter_mut().filter(|s| !s.progress.status.ended()) {
            sub.progress.end(Status::Aborted, None);
        }
        self.progress.end(Status::Aborted, None);
    }

    fn describe(&self, id: &str) -> Value {
        let mut out = self.target.clone();
        out.insert("Id".into(), id.into());
        self.progress.describe(self.created, &mut out);
        let sqls: Vec<&str> = self.subs.iter().map(|s| s.sql.as_str()).collect();
        out.insert("QueryString".into(), sqls.join("; ").into());
        out.insert("HasResultSet".into(), self.subs.iter().any(|s| s.result.is_some()).into());
        let rows = match self.progress.status {
            Status::Finished => self.subs.iter().map(|s| s.rows.max(0)).sum(),
            _ => -1,
        };
        out.insert("ResultRows".into(), rows.into());
        if self.batch {
            let subs = self.subs.iter().enumerate().map(|(i, s)| {
                let mut sub = Map::new();
                sub.insert("Id".into(), format!("{id}:{}", i + 1).into());
                s.progress.describe(self.created, &mut sub);
                sub.insert("QueryString".into(), s.sql.clone().into());
                sub.insert("HasResultSet".into(), s.result.is_some().into());
                sub.insert("ResultRows".into(), s.rows.into());
                Value::Object(sub)
            });
            out.insert("SubStatements".into(), subs.collect::<Vec<_>>().into());
        }
        Value::Object(out)
    }
}

#[derive(Default)]
struct State {
    statements: HashMap<String, Call>,
    /// The SQL texts of every accepted call, in order.
    calls: Vec<Vec<String>>,
    stats: Stats,
    throttle: usize,
    holds: VecDeque<Duration>,
}

struct Shared {
    pg_url: String,
    s3: aws_sdk_s3::Client,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on call `id` (and the counters) under the lock.
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Call, &mut Stats) -> R) -> Option<R> {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.statements.get_mut(id).map(|call| f(call, &mut state.stats))
    }

    fn running(&self, id: &str) -> bool {
        self.with(id, |c, _| c.progress.status == Status::Started) == Some(true)
    }
}

// ----- HTTP ----------------------------------------------------------------------------------

/// An error answer: awsJson1_1 puts the code in `__type` (and the SDK also reads the
/// `x-amzn-errortype` header, which wins), the text in `Message`; all are client errors (400).
struct ApiError {
    code: &'static str,
    message: String,
    resource_id: Option<String>,
}

fn api_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError { code, message: message.into(), resource_id: None }
}

fn validation(message: impl Into<String>) -> ApiError {
    api_error("ValidationException", message)
}

fn serialization(message: impl Into<String>) -> ApiError {
    api_error("SerializationException", message)
}

fn not_found(id: &str, message: &str) -> ApiError {
    ApiError { resource_id: Some(id.to_string()), ..api_error("ResourceNotFoundException", message) }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let target =
        req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let throttled = {
        let mut state = shared.lock();
        let throttled = state.throttle > 0;
        if throttled {
            state.throttle -= 1;
            state.stats.throttled += 1;
        }
        throttled
    };
    let answer = match body {
        _ if throttled => Err(api_error("ThrottlingException", "Rate exceeded")),
        Ok(body) => dispatch(&shared, &target, &body).await,
        Err(e) => Err(serialization(format!("cannot read the request body: {e}"))),
    };
    let (status, body, code) = match answer {
        Ok(v) => (200, v, None),
        Err(e) => {
            let mut body = json!({ "__type": e.code, "Message": e.message });
            if let Some(id) = e.resource_id {
                body["ResourceId"] = id.into();
            }
            (400, body, Some(e.code))
        }
    };
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", new_id());
    if let Some(code) = code {
        response = response.header("x-amzn-errortype", code);
    }
    Ok(response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

async fn dispatch(shared: &Arc<Shared>, target: &str, body: &[u8]) -> Result<Value, ApiError> {
    let input = match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
        Ok(Value::Object(input)) => input,
        Ok(_) => return Err(serialization("the request body must be a JSON object")),
        Err(e) => return Err(serialization(format!("the request body is not JSON: {e}"))),
    };
    match target.strip_prefix("RedshiftData.").unwrap_or_default() {
        "ExecuteStatement" => submit(shared, &input, false),
        "BatchExecuteStatement" => submit(shared, &input, true),
        "DescribeStatement" => describe(shared, &input),
        "GetStatementResult" => statement_result(shared, &input),
        "CancelStatement" => cancel(shared, &input).await,
        _ => Err(api_error("UnknownOperationException", format!("Unknown operation: {target:?}"))),
    }
}

fn opt_str(input: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(serialization(format!("{key} must be a string"))),
    }
}

fn null_member(key: &str) -> ApiError {
    let member = key[..1].to_lowercase() + &key[1..];
    validation(format!(
        "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
    ))
}

fn req_str(input: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    opt_str(input, key)?.ok_or_else(|| null_member(key))
}

/// A statement id, `<uuid>` or `<uuid>:<n>`: the call's id and the sub-statement number.
fn parse_id(id: &str) -> Result<(&str, Option<usize>), ApiError> {
    let (base, sub) = match id.split_once(':') {
        Some((base, n)) => (base, Some(n)),
        None => (id, None),
    };
    let groups: Vec<&str> = base.split('-').collect();
    let uuid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && base.bytes().all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit());
    let digits = sub.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !uuid || !digits {
        return Err(validation(format!("id must satisfy regex pattern: {ID_PATTERN}")));
    }
    // A number too large to be a sub-statement is simply not found.
    Ok((base, sub.map(|n| n.parse().unwrap_or(usize::MAX))))
}

const ID_PATTERN: &str = r"^[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d+)?$";

/// A fresh lower-case UUID (version 4 layout).
fn new_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

// ----- Operations ----------------------------------------------------------------------------

/// ExecuteStatement (`batch` false) and BatchExecuteStatement: validate, record, and start
/// the call in the background.
fn submit(shared: &Arc<Shared>, input: &Map<String, Value>, batch: bool) -> Result<Value, ApiError> {
    let sqls: Vec<String> = if batch {
        let list = match input.get("Sqls") {
            None | Some(Value::Null) => return Err(null_member("Sqls")),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(serialization("Sqls must be a list of strings")),
        };
        let sqls = list.iter().map(|v| v.as_str().map(str::to_string));
        sqls.collect::<Option<_>>().ok_or_else(|| serialization("Sqls must be a list of strings"))?
    } else {
        vec![req_str(input, "Sql")?]
    };
    let member = if batch { "sqls" } else { "sql" };
    if sqls.is_empty() || sqls.len() > MAX_SQLS {
        return Err(validation(format!(
            "1 validation error detected: Value at '{member}' failed to satisfy constraint: \
             Member must have length less than or equal to {MAX_SQLS} and greater than or equal to 1"
        )));
    }
    if let Some(long) = sqls.iter().find(|s| s.len() > MAX_SQL_BYTES) {
        return Err(validation(format!(
            "The query is {} bytes: the maximum query statement size is {MAX_SQL_BYTES} bytes",
            long.len()
        )));
    }
    let mut target = Map::new();
    target.insert("Database".into(), req_str(input, "Database")?.into());
    for key in ["ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn"] {
        if let Some(v) = opt_str(input, key)? {
            target.insert(key.into(), v.into());
        }
    }
    if target.contains_key("ClusterIdentifier") == target.contains_key("WorkgroupName") {
        return Err(validation("Either ClusterIdentifier or WorkgroupName must be specified, but not both."));
    }
    if input.get("Parameters").is_some_and(|p| !p.is_null()) {
        return Err(validation("the Data API stand-in does not support Parameters"));
    }
    let id = new_id();
    let now = SystemTime::now();
    let abort = Arc::new(Notify::new());
    let hold = {
        let mut state = shared.lock();
        state.calls.push(sqls.clone());
        state.stats.submitted += 1;
        let subs = sqls
            .iter()
            .map(|sql| Sub { sql: sql.clone(), progress: Progress::new(now), rows: -1, result: None })
            .collect();
        let call = Call {
            batch,
            target: target.clone(),
            created: now,
            progress: Progress::new(now),
            subs,
            cancel: None,
            committing: false,
            abort: abort.clone(),
        };
        state.statements.insert(id.clone(), call);
        state.holds.pop_front()
    };
    tokio::spawn(run_call(shared.clone(), id.clone(), sqls, hold, abort));
    target.insert("Id".into(), id.into());
    target.insert("CreatedAt".into(), epoch(now).into());
    Ok(Value::Object(target))
}

fn describe(shared: &Shared, input: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = req_str(input, "Id")?;
    let (base, sub) = parse_id(&id)?;
    let state = shared.lock();
    match (state.statements.get(base), sub) {
        (Some(call), None) => Ok(call.describe(base)),
        _ => Err(not_found(&id, "Query does not exist.")),
    }
}

fn statement_result(shared: &Shared, input: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = req_str(input, "Id")?;
    let (base, sub) = parse_id(&id)?;
    let token = opt_str(input, "NextToken")?;
    let state = shared.lock();
    let call = state.statements.get(base).ok_or_else(|| not_found(&id, "Query does not exist."))?;
    let n = match (call.batch, sub) {
        (true, None) => {
            return Err(validation(
                "BatchExecuteStatement result can only be retrieved with sub-statement id.",
            ))
        }
        (false, None) => 0,
        (true, Some(n)) if (1..=call.subs.len()).contains(&n) => n - 1,
        _ => return Err(not_found(&id, "Query does not exist.")),
    };
    let no_result =
        || not_found(&id, "Query does not have result. Please check query status with DescribeStatement.");
    if call.progress.status != Status::Finished {
        return Err(no_result());
    }
    let result = call.subs.get(n).and_then(|s| s.result.as_ref()).ok_or_else(no_result)?;
    let total = result.rows.len();
    let from = match token.as_deref() {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&from| from <= total)
            .ok_or_else(|| validation("Invalid NextToken"))?,
    };
    let to = (from + PAGE_ROWS).min(total);
    let columns: Vec<Value> = result
        .columns
        .iter()
        .map(|(name, ty)| json!({ "name": name, "label": name, "typeName": ty }))
        .collect();
    let mut out =
        json!({ "Records": &result.rows[from..to], "ColumnMetadata": columns, "TotalNumRows": total });
    if to < total {
        out["NextToken"] = to.to_string().into();
    }
    Ok(out)
}

/// Aborts a SUBMITTED or STARTED call (cancelling its running query in PostgreSQL); a call
/// that is committing is let finish, and answered as the finished call it then is.
async fn cancel(shared: &Shared, input: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = req_str(input, "Id")?;
    let (base, sub) = parse_id(&id)?;
    if sub.is_some() {
        return Err(not_found(&id, "Query does not exist."));
    }
    loop {
        let token = {
            let mut guard = shared.lock();
            let state = &mut *guard;
            let call =
                state.statements.get_mut(base).ok_or_else(|| not_found(&id, "Query does not exist."))?;
            if call.committing {
                None
            } else if call.progress.status.ended() {
                let status = call.progress.status.as_str();
                return Err(validation(format!(
                    "Could not cancel a query that is already in {status} state with ID: {id}"
                )));
            } else {
                call.abort();
                call.abort.notify_one();
                state.stats.aborted += 1;
                state.stats.cancelled += 1;
                Some(call.cancel.clone())
            }
        };
        match token {
            None => tokio::time::sleep(Duration::from_millis(5)).await,
            Some(token) => {
                if let Some(token) = token {
                    tokio::spawn(async move { token.cancel_query(NoTls).await });
                }
                return Ok(json!({ "Status": true }));
            }
        }
    }
}

// ----- Execution -----------------------------------------------------------------------------

/// Runs a call: SUBMITTED for a moment, then STARTED (plus any hold), then every statement in
/// one transaction on a fresh session (the Data API keeps no session between calls).
async fn run_call(
    shared: Arc<Shared>,
    id: String,
    sqls: Vec<String>,
    hold: Option<Duration>,
    abort: Arc<Notify>,
) {
    tokio::time::sleep(SUBMITTED_FOR).await;
    let started = shared.with(&id, |call, _| {
        let go = call.progress.status == Status::Submitted;
        if go {
            call.progress.start();
        }
        go
    });
    if started != Some(true) {
        return;
    }
    if let Some(hold) = hold {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = abort.notified() => return,
        }
    }
    let client = match tokio_postgres::connect(&shared.pg_url, NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            shared.with(&id, |call, stats| {
                if call.progress.status == Status::Started {
                    call.fail_at(0, pg_error(&e));
                    stats.failed += 1;
                }
            });
            return;
        }
    };
    let token = client.cancel_token();
    if shared.with(&id, |call, _| {
        call.cancel = Some(token);
        call.progress.status == Status::Started
    }) != Some(true)
    {
        return;
    }
    let ok = match client.batch_execute("BEGIN").await {
        Ok(()) => run_statements(&shared, &id, &client, &sqls).await,
        Err(e) => {
            shared.with(&id, |call, stats| {
                if call.progress.status == Status::Started {
                    call.fail_at(0, pg_error(&e));
                    stats.failed += 1;
                }
            });
            false
        }
    };
    // Commit unless it failed or was cancelled; a cancel arriving from here on waits.
    let commit = ok
        && shared.with(&id, |call, _| {
            call.committing = call.progress.status == Status::Started;
            call.committing
        }) == Some(true);
    if !commit {
        let _ = client.batch_execute("ROLLBACK").await;
        return;
    }
    let committed = client.batch_execute("COMMIT").await;
    shared.with(&id, |call, stats| {
        call.committing = false;
        match committed {
            Ok(()) => {
                call.progress.end(Status::Finished, None);
                stats.finished += 1;
            }
            Err(e) => {
                call.progress.end(Status::Failed, Some(pg_error(&e)));
                stats.failed += 1;
            }
        }
    });
}

/// Runs the statements in order; false when one failed or the call was cancelled (the
/// call's state then says which).
async fn run_statements(shared: &Shared, id: &str, client: &Client, sqls: &[String]) -> bool {
    for (n, sql) in sqls.iter().enumerate() {
        let go = shared.with(id, |call, _| {
            let go = call.progress.status == Status::Started;
            if let (true, Some(sub)) = (go, call.subs.get_mut(n)) {
                sub.progress.start();
            }
            go
        });
        if go != Some(true) {
            return false;
        }
        let outcome = match translate(sql) {
            Ok(Translated::Sql(sql)) => run_sql(client, &sql).await,
            Ok(Translated::Copy(copy)) => {
                run_copy(client, &shared.s3, &copy, &|| shared.running(id)).await.map(|rows| (rows, None))
            }
            Err(message) => Err(format!("ERROR: {message}")),
        };
        let ok = shared.with(id, |call, stats| {
            if call.progress.status != Status::Started {
                return false; // cancelled meanwhile: already ABORTED
            }
            match (outcome, call.subs.get_mut(n)) {
                (Ok((rows, result)), Some(sub)) => {
                    sub.rows = rows;
                    sub.result = result;
                    sub.progress.end(Status::Finished, None);
                    true
                }
                (Ok(_), None) => true,
                (Err(error), _) => {
                    call.fail_at(n, error);
                    stats.failed += 1;
                    false
                }
            }
        });
        if ok != Some(true) {
            return false;
        }
    }
    true
}

/// The largest row a result may hold.
const MAX_ROW_BYTES: usize = 64 * 1024;

/// Runs one statement: rows affected (or returned), and the rows when it returns some. The
/// statement is prepared only to learn its column types; the simple protocol then runs it,
/// giving every value as text, which is typed back per column.
async fn run_sql(client: &Client, sql: &str) -> Result<(i64, Option<ResultSet>), String> {
    let prepared = client.prepare(sql).await.map_err(|e| pg_error(&e))?;
    let columns: Vec<(String, Type)> =
        prepared.columns().iter().map(|c| (c.name().to_string(), c.type_().clone())).collect();
    let messages = client.simple_query(sql).await.map_err(|e| pg_error(&e))?;
    let (mut rows, mut count) = (Vec::new(), 0);
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => {
                // "Troubleshooting issues for Amazon Redshift Data API" (Management Guide): a
                // row of a result holds at most 64 KB ("Packet for query is too large").
                let size: usize = (0..row.len()).map(|i| row.get(i).map_or(0, str::len)).sum();
                if size > MAX_ROW_BYTES {
                    return Err(format!("Packet for query is too large ({size} bytes > {MAX_ROW_BYTES})"));
                }
                rows.push((0..row.len()).map(|i| field(row.get(i), columns.get(i).map(|c| &c.1))).collect())
            }
            SimpleQueryMessage::CommandComplete(n) => count = i64::try_from(n).unwrap_or(i64::MAX),
            _ => {}
        }
    }
    let names = columns.iter().map(|(name, ty)| (name.clone(), ty.name().to_string())).collect();
    Ok((count, (!columns.is_empty()).then_some(ResultSet { columns: names, rows })))
}

/// A value as the Data API's Field union: integers, booleans and floats typed, the rest text.
fn field(text: Option<&str>, ty: Option<&Type>) -> Value {
    let Some(text) = text else { return json!({ "isNull": true }) };
    match ty {
        Some(t) if [Type::INT2, Type::INT4, Type::INT8].contains(t) => {
            if let Ok(n) = text.parse::<i64>() {
                return json!({ "longValue": n });
            }
        }
        Some(t) if *t == Type::BOOL => return json!({ "booleanValue": text == "t" }),
        Some(t) if *t == Type::FLOAT4 || *t == Type::FLOAT8 => {
            if let Some(x) = text.parse::<f64>().ok().filter(|x| x.is_finite()) {
                return json!({ "doubleValue": x });
            }
        }
        // Redshift shows VARBYTE as bare hex; PostgreSQL prefixes it with \x.
        Some(t) if *t == Type::BYTEA => {
            return json!({ "stringValue": text.strip_prefix("\\x").unwrap_or(text) })
        }
        _ => {}
    }
    json!({ "stringValue": text })
}

//! The statement layer both backends share: one function per SQL statement, with typed
//! parameters and typed rows. The SQL text is in `queries/<dialect>/<name>.sql`; both dialects'
//! files take the same parameters in the same order (a dialect may leave one unused, and says so
//! at the top of its file), so this Rust is written once and expanded per dialect by
//! [`statements!`]. Statements only one backend has live in that backend's module.

pub(crate) use crpc_service::sql_file;

/// Expands the shared statements for one dialect: `statements!(sqlx::Sqlite, "sqlite")`.
macro_rules! statements {
    ($db:ty, $dir:literal) => {
        use sqlx::Executor;
        use $crate::stats::FunctionStats;
        #[allow(unused_imports)]
        use $crate::store::rows::*;
        use $crate::store::statements::sql_file;
        use $crate::store::{ClaimRequest, Holder, StoreError, WorkerRecord};

        type Result<T> = std::result::Result<T, StoreError>;

        /// Leases up to `req.max_tasks` ready tasks and, for a processor that runs chained
        /// leases, the tasks that follow them (see `rows::chain_heads`).
        pub async fn claim(
            conn: &mut <$db as sqlx::Database>::Connection,
            req: &ClaimRequest,
            grace_ms: i64,
        ) -> Result<Vec<LeaseRow>> {
            let datasets = serde_json::to_string(&req.datasets)?;
            let query = sqlx::query_as(sql_file!($dir, "claim"));
            let mut rows = claim_binds(query, req, grace_ms, &datasets, req.max_tasks as i64)
                .fetch_all(&mut *conn)
                .await?;
            let predictors = req.predictors.as_deref();
            let heads = $crate::store::rows::chain_heads(&rows, predictors, req.held_ms);
            if let Some((heads, count)) = heads.filter(|_| req.chains) {
                let query = sqlx::query_as(sql_file!($dir, "chain"));
                let chained = claim_binds(query, req, grace_ms, &datasets, count as i64)
                    .bind(heads)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.extend(chained);
            }
            Ok(rows)
        }

        /// The parameters claim and chain share; `limit`: how many to lease.
        fn claim_binds<'q>(
            query: sqlx::query::QueryAs<'q, $db, LeaseRow, <$db as sqlx::Database>::Arguments<'q>>,
            req: &'q ClaimRequest,
            grace_ms: i64,
            datasets: &'q str,
            limit: i64,
        ) -> sqlx::query::QueryAs<'q, $db, LeaseRow, <$db as sqlx::Database>::Arguments<'q>> {
            let memory = req
                .memory_mb
                .map_or(i64::MAX, |m| m.min(i64::MAX as u64) as i64);
            query
                .bind(&req.holder.worker_id)
                .bind(req.now)
                .bind(req.now.saturating_add(req.lease_ttl_ms))
                .bind(req.gpus as i64)
                .bind(memory)
                .bind(datasets)
                .bind(limit)
                .bind(grace_ms)
                .bind(&req.holder.owner)
                .bind(req.incarnation.map(|i| i.to_string()))
                .bind(req.request_id.map(|i| i.to_string()))
                .bind(i64::from(req.gpu_only))
        }

        /// The current leases lease request `request_id` of `holder` took.
        pub async fn granted<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            holder: &Holder,
            request_id: &str,
        ) -> Result<Vec<LeaseRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "granted"))
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .bind(request_id)
                .fetch_all(ex)
                .await?)
        }

        /// Hands back the holder's current leases of `items` (JSON `[{id, lease_epoch}]`)
        /// without using an attempt; the ids released, with their state now.
        pub async fn release<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            items: &str,
            holder: &Holder,
        ) -> Result<Vec<(DbId, String)>> {
            Ok(sqlx::query_as(sql_file!($dir, "release"))
                .bind(items)
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .fetch_all(ex)
                .await?)
        }

        /// Hands back every lease the holder's run `incarnation` still has; the ids, with
        /// their state now.
        pub async fn release_run<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            holder: &Holder,
            incarnation: &str,
        ) -> Result<Vec<(DbId, String)>> {
            Ok(sqlx::query_as(sql_file!($dir, "release_run"))
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .bind(incarnation)
                .fetch_all(ex)
                .await?)
        }

        /// Extends the holder's current leases of `items`; the ids extended.
        pub async fn heartbeat<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            items: &str,
            deadline: i64,
            holder: &Holder,
        ) -> Result<Vec<DbId>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "heartbeat"))
                .bind(items)
                .bind(deadline)
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .fetch_all(ex)
                .await?)
        }

        /// Of `items`: (id, true) for the holder's cancelled leases, (id, false) for current
        /// leases another worker holds.
        pub async fn heartbeat_others<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            items: &str,
            holder: &Holder,
        ) -> Result<Vec<(DbId, bool)>> {
            Ok(sqlx::query_as(sql_file!($dir, "heartbeat_others"))
                .bind(items)
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .fetch_all(ex)
                .await?)
        }

        /// Applies the answers of `items` (see `core::answer_json`) that their senders hold.
        pub async fn answer<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            at: &$crate::store::core::Finishing<'_>,
            items: &str,
        ) -> Result<Vec<AnsweredRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "answer"))
                .bind(at.now)
                .bind(at.delays)
                .bind(at.first_number)
                .bind(at.ttl_s)
                .bind(items)
                .fetch_all(ex)
                .await?)
        }

        /// The lease columns of the tasks in `ids` (a JSON array).
        pub async fn lease_states<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            ids: &str,
        ) -> Result<Vec<LeaseStateRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "lease_states"))
                .bind(ids)
                .fetch_all(ex)
                .await?)
        }

        /// Cancels a task not yet finished: `Some(its batch)` when it was.
        pub async fn cancel<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            at: &$crate::store::core::Finishing<'_>,
            error: &str,
            id: DbId,
        ) -> Result<Option<Option<DbId>>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "cancel"))
                .bind(at.now)
                .bind(at.first_number)
                .bind(at.ttl_s)
                .bind(error)
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// Cancels every unfinished task of batch `id`; what it cancelled.
        pub async fn cancel_batch<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            at: &$crate::store::core::Finishing<'_>,
            error: &str,
            id: DbId,
        ) -> Result<Vec<EndedRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "cancel_batch"))
                .bind(at.now)
                .bind(at.first_number)
                .bind(at.ttl_s)
                .bind(error)
                .bind(id)
                .fetch_all(ex)
                .await?)
        }

        /// The state of one task.
        pub async fn task_state<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<String>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "task_state"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// Deletes one task; what it was.
        pub async fn delete<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<EndedRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "delete"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// Up to `limit` leases past their deadline at `now`.
        pub async fn expired<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            now: i64,
            limit: i64,
        ) -> Result<Vec<ExpiredRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "expired"))
                .bind(now)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Up to `limit` leases `holder` took in runs older than `incarnation`.
        pub async fn orphaned<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            holder: &Holder,
            incarnation: &str,
            limit: i64,
        ) -> Result<Vec<ExpiredRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "orphaned"))
                .bind(&holder.worker_id)
                .bind(&holder.owner)
                .bind(incarnation)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Takes `rows`' leases from their holder (expired, or orphaned by a restart) as
        /// `core::reap_plan` decides; what became of them.
        pub async fn take_leases<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            at: &$crate::store::core::Finishing<'_>,
            rows: &[ExpiredRow],
            loss: $crate::store::LeaseLoss,
        ) -> Result<$crate::store::ReapOutcome> {
            if rows.is_empty() {
                return Ok(Default::default());
            }
            let plan = $crate::store::core::reap_plan(rows, at.now, loss);
            $crate::store::core::reap_outcome(reap(ex, at, &plan).await?)
        }

        /// Applies the reaper's plan (see `core::reap_plan`).
        pub async fn reap<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            at: &$crate::store::core::Finishing<'_>,
            plan: &str,
        ) -> Result<Vec<EndedRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "reap"))
                .bind(at.now)
                .bind(at.first_number)
                .bind(at.ttl_s)
                .bind(plan)
                .fetch_all(ex)
                .await?)
        }

        /// Deletes up to `limit` finished tasks past their retention; how many.
        pub async fn delete_expired<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            now: i64,
            limit: i64,
        ) -> Result<u64> {
            let done = sqlx::query(sql_file!($dir, "delete_expired"))
                .bind(now)
                .bind(limit)
                .execute(ex)
                .await?;
            Ok(done.rows_affected())
        }

        /// Deletes up to `limit` empty batch records created before `before`.
        pub async fn delete_batches<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            before: i64,
            limit: i64,
        ) -> Result<u64> {
            let done = sqlx::query(sql_file!($dir, "delete_batches"))
                .bind(before)
                .bind(limit)
                .execute(ex)
                .await?;
            Ok(done.rows_affected())
        }

        /// Records a processor sighting; rows written (0: the id is another subject's, or a
        /// newer run of it was seen).
        pub async fn upsert_worker<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            w: &WorkerRecord,
            incarnation: Option<&str>,
        ) -> Result<u64> {
            let done = sqlx::query(sql_file!($dir, "upsert_worker"))
                .bind(&w.worker_id)
                .bind(&w.owner)
                .bind(w.slots as i64)
                .bind(serde_json::to_string(&w.capabilities)?)
                .bind(w.last_seen)
                .bind(w.dispatch_ms)
                .bind(incarnation)
                .bind(w.speed)
                .execute(ex)
                .await?;
            Ok(done.rows_affected())
        }

        /// A worker id's subject and newest run.
        pub async fn worker_holder<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            worker_id: &str,
        ) -> Result<Option<(String, Option<String>)>> {
            Ok(sqlx::query_as(sql_file!($dir, "worker_holder"))
                .bind(worker_id)
                .fetch_optional(ex)
                .await?)
        }

        /// Refreshes a processor's last sighting (and its meters, when given).
        pub async fn touch_worker<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            t: &$crate::store::WorkerTouch,
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "touch_worker"))
                .bind(&t.worker_id)
                .bind(t.now)
                .bind(t.dispatch_ms)
                .bind(&t.owner)
                .bind(t.speed)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Records the edges of newly inserted waiting tasks (`edges`: JSON `[[task, dep], …]`)
        /// and marks the tasks they wait for (`deps`: JSON ids) as having dependents.
        pub async fn link(
            conn: &mut <$db as sqlx::Database>::Connection,
            edges: &str,
            deps: &str,
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "link"))
                .bind(edges)
                .execute(&mut *conn)
                .await?;
            sqlx::query(sql_file!($dir, "mark_dependents"))
                .bind(deps)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        /// (id, owner) of those of `ids` (JSON) that exist.
        pub async fn dep_owners<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            ids: &str,
        ) -> Result<Vec<(DbId, String)>> {
            Ok(sqlx::query_as(sql_file!($dir, "dep_owners"))
                .bind(ids)
                .fetch_all(ex)
                .await?)
        }

        /// Up to `limit` waiting tasks none of whose dependencies is unfinished.
        pub async fn stuck_waiting<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            limit: i64,
        ) -> Result<Vec<DbId>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "stuck_waiting"))
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Settles waiting tasks: `from` just finished (their waiting dependents are looked
        /// up), `candidates` are waiting tasks to look at directly. Each is queued with its
        /// references replaced once everything it waits for succeeded (or, when it memoizes
        /// and the same substituted call already succeeded, finished with that answer), or
        /// failed with `dependency_failed` once something did not; a task finished so settles
        /// its own dependents in turn. `at.first_number` is the first completion number it may
        /// use; it uses one per finished task.
        pub async fn settle(
            conn: &mut <$db as sqlx::Database>::Connection,
            at: &$crate::store::core::Finishing<'_>,
            from: Vec<uuid::Uuid>,
            candidates: Vec<uuid::Uuid>,
        ) -> Result<$crate::store::Settled> {
            use $crate::store::core;
            let mut out = $crate::store::Settled::default();
            let (mut from, mut cands) = (from, candidates);
            loop {
                let mut rows: Vec<WaitingRow> = Vec::new();
                if !from.is_empty() {
                    rows = sqlx::query_as(sql_file!($dir, "dependents"))
                        .bind(core::ids_json(&from))
                        .fetch_all(&mut *conn)
                        .await?;
                }
                let found: std::collections::HashSet<uuid::Uuid> =
                    rows.iter().map(|r| r.id.0).collect();
                cands.retain(|c| !found.contains(c));
                cands.sort_unstable();
                cands.dedup();
                if !cands.is_empty() {
                    let more: Vec<WaitingRow> = sqlx::query_as(sql_file!($dir, "waiting_tasks"))
                        .bind(core::ids_json(&cands))
                        .fetch_all(&mut *conn)
                        .await?;
                    rows.extend(more);
                }
                if rows.is_empty() {
                    return Ok(out);
                }
                let waiting = core::Waiting::of(rows)?;
                let deps: Vec<DepRow> = sqlx::query_as(sql_file!($dir, "dep_states"))
                    .bind(waiting.deps_json())
                    .fetch_all(&mut *conn)
                    .await?;
                let mut plan = core::settle_plan(waiting, deps)?;
                from = Vec::new();
                cands = Vec::new();
                if let Some(memo) = &plan.memo {
                    let hits: Vec<(DbId, Option<String>)> =
                        sqlx::query_as(sql_file!($dir, "memo_answers"))
                            .bind(memo)
                            .fetch_all(&mut *conn)
                            .await?;
                    if let Some(items) = plan.memo_hits(hits)? {
                        let first = at.first_number + out.finished.len() as i64;
                        let done: Vec<EndedRow> =
                            sqlx::query_as(sql_file!($dir, "succeed_waiting"))
                                .bind(at.now)
                                .bind(first)
                                .bind(at.ttl_s)
                                .bind(items)
                                .fetch_all(&mut *conn)
                                .await?;
                        for row in done {
                            let f: $crate::store::Finished = row.try_into()?;
                            from.push(f.id);
                            out.finished.push(f);
                        }
                    }
                }
                if let Some(items) = &plan.queue {
                    let done: Vec<(DbId, Option<String>, Option<String>)> =
                        sqlx::query_as(sql_file!($dir, "promote"))
                            .bind(items)
                            .fetch_all(&mut *conn)
                            .await?;
                    if let Some(pairs) = &plan.files {
                        sqlx::query(sql_file!($dir, "inherit_files"))
                            .bind(pairs)
                            .execute(&mut *conn)
                            .await?;
                    }
                    out.queued += done.len();
                    out.gates.extend(done.into_iter().flat_map(|(_, f, k)| f.into_iter().chain(k)));
                }
                if let Some(items) = &plan.fail {
                    let first = at.first_number + out.finished.len() as i64;
                    let failed: Vec<EndedRow> = sqlx::query_as(sql_file!($dir, "fail_waiting"))
                        .bind(at.now)
                        .bind(first)
                        .bind(at.ttl_s)
                        .bind(items)
                        .fetch_all(&mut *conn)
                        .await?;
                    for row in failed {
                        let f: $crate::store::Finished = row.try_into()?;
                        from.push(f.id);
                        out.finished.push(f);
                    }
                }
            }
        }

        /// The task holding `owner`'s idempotency `key`.
        pub async fn idempotent<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
            key: &str,
        ) -> Result<Option<KeyedRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "idempotent"))
                .bind(owner)
                .bind(key)
                .fetch_optional(ex)
                .await?)
        }

        /// Writes one function's statistics row.
        pub async fn upsert_stats<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            st: &FunctionStats,
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "upsert_stats"))
                .bind(&st.key.package)
                .bind(&st.key.version)
                .bind(&st.key.function)
                .bind(st.count.min(i64::MAX as u64) as i64)
                .bind(st.failures.min(i64::MAX as u64) as i64)
                .bind(st.mean_ms)
                .bind(st.var_ms)
                .bind(serde_json::to_string(&st.sketch)?)
                .bind(st.last_seen)
                .bind(serde_json::to_string(&st.model)?)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Every function's statistics.
        pub async fn function_stats<'e, E: Executor<'e, Database = $db>>(
            ex: E,
        ) -> Result<Vec<StatsRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "function_stats"))
                .fetch_all(ex)
                .await?)
        }

        /// Queued tasks of `owner`.
        pub async fn pending_count<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
        ) -> Result<i64> {
            Ok(sqlx::query_scalar(sql_file!($dir, "pending_count"))
                .bind(owner)
                .fetch_one(ex)
                .await?)
        }

        /// `owner`'s newest live memoizing task with these arguments.
        pub async fn memoized<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            args_hash: &str,
            owner: &str,
        ) -> Result<Option<IdStateRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "memoized"))
                .bind(args_hash)
                .bind(owner)
                .fetch_optional(ex)
                .await?)
        }

        /// One task.
        pub async fn task<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<TaskRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "task"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// A page of `owner`'s tasks, newest first.
        pub async fn tasks_of_owner<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
            page: &$crate::store::Page,
        ) -> Result<Vec<TaskRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "tasks_of_owner"))
                .bind(owner)
                .bind(page.state)
                .bind(page.before)
                .bind(page.limit)
                .fetch_all(ex)
                .await?)
        }

        /// A page of everyone's tasks, newest first.
        pub async fn tasks_all<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            page: &$crate::store::Page,
        ) -> Result<Vec<TaskRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "tasks_all"))
                .bind(page.state)
                .bind(page.before)
                .bind(page.limit)
                .fetch_all(ex)
                .await?)
        }

        /// One batch record.
        pub async fn batch<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<BatchRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "batch"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// Whether a batch has unfinished tasks.
        pub async fn batch_open<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<bool> {
            Ok(sqlx::query_scalar(sql_file!($dir, "batch_open"))
                .bind(id)
                .fetch_one(ex)
                .await?)
        }

        /// (state, count) of a batch's tasks.
        pub async fn batch_counts<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Vec<(String, i64)>> {
            Ok(sqlx::query_as(sql_file!($dir, "batch_counts"))
                .bind(id)
                .fetch_all(ex)
                .await?)
        }

        /// A page of batches, newest first: one owner's, or (`None`) everyone's.
        pub async fn batches<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: Option<&str>,
            limit: i64,
        ) -> Result<Vec<BatchRow>> {
            Ok(match owner {
                Some(o) => {
                    sqlx::query_as(sql_file!($dir, "batches_of_owner"))
                        .bind(o)
                        .bind(limit)
                        .fetch_all(ex)
                        .await?
                }
                None => {
                    sqlx::query_as(sql_file!($dir, "batches_all"))
                        .bind(limit)
                        .fetch_all(ex)
                        .await?
                }
            })
        }

        /// (state, count) of one owner's tasks.
        pub async fn state_counts_of_owner<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
        ) -> Result<Vec<(String, i64)>> {
            Ok(sqlx::query_as(sql_file!($dir, "state_counts_of_owner"))
                .bind(owner)
                .fetch_all(ex)
                .await?)
        }

        /// (state, package, function, count) over every task.
        pub async fn task_counts<'e, E: Executor<'e, Database = $db>>(
            ex: E,
        ) -> Result<Vec<(String, String, String, i64)>> {
            Ok(sqlx::query_as(sql_file!($dir, "task_counts"))
                .fetch_all(ex)
                .await?)
        }

        /// Finished tasks of a batch after a completion cursor.
        pub async fn batch_results<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
            after: i64,
            limit: i64,
        ) -> Result<Vec<BatchResultRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "batch_results"))
                .bind(id)
                .bind(after)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// A batch's tasks from index `from` on, in input order, finished or not.
        pub async fn batch_results_ordered<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
            from: i64,
            limit: i64,
        ) -> Result<Vec<BatchResultRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "batch_results_ordered"))
                .bind(id)
                .bind(from)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Schedules of `owner` (NULL: everyone's).
        pub async fn schedules_of<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: Option<&str>,
            limit: i64,
        ) -> Result<Vec<ScheduleRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "schedules_of"))
                .bind(owner)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Schedules due at `now`.
        pub async fn due_schedules<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            now: i64,
            limit: i64,
        ) -> Result<Vec<ScheduleRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "due_schedules"))
                .bind(now)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// A gate pass (caps.rs): records `limits`, then lets through, in claim order, the
        /// gated tasks of `keys` whose every cap has room (`leased`: tasks of these caps were
        /// just leased, which moves a rate's next slot). Gate passes run one at a time
        /// (`cap_lock`).
        pub async fn gate(
            conn: &mut <$db as sqlx::Database>::Connection,
            now: i64,
            limits: &[$crate::caps::CapLimit],
            keys: Vec<String>,
            leased: bool,
        ) -> Result<$crate::caps::Opened> {
            use std::collections::HashMap;
            use $crate::caps::{self, CapState};
            if keys.is_empty() && limits.is_empty() {
                return Ok(Default::default());
            }
            sqlx::query(sql_file!($dir, "cap_lock")).execute(&mut *conn).await?;
            cap_limits(&mut *conn, limits, now).await?;
            let mut keys = keys;
            keys.sort_unstable();
            keys.dedup();
            let mut states: HashMap<String, CapState> = HashMap::new();
            let mut out = caps::Admitted::default();
            if leased {
                load_caps(&mut *conn, &mut states, &keys).await?;
                states.values_mut().for_each(|s| s.started(now));
            }
            for key in &keys {
                load_caps(&mut *conn, &mut states, std::slice::from_ref(key)).await?;
                let room = states.get(key).map_or(0, |s| s.room());
                if room == 0 {
                    continue;
                }
                let heads: Vec<GatedRow> = sqlx::query_as(sql_file!($dir, "gated_heads"))
                    .bind(key)
                    .bind(room.min(caps::PASS_LIMIT) as i64)
                    .fetch_all(&mut *conn)
                    .await?;
                let heads: Vec<caps::Gated> = heads.into_iter().map(Into::into).collect();
                let others: Vec<String> = heads.iter().flat_map(|g| g.caps.clone()).collect();
                load_caps(&mut *conn, &mut states, &others).await?;
                caps::admit(&mut states, heads, now, &mut out);
            }
            let moved: Vec<serde_json::Value> = states
                .iter()
                .filter(|(_, s)| s.rate_per_s.is_some() && s.next_at != s.stored_next_at)
                .map(|(k, s)| serde_json::json!({"key": k, "next_at": s.next_at}))
                .collect();
            if !moved.is_empty() {
                sqlx::query(sql_file!($dir, "cap_advance"))
                    .bind(serde_json::to_string(&moved)?)
                    .execute(&mut *conn)
                    .await?;
            }
            if out.through.is_empty() {
                return Ok(Default::default());
            }
            let through: Vec<serde_json::Value> = out
                .through
                .iter()
                .map(|(seq, at)| serde_json::json!({"seq": seq, "at": at}))
                .collect();
            sqlx::query(sql_file!($dir, "ungate"))
                .bind(serde_json::to_string(&through)?)
                .execute(&mut *conn)
                .await?;
            Ok(caps::Opened::of(&out, now))
        }

        /// Loads the caps of `keys` not in `states` yet.
        async fn load_caps(
            conn: &mut <$db as sqlx::Database>::Connection,
            states: &mut std::collections::HashMap<String, $crate::caps::CapState>,
            keys: &[String],
        ) -> Result<()> {
            let missing: Vec<&String> = keys.iter().filter(|k| !states.contains_key(*k)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            let rows: Vec<CapRow> = sqlx::query_as(sql_file!($dir, "cap_states"))
                .bind(serde_json::to_string(&missing)?)
                .fetch_all(&mut *conn)
                .await?;
            for r in rows {
                states.insert(r.key.clone(), r.into());
            }
            Ok(())
        }

        /// Records the limits of caps (with the tasks that use them).
        pub async fn cap_limits<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            limits: &[$crate::caps::CapLimit],
            now: i64,
        ) -> Result<()> {
            if limits.is_empty() {
                return Ok(());
            }
            sqlx::query(sql_file!($dir, "cap_upsert"))
                .bind(serde_json::to_string(limits)?)
                .bind(now)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Caps with gated tasks (the reaper's gate pass), at most `limit` of each kind.
        pub async fn gated_keys<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            limit: i64,
        ) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "gated_keys"))
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Inserts a broadcast; its seq.
        pub async fn add_broadcast<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            b: &$crate::store::NewBroadcastRecord,
        ) -> Result<i64> {
            Ok(sqlx::query_scalar(sql_file!($dir, "add_broadcast"))
                .bind(DbId(b.id))
                .bind(&b.package)
                .bind(&b.version)
                .bind(b.payload.to_string())
                .bind(&b.created_by)
                .bind(b.created_at)
                .fetch_one(ex)
                .await?)
        }

        /// Broadcasts after `since` (or, with 0, the latest per target), and any made after
        /// `recent`.
        pub async fn broadcasts_since<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            since: i64,
            recent: i64,
            limit: i64,
        ) -> Result<Vec<BroadcastRow>> {
            let q = if since <= 0 {
                sqlx::query_as(sql_file!($dir, "broadcasts_latest")).bind(limit)
            } else {
                sqlx::query_as(sql_file!($dir, "broadcasts_since"))
                    .bind(since)
                    .bind(recent)
                    .bind(limit)
            };
            Ok(q.fetch_all(ex).await?)
        }

        /// One broadcast.
        pub async fn broadcast<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<BroadcastRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "broadcast"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// What processors reported of a broadcast.
        pub async fn broadcast_reports<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Vec<BroadcastReportRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "broadcast_reports"))
                .bind(id)
                .fetch_all(ex)
                .await?)
        }

        /// Records a processor's reports.
        pub async fn ack_broadcasts<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            worker_id: &str,
            applied: &[task_api::BroadcastApplied],
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "ack_broadcasts"))
                .bind(worker_id)
                .bind(serde_json::to_string(applied)?)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Records `f`, an upload by its owner, unless that takes the owner past `quota` bytes;
        /// an owner's second upload of the same bytes keeps the first copy (its key returned)
        /// and renews it. Several statements: run inside a transaction.
        pub async fn add_file(
            conn: &mut <$db as sqlx::Database>::Connection,
            f: &$crate::store::FileRow,
            quota: u64,
        ) -> Result<$crate::store::AddFile> {
            use $crate::store::AddFile;
            let touch = || {
                sqlx::query_scalar(sql_file!($dir, "touch_file"))
                    .bind(&f.sha256)
                    .bind(&f.owner)
                    .bind(f.created_at)
            };
            if let Some(key) = touch().fetch_optional(&mut *conn).await? {
                return Ok(AddFile::Existed(key));
            }
            let used: i64 = sqlx::query_scalar(sql_file!($dir, "file_usage"))
                .bind(&f.owner)
                .fetch_one(&mut *conn)
                .await?;
            let used = used.max(0) as u64;
            if used.saturating_add(f.size) > quota {
                return Ok(AddFile::OverQuota { used });
            }
            let added = sqlx::query(sql_file!($dir, "insert_file"))
                .bind(&f.sha256)
                .bind(&f.owner)
                .bind(&f.key)
                .bind(f.size.min(i64::MAX as u64) as i64)
                .bind(f.created_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if added == 0 {
                // Another upload of the same bytes by the same owner committed first.
                if let Some(key) = touch().fetch_optional(&mut *conn).await? {
                    return Ok(AddFile::Existed(key));
                }
            }
            Ok(AddFile::Added)
        }

        /// Bytes of `owner`'s files.
        pub async fn file_usage<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
        ) -> Result<u64> {
            let used: i64 = sqlx::query_scalar(sql_file!($dir, "file_usage"))
                .bind(owner)
                .fetch_one(ex)
                .await?;
            Ok(used.max(0) as u64)
        }

        /// A copy of blob `sha256` that `reader` may read: its key and size.
        pub async fn file_for<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            sha256: &str,
            reader: &$crate::store::FileReader,
        ) -> Result<Option<(String, u64)>> {
            let (kind, sub) = reader.parts();
            let row: Option<(String, i64)> = sqlx::query_as(sql_file!($dir, "file_for"))
                .bind(sha256)
                .bind(kind)
                .bind(sub)
                .fetch_optional(ex)
                .await?;
            Ok(row.map(|(k, n)| (k, n.max(0) as u64)))
        }

        /// Those of `shas` (JSON array) that `owner` may not name in a task.
        pub async fn unreadable_files<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            owner: &str,
            shas: &str,
        ) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "unreadable_files"))
                .bind(owner)
                .bind(shas)
                .fetch_all(ex)
                .await?)
        }

        /// Task `id`'s owner, state, and the holder (token subject) and epoch of its lease.
        pub async fn lease_of<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
        ) -> Result<Option<(String, String, Option<String>, i64)>> {
            Ok(sqlx::query_as(sql_file!($dir, "lease_of"))
                .bind(id)
                .fetch_optional(ex)
                .await?)
        }

        /// Records the files newly inserted tasks take (`pairs`: JSON `[[task, sha256], …]`).
        pub async fn attach_files<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            pairs: &str,
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "attach_files"))
                .bind(pairs)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Removes up to `limit` copies uploaded before `cutoff` whose blob no task takes;
        /// their keys.
        pub async fn expire_files<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            cutoff: i64,
            limit: i64,
        ) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "expire_files"))
                .bind(cutoff)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Inserts a schedule.
        pub async fn add_schedule<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            s: &$crate::store::ScheduleRecord,
        ) -> Result<()> {
            sqlx::query(sql_file!($dir, "add_schedule"))
                .bind(DbId(s.id))
                .bind(&s.owner)
                .bind(&s.cron)
                .bind(&s.timezone)
                .bind(serde_json::to_string(&s.task)?)
                .bind(s.next_at)
                .bind(s.created_at)
                .execute(ex)
                .await?;
            Ok(())
        }

        /// Deletes a schedule; rows deleted.
        pub async fn delete_schedule<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
            owner: Option<&str>,
        ) -> Result<u64> {
            let done = sqlx::query(sql_file!($dir, "delete_schedule"))
                .bind(id)
                .bind(owner)
                .execute(ex)
                .await?;
            Ok(done.rows_affected())
        }

        /// Moves a schedule on from tick `from` (compare and set); rows changed.
        pub async fn advance_schedule<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            id: DbId,
            from: i64,
            to: i64,
            task: Option<DbId>,
        ) -> Result<u64> {
            let done = sqlx::query(sql_file!($dir, "advance_schedule"))
                .bind(id)
                .bind(from)
                .bind(to)
                .bind(task)
                .execute(ex)
                .await?;
            Ok(done.rows_affected())
        }

        /// Waiting tasks (of one batch, or all) in queue order.
        pub async fn waiting_nodes<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            batch: Option<DbId>,
            limit: i64,
        ) -> Result<Vec<(DbId, String, String, String, Option<String>)>> {
            Ok(sqlx::query_as(sql_file!($dir, "waiting_nodes"))
                .bind(batch)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Function and state of each of `ids` (JSON) that exists.
        pub async fn task_functions<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            ids: &str,
        ) -> Result<Vec<(DbId, String, String, String, String)>> {
            Ok(sqlx::query_as(sql_file!($dir, "task_functions"))
                .bind(ids)
                .fetch_all(ex)
                .await?)
        }

        /// Queued tasks per function in a scope.
        pub async fn queued<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            scope: $crate::store::LoadScope,
        ) -> Result<Vec<QueuedRow>> {
            use $crate::store::LoadScope;
            let q = match scope {
                LoadScope::All => sqlx::query_as(sql_file!($dir, "queued_all")),
                LoadScope::Batch(id) => {
                    sqlx::query_as(sql_file!($dir, "queued_batch")).bind(DbId(id))
                }
                LoadScope::Ahead { priority, seq } => {
                    sqlx::query_as(sql_file!($dir, "queued_ahead"))
                        .bind(priority as i64)
                        .bind(seq)
                }
            };
            Ok(q.fetch_all(ex).await?)
        }

        /// Running tasks of a scope (everything running is ahead of a queued task).
        pub async fn running<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            scope: $crate::store::LoadScope,
        ) -> Result<Vec<RunningRow>> {
            use $crate::store::LoadScope;
            let q = match scope {
                LoadScope::Batch(id) => {
                    sqlx::query_as(sql_file!($dir, "running_batch")).bind(DbId(id))
                }
                LoadScope::All | LoadScope::Ahead { .. } => {
                    sqlx::query_as(sql_file!($dir, "running_all"))
                }
            };
            Ok(q.fetch_all(ex).await?)
        }

        /// Processors seen since `since`.
        pub async fn workers<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            since: i64,
        ) -> Result<Vec<WorkerRow>> {
            Ok(sqlx::query_as(sql_file!($dir, "workers"))
                .bind(since)
                .fetch_all(ex)
                .await?)
        }

        /// When queued tasks become due in `(after, upto]`, at most `limit` times.
        pub async fn due_times<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            after: i64,
            upto: i64,
            limit: i64,
        ) -> Result<Vec<i64>> {
            Ok(sqlx::query_scalar(sql_file!($dir, "due_times"))
                .bind(after)
                .bind(upto)
                .bind(limit)
                .fetch_all(ex)
                .await?)
        }

        /// Whether a delayed task became due in `(after, upto]`.
        pub async fn became_ready<'e, E: Executor<'e, Database = $db>>(
            ex: E,
            after: i64,
            upto: i64,
        ) -> Result<bool> {
            Ok(sqlx::query_scalar(sql_file!($dir, "became_ready"))
                .bind(after)
                .bind(upto)
                .fetch_one(ex)
                .await?)
        }
    };
}
pub(crate) use statements;

/// Implements [`super::StoreReads`] for a backend over the pool in field `$pool`: reads are
/// the statements above plus the row conversions, the same on every backend. Expects the
/// backend's `statements!` expansion as module `sql` beside it.
macro_rules! store_reads {
    ($store:ty, $pool:ident) => {
        const _: () = {
            use std::collections::HashMap;

            use task_api::TaskState;
            use uuid::Uuid;
            use $crate::stats::QueueLoad;
            use $crate::store::rows::{parse_state, DbId};
            use $crate::store::{
                BatchRecord, ListQuery, LoadScope, Page, Result, TaskCount, TaskRecord,
                WorkerRecord,
            };

            #[async_trait::async_trait]
            impl $crate::store::StoreReads for $store {
                async fn pending_count(&self, owner: &str) -> Result<u64> {
                    Ok(sql::pending_count(&self.$pool, owner).await?.max(0) as u64)
                }

                async fn file_for(
                    &self,
                    sha256: &str,
                    reader: &$crate::store::FileReader,
                ) -> Result<Option<(String, u64)>> {
                    sql::file_for(&self.$pool, sha256, reader).await
                }

                async fn unreadable_files(
                    &self,
                    owner: &str,
                    shas: &[String],
                ) -> Result<Vec<String>> {
                    let shas = serde_json::to_string(shas)?;
                    sql::unreadable_files(&self.$pool, owner, &shas).await
                }

                async fn file_usage(&self, owner: &str) -> Result<u64> {
                    sql::file_usage(&self.$pool, owner).await
                }

                async fn lease_of(&self, id: Uuid) -> Result<Option<$crate::store::LeaseOf>> {
                    let row = sql::lease_of(&self.$pool, DbId(id)).await?;
                    row.map(|(owner, state, holder, epoch)| {
                        Ok($crate::store::LeaseOf {
                            owner,
                            state: parse_state(&state)?,
                            holder,
                            epoch,
                        })
                    })
                    .transpose()
                }

                async fn find_memoized(
                    &self,
                    owner: &str,
                    args_hash: &str,
                ) -> Result<Option<(Uuid, TaskState)>> {
                    let row = sql::memoized(&self.$pool, args_hash, owner).await?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn owners_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, String>> {
                    let ids = $crate::store::core::ids_json(ids);
                    let rows = sql::dep_owners(&self.$pool, &ids).await?;
                    Ok(rows.into_iter().map(|(id, o)| (id.0, o)).collect())
                }

                async fn batch_results_ordered(
                    &self,
                    id: Uuid,
                    from: u64,
                    limit: u32,
                ) -> Result<Vec<$crate::store::BatchResult>> {
                    let from = from.min(i64::MAX as u64) as i64;
                    let rows =
                        sql::batch_results_ordered(&self.$pool, DbId(id), from, limit as i64)
                            .await?;
                    let all: Vec<$crate::store::BatchResult> = rows
                        .into_iter()
                        .map(TryInto::try_into)
                        .collect::<Result<_>>()?;
                    Ok($crate::store::core::finished_prefix(all))
                }

                async fn broadcasts_since(
                    &self,
                    since: i64,
                    now: i64,
                ) -> Result<Vec<task_api::Broadcast>> {
                    let recent = now - $crate::store::BROADCAST_REPEAT_MS;
                    let rows = sql::broadcasts_since(&self.$pool, since, recent, 100).await?;
                    rows.into_iter().map(TryInto::try_into).collect()
                }

                async fn broadcast(
                    &self,
                    id: Uuid,
                ) -> Result<Option<(task_api::Broadcast, Vec<task_api::BroadcastReport>)>> {
                    let Some(row) = sql::broadcast(&self.$pool, DbId(id)).await? else {
                        return Ok(None);
                    };
                    let reports = sql::broadcast_reports(&self.$pool, DbId(id)).await?;
                    Ok(Some((
                        row.try_into()?,
                        reports.into_iter().map(Into::into).collect(),
                    )))
                }

                async fn schedules_of(
                    &self,
                    owner: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<$crate::store::ScheduleRecord>> {
                    let rows = sql::schedules_of(&self.$pool, owner, limit as i64).await?;
                    rows.into_iter().map(TryInto::try_into).collect()
                }

                async fn due_schedules(
                    &self,
                    now: i64,
                    limit: u32,
                ) -> Result<Vec<$crate::store::ScheduleRecord>> {
                    let rows = sql::due_schedules(&self.$pool, now, limit as i64).await?;
                    rows.into_iter().map(TryInto::try_into).collect()
                }

                async fn waiting_graph(
                    &self,
                    batch: Option<Uuid>,
                    limit: u32,
                ) -> Result<$crate::graph::WaitingGraph> {
                    let rows =
                        sql::waiting_nodes(&self.$pool, batch.map(DbId), limit as i64).await?;
                    let mut g = $crate::store::core::waiting_graph(rows)?;
                    let outside = g.outside();
                    if !outside.is_empty() {
                        let ids = $crate::store::core::ids_json(&outside);
                        let rows = sql::task_functions(&self.$pool, &ids).await?;
                        $crate::store::core::add_outside(&mut g, rows)?;
                    }
                    Ok(g)
                }

                async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>> {
                    let row = sql::task(&self.$pool, DbId(id)).await?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn list_tasks(&self, q: ListQuery) -> Result<Vec<TaskRecord>> {
                    let page = Page::of(&q);
                    let rows = match &q.owner {
                        Some(owner) => sql::tasks_of_owner(&self.$pool, owner, &page).await?,
                        None => sql::tasks_all(&self.$pool, &page).await?,
                    };
                    rows.into_iter().map(TryInto::try_into).collect()
                }

                async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>> {
                    Ok(sql::batch(&self.$pool, DbId(id)).await?.map(Into::into))
                }

                async fn batch_open(&self, id: Uuid) -> Result<bool> {
                    sql::batch_open(&self.$pool, DbId(id)).await
                }

                async fn batch_counts(&self, id: Uuid) -> Result<HashMap<TaskState, u64>> {
                    let rows = sql::batch_counts(&self.$pool, DbId(id)).await?;
                    rows.into_iter()
                        .map(|(s, n)| Ok((parse_state(&s)?, n.max(0) as u64)))
                        .collect()
                }

                async fn list_batches(
                    &self,
                    owner: Option<&str>,
                    limit: u32,
                ) -> Result<Vec<BatchRecord>> {
                    let rows = sql::batches(&self.$pool, owner, limit as i64).await?;
                    Ok(rows.into_iter().map(Into::into).collect())
                }

                async fn state_counts(
                    &self,
                    owner: Option<&str>,
                ) -> Result<HashMap<TaskState, u64>> {
                    let rows: Vec<(String, i64)> = match owner {
                        Some(o) => sql::state_counts_of_owner(&self.$pool, o).await?,
                        None => sql::task_counts(&self.$pool)
                            .await?
                            .into_iter()
                            .map(|(s, _, _, n)| (s, n))
                            .collect(),
                    };
                    let mut out = HashMap::new();
                    for (s, n) in rows {
                        *out.entry(parse_state(&s)?).or_default() += n.max(0) as u64;
                    }
                    Ok(out)
                }

                async fn task_counts(&self) -> Result<Vec<TaskCount>> {
                    let rows = sql::task_counts(&self.$pool).await?;
                    rows.into_iter()
                        .map(|(s, package, function, n)| {
                            Ok(TaskCount {
                                state: parse_state(&s)?,
                                package,
                                function,
                                n: n.max(0) as u64,
                            })
                        })
                        .collect()
                }

                async fn queue_load(&self, scope: LoadScope, now: i64) -> Result<QueueLoad> {
                    let queued = sql::queued(&self.$pool, scope).await?;
                    let running = sql::running(&self.$pool, scope).await?;
                    Ok(QueueLoad {
                        queued: queued.into_iter().map(Into::into).collect(),
                        running: running.into_iter().map(|r| r.at(now)).collect(),
                    })
                }

                async fn workers(&self, since: i64) -> Result<Vec<WorkerRecord>> {
                    let rows = sql::workers(&self.$pool, since).await?;
                    rows.into_iter().map(TryInto::try_into).collect()
                }

                async fn due_times(&self, after: i64, upto: i64) -> Result<Vec<i64>> {
                    sql::due_times(&self.$pool, after, upto, 64).await
                }

                async fn became_ready(&self, after: i64, upto: i64) -> Result<bool> {
                    sql::became_ready(&self.$pool, after, upto).await
                }

                async fn ping(&self) -> Result<()> {
                    sqlx::query("SELECT 1").execute(&self.$pool).await?;
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use store_reads;

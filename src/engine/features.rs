//! The session's side of the feature store's statements: the registry's
//! DDL (entities, feature views, services, plain views) runs in the
//! feature store with this session's names and planner; REFRESH runs as
//! jobs; what a drop leaves behind is cleaned up after it commits.

use featuredb_catalog::ObjectKind;
use featuredb_sql::feature::{FeatureStatement, RefreshFeatureViews};
use featuredb_sql::statement::{CreateView, DropObjects};

use super::outcome::{CommandTag, Outcome};
use super::session::Session;
use crate::error::Result;
use crate::features::ddl::{DdlOutcome, RegistryDdl};
use crate::features::materialize::Caller;
use crate::features::names::undefined;

impl Session {
    pub(crate) async fn feature_statement(
        &mut self,
        sql: &str,
        statement: &FeatureStatement,
    ) -> Result<Outcome> {
        if let FeatureStatement::Refresh(refresh) = statement {
            return self.refresh(refresh).await;
        }
        let done = self.registry_ddl().execute(sql, statement).await?;
        self.finish_ddl(done).await
    }

    pub(crate) async fn create_sql_view(
        &mut self,
        sql: &str,
        create: &CreateView,
    ) -> Result<Outcome> {
        let done = self.registry_ddl().create_sql_view(sql, create).await?;
        self.finish_ddl(done).await
    }

    pub(crate) async fn drop_sql_views(&mut self, drop: &DropObjects) -> Result<Outcome> {
        let done = self.registry_ddl().drop_sql_views(drop).await?;
        self.finish_ddl(done).await
    }

    /// The registry's statements, run with this session's names, planner
    /// and notices.
    fn registry_ddl(&mut self) -> RegistryDdl<'_> {
        RegistryDdl {
            names: self.planner.names(),
            registry: &self.engine.registry,
            planner: &mut self.planner,
            notices: &mut self.notices,
        }
    }

    async fn finish_ddl(&mut self, done: DdlOutcome) -> Result<Outcome> {
        match done {
            DdlOutcome::Command(tag) => {
                self.follow_streams().await?;
                Ok(Outcome::Command(CommandTag::new(tag)))
            }
            DdlOutcome::Dropped { tag, objects } => {
                self.engine.materializer.forget(&objects).await;
                self.follow_streams().await?;
                Ok(Outcome::Command(CommandTag::new(tag)))
            }
            DdlOutcome::Show(query) => {
                let featuredb_sql::Statement::Query(statement) =
                    featuredb_sql::parse_statement(&query)?
                else {
                    return Err(crate::error::Error::internal("SHOW produced a non-query"));
                };
                let (plan, _) = self.planner.plan_query(&query, &statement, &[]).await?;
                match self.run_plan(plan, Vec::new()).await? {
                    Outcome::Rows { schema, stream, .. } => Ok(Outcome::Rows {
                        schema,
                        stream,
                        tag: "SHOW",
                    }),
                    other => Ok(other),
                }
            }
        }
    }

    /// After a registry change: the stream engine follows it, and each
    /// streaming view the change made (new, replaced, or just made
    /// STREAMING) whose online rows are not of its current version is
    /// refreshed now, in this statement, so that it serves online when the
    /// statement returns. The change is committed: a refresh that fails is
    /// a warning (the view is read through the planner until a refresh
    /// succeeds; the stream engine retries), not the statement's error.
    pub(crate) async fn follow_streams(&mut self) -> Result<()> {
        let compiled = self.engine.stream.reload().await?;
        let registry = self.engine.registry.snapshot();
        let behind: Vec<_> = compiled
            .into_iter()
            .filter(|name| {
                let version = registry.views.get(name).map(|v| v.current().version);
                self.engine
                    .online
                    .materialization(name)
                    .is_none_or(|m| !m.online || Some(m.version) != version)
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        let materializer = self.engine.materializer.clone();
        let mut caller = Caller {
            planner: &mut self.planner,
            notices: crate::notice::NoticeSink::new(&mut self.notices, self.progress_sink.as_ref()),
        };
        if let Err(e) = materializer
            .refresh(&registry, &behind, false, &mut caller)
            .await
        {
            self.notices.push(crate::notice::Notice::warning(
                "01000",
                format!(
                    "the first refresh of streaming feature view {} failed: {}; it is read \
                     through the planner until a refresh succeeds",
                    behind
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    e.report().message
                ),
            ));
            for name in &behind {
                self.engine.stream.retry(name);
            }
        }
        Ok(())
    }

    /// `REFRESH FEATURE VIEW`: the named views (and the views they read)
    /// refreshed as jobs, planned with this session's settings.
    async fn refresh(&mut self, refresh: &RefreshFeatureViews) -> Result<Outcome> {
        let registry = self.engine.registry.snapshot();
        let names = self.planner.names();
        let mut targets = Vec::new();
        for name in &refresh.names {
            let found = names
                .find(&registry, ObjectKind::FeatureView, name)
                .ok_or_else(|| undefined(ObjectKind::FeatureView, name))?;
            targets.push(found);
        }
        let materializer = self.engine.materializer.clone();
        let mut caller = Caller {
            planner: &mut self.planner,
            notices: crate::notice::NoticeSink::new(&mut self.notices, self.progress_sink.as_ref()),
        };
        materializer
            .refresh(&registry, &targets, refresh.full, &mut caller)
            .await?;
        Ok(Outcome::Command(CommandTag::new("REFRESH FEATURE VIEW")))
    }
}

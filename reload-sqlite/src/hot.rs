//! [`Hot`]: the host's declaration of which plugin serves which SQL
//! object, attached to as many connections as it likes.

use std::fmt;
use std::sync::{Arc, OnceLock};

use reload_core::registry::Registry;
use rusqlite::Connection;
use thiserror::Error;

use crate::admin::{self, Admin, Deployer};
use crate::aggregate::{self, AggregateDef};
use crate::column::{self, ColumnDef};
use crate::plugin::SqlPlugin;
use crate::scalar::{self, ScalarDef};
use crate::scope;
use crate::shared::{Counters, Shared};
use crate::table::{self, TableDef};
use crate::wire::{Codec, Wire};

/// Why [`Hot::attach`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttachError {
    /// SQLite refused to register an object (a bad name, too many
    /// arguments).
    #[error("registering `{object}`: {source}")]
    Sqlite {
        /// The SQL function or table.
        object: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A declaration that cannot work.
    #[error("`{object}`: {reason}")]
    Invalid {
        /// The SQL function or table.
        object: String,
        /// Why.
        reason: &'static str,
    },
}

enum Object {
    Scalar(ScalarDef),
    Aggregate(AggregateDef),
    Table(TableDef),
}

impl Object {
    fn name(&self) -> &str {
        match self {
            Object::Scalar(d) => &d.sql_name,
            Object::Aggregate(d) => &d.sql_name,
            Object::Table(d) => &d.name,
        }
    }
}

/// Hot-reloadable SQL objects, each served by a plugin of one
/// [`Registry`], attached to any number of connections.
///
/// Every object always calls the version of its plugin the registry
/// serves now, as of the statement's start: a statement's calls into a
/// plugin all run on one version, leased at its first call and given back
/// when SQLite resets or finalizes the statement ([`crate::scope`]).
///
/// The crate docs show one in use.
pub struct Hot<P: SqlPlugin> {
    registry: Arc<Registry<P>>,
    plugins: Vec<String>,
    objects: Vec<Object>,
    deployer: Option<Arc<dyn Deployer<P>>>,
    columns: Vec<ColumnDef>,
    per_row: bool,
    shared: OnceLock<Arc<Shared<P>>>,
}

impl<P: SqlPlugin> fmt::Debug for Hot<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hot")
            .field("plugins", &self.plugins)
            .field(
                "objects",
                &self.objects.iter().map(Object::name).collect::<Vec<_>>(),
            )
            .field("admin", &self.deployer.is_some())
            .field("per_row", &self.per_row)
            .finish_non_exhaustive()
    }
}

impl<P: SqlPlugin> Hot<P> {
    /// Objects served by `registry`'s plugins (none yet).
    pub fn new(registry: Arc<Registry<P>>) -> Self {
        Hot {
            registry,
            plugins: Vec::new(),
            objects: Vec::new(),
            deployer: None,
            columns: Vec::new(),
            per_row: false,
            shared: OnceLock::new(),
        }
    }

    fn plugin(&mut self, name: &str) -> usize {
        self.shared = OnceLock::new();
        match self.plugins.iter().position(|p| p == name) {
            Some(i) => i,
            None => {
                self.plugins.push(name.to_owned());
                self.plugins.len() - 1
            }
        }
    }

    /// `sql_name(args..)` (`n_args` of them, or -1 for any number), calling
    /// `plugin` with the arguments in the [`wire`](mod@crate::wire) encoding and
    /// returning the value its reply encodes.
    #[must_use]
    pub fn scalar(self, sql_name: &str, n_args: i32, plugin: &str) -> Self {
        self.scalar_with(sql_name, n_args, plugin, Wire)
    }

    /// [`Hot::scalar`], with the host's own encoding of arguments and
    /// replies.
    #[must_use]
    pub fn scalar_with(
        mut self,
        sql_name: &str,
        n_args: i32,
        plugin: &str,
        codec: impl Codec,
    ) -> Self {
        let plugin = self.plugin(plugin);
        self.objects.push(Object::Scalar(ScalarDef {
            sql_name: sql_name.to_owned(),
            n_args,
            plugin,
            codec: Arc::new(codec),
        }));
        self
    }

    /// An aggregate `sql_name(args..)` whose accumulator `plugin` steps
    /// (the protocol: [`crate::aggregate`]).
    #[must_use]
    pub fn aggregate(self, sql_name: &str, n_args: i32, plugin: &str) -> Self {
        self.aggregate_def(sql_name, n_args, plugin, false)
    }

    /// [`Hot::aggregate`], usable as a window function too (the plugin
    /// also answers `i` and `v`). With the `window` feature (default).
    #[cfg(feature = "window")]
    #[must_use]
    pub fn window(self, sql_name: &str, n_args: i32, plugin: &str) -> Self {
        self.aggregate_def(sql_name, n_args, plugin, true)
    }

    fn aggregate_def(mut self, sql_name: &str, n_args: i32, plugin: &str, window: bool) -> Self {
        let plugin = self.plugin(plugin);
        self.objects.push(Object::Aggregate(AggregateDef {
            sql_name: sql_name.to_owned(),
            n_args,
            plugin,
            window,
        }));
        self
    }

    /// A read-only table `name` with `columns`, whose rows `plugin`
    /// serves (the protocol: [`crate::table`]): `SELECT .. FROM name`.
    #[must_use]
    pub fn table(mut self, name: &str, plugin: &str, columns: &[&str]) -> Self {
        let plugin = self.plugin(plugin);
        self.objects.push(Object::Table(TableDef {
            name: name.to_owned(),
            plugin,
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
        }));
        self
    }

    /// A column type: `name_encode(v)` and `name_decode(b)` served by
    /// `plugin`, which encodes the values of `table.column`; a deploy of
    /// `plugin` from SQL first checks the new version reads every value
    /// stored there ([`crate::column`]). Declare it once per column the
    /// plugin encodes.
    #[must_use]
    pub fn column_type(self, name: &str, plugin: &str, table: &str, column: &str) -> Self {
        let mut hot = self
            .scalar_with(&format!("{name}_encode"), 1, plugin, column::Encode)
            .scalar_with(&format!("{name}_decode"), 1, plugin, column::Decode);
        hot.columns.push(ColumnDef {
            plugin: plugin.to_owned(),
            table: table.to_owned(),
            column: column.to_owned(),
        });
        hot
    }

    /// Enables managing plugins from SQL ([`crate::admin`]):
    /// `reload_plugins`, `reload_deploy(name, path)` and
    /// `reload_revert(name)`, deploying through `deployer`.
    #[must_use]
    pub fn admin(mut self, deployer: impl Deployer<P>) -> Self {
        self.deployer = Some(Arc::new(deployer));
        self.shared = OnceLock::new();
        self
    }

    /// A lease per call instead of per statement: each row may see a newer
    /// version, and a reload never waits for a whole statement. For hosts
    /// whose statements run for a long time and whose plugins are
    /// stateless per row.
    #[must_use]
    pub fn lease_per_row(mut self) -> Self {
        self.per_row = true;
        self.shared = OnceLock::new();
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry<P>> {
        &self.registry
    }

    fn shared(&self) -> Arc<Shared<P>> {
        let shared = self.shared.get_or_init(|| {
            Arc::new(Shared {
                registry: Arc::clone(&self.registry),
                plugins: self.plugins.clone().into_boxed_slice(),
                counters: self.plugins.iter().map(|_| Counters::default()).collect(),
                key: scope::new_key(),
                per_row: self.per_row,
            })
        });
        Arc::clone(shared)
    }

    /// Registers only the management objects ([`crate::admin`]) on
    /// `conn`, deploying through `deployer`, with this `Hot`'s counters:
    /// for a host whose clients' connections get the objects
    /// ([`Hot::attach`]) and whose administrator's connection gets this
    /// too.
    ///
    /// # Errors
    ///
    /// SQLite refused to register them.
    pub fn attach_admin(
        &self,
        conn: &Connection,
        deployer: impl Deployer<P>,
    ) -> Result<(), AttachError> {
        let admin = Admin {
            shared: self.shared(),
            deployer: Arc::new(deployer),
            columns: self.columns.clone().into(),
        };
        admin::register(conn, &admin).map_err(|source| AttachError::Sqlite {
            object: "reload_plugins".to_owned(),
            source,
        })
    }

    /// Registers every object on `conn`. Call it once per connection (a
    /// pool calls it when it opens one); the counters are shared by every
    /// connection this `Hot` is attached to.
    ///
    /// # Errors
    ///
    /// [`AttachError`]; objects registered before the failing one stay
    /// registered.
    pub fn attach(&self, conn: &Connection) -> Result<(), AttachError> {
        let shared = self.shared();
        let sqlite = |object: &str| {
            let object = object.to_owned();
            move |source| AttachError::Sqlite { object, source }
        };
        for object in &self.objects {
            match object {
                Object::Scalar(d) => {
                    scalar::register(conn, &shared, d).map_err(sqlite(&d.sql_name))?
                }
                Object::Aggregate(d) => {
                    aggregate::register(conn, &shared, d).map_err(sqlite(&d.sql_name))?;
                }
                Object::Table(d) => {
                    if d.columns.is_empty() {
                        return Err(AttachError::Invalid {
                            object: d.name.clone(),
                            reason: "a table needs at least one column",
                        });
                    }
                    table::register(conn, &shared, d).map_err(sqlite(&d.name))?;
                }
            }
        }
        if let Some(deployer) = &self.deployer {
            let admin = Admin {
                shared,
                deployer: Arc::clone(deployer),
                columns: self.columns.clone().into(),
            };
            admin::register(conn, &admin).map_err(sqlite("reload_plugins"))?;
        }
        Ok(())
    }
}

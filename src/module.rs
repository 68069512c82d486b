//! The module system (Prosody's `moduleapi`, typed).
//!
//! A module is a [`ModuleDescriptor`]: a name, the modules it depends on, and a `load`
//! function that receives a [`ModuleContext`] for one host. Everything registered
//! through the context (hooks, IQ handlers, items, tasks) is recorded, so unloading the
//! module from the host removes exactly that, firing [`crate::items::ItemRemoved`] for
//! each item.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::config::ModuleOptions;
use crate::events::{Event, HandlerResult, HookId};
use crate::host::{
    DiscoFeature, DiscoIdentity, Host, IqKey, IqRequest, IqResult, IqTarget, IqType,
};
use crate::items::ItemId;

/// A compiled-in module.
#[derive(Clone, Copy)]
pub struct ModuleDescriptor {
    pub name: &'static str,
    /// Loaded first, on the same host, when not already loaded.
    pub depends: &'static [&'static str],
    pub load: fn(&mut ModuleContext) -> anyhow::Result<()>,
}

impl std::fmt::Debug for ModuleDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleDescriptor")
            .field("name", &self.name)
            .finish()
    }
}

/// What one module instance registered on one host.
#[derive(Default)]
pub(crate) struct Registrations {
    hooks: Vec<HookId>,
    iq_handlers: Vec<IqKey>,
    tasks: Vec<tokio::task::AbortHandle>,
}

pub(crate) struct LoadedModule {
    pub name: String,
    registrations: Registrations,
}

/// A module's view of its host during `load` (≈ Prosody's `module`).
pub struct ModuleContext {
    host: Arc<Host>,
    name: String,
    options: ModuleOptions,
    registrations: Registrations,
}

impl ModuleContext {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// This module's options on this host (global `[modules.NAME]` under the host's).
    pub fn options(&self) -> &ModuleOptions {
        &self.options
    }

    /// Hooks an event on this host. See [`crate::events`] for priorities.
    pub fn hook<E, F>(&mut self, priority: i32, handler: F) -> HookId
    where
        E: Event,
        F: for<'a> Fn(&'a mut E) -> BoxFuture<'a, HandlerResult> + Send + Sync + 'static,
    {
        let id = self.host.events.hook(priority, handler);
        self.registrations.hooks.push(id);
        id
    }

    /// Handles IQs of `iq_type` addressed to `target` whose payload is `<name xmlns=namespace>`.
    /// The handler's answer becomes the one reply: a result (with the returned payload) or
    /// an error.
    pub fn hook_iq<F, Fut>(
        &mut self,
        iq_type: IqType,
        target: IqTarget,
        namespace: &str,
        name: &str,
        handler: F,
    ) where
        F: Fn(IqRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = IqResult> + Send + 'static,
    {
        let key = IqKey {
            iq_type,
            target,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let handler = Arc::new(move |request: IqRequest| -> BoxFuture<'static, IqResult> {
            Box::pin(handler(request))
        });
        if self.host.set_iq_handler(key.clone(), handler) {
            self.registrations.iq_handlers.push(key);
        } else {
            tracing::error!(
                module = %self.name,
                host = %self.host.name,
                "another module already handles {iq_type:?} {target:?} {{{namespace}}}{name}; not registered"
            );
        }
    }

    /// Publishes an item for other modules (removed when this module unloads).
    pub fn add_item<T: Send + Sync + 'static>(&mut self, item: Arc<T>) -> ItemId {
        self.host.add_item(&self.name, item)
    }

    /// Advertises a disco#info feature on the host.
    pub fn add_feature(&mut self, var: &str) {
        self.add_item(Arc::new(DiscoFeature(var.to_string())));
    }

    /// Advertises a disco#info identity on the host.
    pub fn add_identity(&mut self, category: &str, kind: &str, name: Option<&str>) {
        self.add_item(Arc::new(DiscoIdentity {
            category: category.to_string(),
            kind: kind.to_string(),
            name: name.map(str::to_string),
        }));
    }

    /// Runs a background task for as long as the module is loaded.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        self.registrations.tasks.push(handle.abort_handle());
    }
}

/// Loads `descriptor` (and its dependencies) on `host`. Already-loaded modules are skipped.
pub(crate) fn load(
    host: &Arc<Host>,
    descriptor: &ModuleDescriptor,
    available: &[ModuleDescriptor],
) -> anyhow::Result<()> {
    load_inner(host, descriptor, available, &mut Vec::new())
}

fn load_inner(
    host: &Arc<Host>,
    descriptor: &ModuleDescriptor,
    available: &[ModuleDescriptor],
    loading: &mut Vec<&'static str>,
) -> anyhow::Result<()> {
    if is_loaded(host, descriptor.name) {
        return Ok(());
    }
    if loading.contains(&descriptor.name) {
        anyhow::bail!(
            "module dependency cycle: {} -> {}",
            loading.join(" -> "),
            descriptor.name
        );
    }
    loading.push(descriptor.name);
    for dependency in descriptor.depends {
        let Some(found) = available.iter().find(|m| m.name == *dependency) else {
            anyhow::bail!(
                "module {} needs {dependency}, which is not compiled in",
                descriptor.name
            );
        };
        load_inner(host, found, available, loading)?;
    }
    loading.pop();

    let mut context = ModuleContext {
        host: host.clone(),
        name: descriptor.name.to_string(),
        options: host.module_options(descriptor.name),
        registrations: Registrations::default(),
    };
    match (descriptor.load)(&mut context) {
        Ok(()) => {
            context.options.report_unknown();
            host.modules
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(LoadedModule {
                    name: descriptor.name.to_string(),
                    registrations: context.registrations,
                });
            tracing::debug!(host = %host.name, module = descriptor.name, "module loaded");
            Ok(())
        }
        Err(err) => {
            // Undo what the failed load managed to register.
            let partial = LoadedModule {
                name: descriptor.name.to_string(),
                registrations: context.registrations,
            };
            teardown(host, partial);
            Err(err.context(format!(
                "module {} failed to load on {}",
                descriptor.name, host.name
            )))
        }
    }
}

pub(crate) fn is_loaded(host: &Host, name: &str) -> bool {
    host.modules
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|m| m.name == name)
}

/// Unloads a module from `host`: hooks, IQ handlers, tasks and items go.
pub fn unload(host: &Arc<Host>, name: &str) -> bool {
    let module = {
        let mut modules = host.modules.lock().unwrap_or_else(|p| p.into_inner());
        let Some(index) = modules.iter().position(|m| m.name == name) else {
            return false;
        };
        modules.remove(index)
    };
    teardown(host, module);
    true
}

/// Unloads every module (at shutdown; breaks the host -> handler -> host cycles).
pub(crate) fn unload_all(host: &Arc<Host>) {
    let modules: Vec<LoadedModule> =
        std::mem::take(&mut *host.modules.lock().unwrap_or_else(|p| p.into_inner()));
    for module in modules.into_iter().rev() {
        teardown(host, module);
    }
}

fn teardown(host: &Arc<Host>, module: LoadedModule) {
    for task in &module.registrations.tasks {
        task.abort();
    }
    for key in &module.registrations.iq_handlers {
        host.remove_iq_handler(key);
    }
    for removal in host.items.remove_owner(&module.name) {
        removal(host);
    }
    // Hooks go last so that handlers of this module still see its own items removed.
    for hook in module.registrations.hooks {
        host.events.unhook(hook);
    }
    tracing::debug!(host = %host.name, module = %module.name, "module unloaded");
}

/// Names of the modules loaded on `host`, in load order.
pub fn loaded(host: &Host) -> Vec<String> {
    host.modules
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|m| m.name.clone())
        .collect()
}

//! A stage's preparation: the participant's side of the two-phase commit.

use super::*;

impl<P> Shared<P>
where
    P: Stateful,
    P::Context: Send + Sync + 'static,
{
    /// Prepares `plan`'s stage `stage`, reports, and waits for the
    /// decision (see the module docs). Runs on a thread of its own.
    pub(super) fn prepare(&self, plan: &Plan, stage: usize, decided: &mpsc::Receiver<Decision>) {
        let me = &self.cfg.node;
        let plugin = &plan.plugin;
        let report_key = self.etcd.keys().report(&plan.id, stage, me);
        let refuse = |refusal: Refusal| {
            // Unreported, the coordinator times out instead: the same end.
            let _ = self.runtime.block_on(
                self.etcd
                    .put(&report_key, &Report::Refused(refusal.clone())),
            );
            self.event(
                plugin,
                What::Refused {
                    rollout: plan.id.clone(),
                    refusal,
                },
            );
        };
        if !self.registry.contains(plugin) {
            return refuse(Refusal::NotHosted {
                plugin: plugin.clone(),
            });
        }
        let package = match self.package(plugin, &plan.to) {
            Ok(p) => p,
            Err(refusal) => return refuse(refusal),
        };
        let mut reached = false;
        let result = self.registry.reload_with_barrier(
            vec![package],
            &self.cx,
            self.cfg.reload.clone(),
            |_| {
                reached = true;
                self.runtime
                    .block_on(self.etcd.put(&report_key, &Report::Ready))
                    .map_err(|e| format!("reporting ready failed: {e}"))?;
                self.event(
                    plugin,
                    What::Prepared {
                        rollout: plan.id.clone(),
                        stage,
                    },
                );
                let decision = match decided.recv_timeout(plan.prepare_timeout) {
                    Ok(d) => d,
                    Err(_) if self.local.lock().stopped => {
                        return Err("the node stopped".to_owned());
                    }
                    Err(_) => {
                        let why = format!(
                            "node {me} had no decision within {:?}",
                            plan.prepare_timeout
                        );
                        self.runtime
                            .block_on(self.etcd.abort_stage(plan, stage, &why))
                            .map_err(|e| format!("{why}, and etcd is out of reach: {e}"))?
                    }
                };
                match decision {
                    Decision::Commit => Ok(()),
                    Decision::Abort { reason } => Err(reason),
                }
            },
        );
        match result {
            Ok(_) => {
                self.local.lock().behind.remove(plugin);
                self.keep_local(plugin, &plan.to);
                self.event(
                    plugin,
                    What::Committed {
                        rollout: plan.id.clone(),
                        version: plan.to.version.clone(),
                    },
                );
            }
            Err(rejected) => match rejected.error {
                RegistryError::Withheld { reason } => self.event(
                    plugin,
                    What::Aborted {
                        rollout: plan.id.clone(),
                        reason,
                    },
                ),
                error if !reached => refuse(Refusal::Registry {
                    reason: error.reason().to_owned(),
                    message: error.to_string(),
                }),
                // The commit itself failed: the old version serves on;
                // reconciliation tries the assignment again.
                error => {
                    let reason = error.to_string();
                    self.local.lock().behind.insert(
                        plugin.clone(),
                        (plan.to.digest.clone(), Instant::now(), reason.clone()),
                    );
                    self.event(
                        plugin,
                        What::Behind {
                            version: plan.to.version.clone(),
                            reason,
                        },
                    );
                }
            },
        }
    }
}

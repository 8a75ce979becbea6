//! The agent's loops: look at etcd when woken (a watch event, a finished
//! preparation, a resync), and publish the node's status on its lease.

use super::*;

impl<P> Shared<P>
where
    P: Stateful,
    P::Context: Send + Sync + 'static,
{
    /// One look at etcd, and what follows from it.
    pub(super) async fn step(self: &Arc<Self>) -> Result<(), FleetError> {
        let me = self.cfg.node.clone();
        let mut rollouts: BTreeSet<(String, String)> = self
            .etcd
            .actives()
            .await?
            .into_iter()
            .filter(|(plugin, _)| self.cfg.plugins.contains(plugin))
            .collect();
        rollouts.extend(
            self.local
                .lock()
                .preparing
                .iter()
                .map(|(plugin, p)| (plugin.clone(), p.rollout.clone())),
        );
        for (plugin, id) in rollouts {
            let state = match self.etcd.rollout(&id).await {
                Ok(s) => s,
                // etcd out of reach: look again at the next resync.
                Err(e @ FleetError::Etcd(_)) => return Err(e),
                // Gone, or a record nobody can read: not this node's to
                // judge; the other rollouts and the reconciliation go on.
                Err(_) => continue,
            };
            let mut local = self.local.lock();
            if let Some(p) = local.preparing.get_mut(&plugin) {
                if p.rollout == id && !p.sent {
                    let decision = state.decisions.get(&p.stage).cloned().or_else(|| {
                        state.outcome.as_ref().map(|_| Decision::Abort {
                            reason: "the rollout has ended".to_owned(),
                        })
                    });
                    if let Some(d) = decision {
                        p.sent = p.decide.send(d).is_ok();
                    }
                }
                continue;
            }
            if local.applying.contains(&plugin) {
                continue;
            }
            let Some(k) = state.open_stage() else {
                continue;
            };
            let mine = state.plan.stages[k].nodes.contains(&me);
            let answered = state.reports.get(&k).is_some_and(|r| r.contains_key(&me));
            if !mine || answered || state.control == crate::records::Control::Abort {
                continue;
            }
            let (decide, decided) = mpsc::channel();
            local.preparing.insert(
                plugin.clone(),
                Preparing {
                    rollout: id.clone(),
                    stage: k,
                    decide,
                    sent: false,
                },
            );
            drop(local);
            let shared = Arc::clone(self);
            let plan = state.plan.clone();
            let spawned = spawn_thread(&format!("fleet-prepare-{plugin}"), move || {
                shared.prepare(&plan, k, &decided);
                shared.local.lock().preparing.remove(&plan.plugin);
                shared.wake.notify_one();
            });
            if !spawned {
                self.local.lock().preparing.remove(&plugin);
            }
        }
        for plugin in &self.cfg.plugins {
            {
                let local = self.local.lock();
                if local.preparing.contains_key(plugin) || local.applying.contains(plugin) {
                    continue;
                }
            }
            let target = match self.assignment(plugin).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e @ FleetError::Etcd(_)) => return Err(e),
                // An unreadable assignment: the node stays on what it
                // serves and says why in its status.
                Err(e) => {
                    let reason = e.to_string();
                    self.local
                        .lock()
                        .behind
                        .insert(plugin.clone(), (String::new(), Instant::now(), reason));
                    continue;
                }
            };
            if self
                .serving(plugin)
                .is_some_and(|s| s.digest == target.digest)
            {
                continue;
            }
            let mut local = self.local.lock();
            if let Some((digest, at, _)) = local.behind.get(plugin) {
                if *digest == target.digest && at.elapsed() < self.cfg.retry {
                    continue;
                }
            }
            local.applying.insert(plugin.clone());
            drop(local);
            let shared = Arc::clone(self);
            let name = plugin.clone();
            let spawned = spawn_thread(&format!("fleet-apply-{plugin}"), move || {
                let _ = shared.apply(&name, &target);
                shared.local.lock().applying.remove(&name);
                shared.wake.notify_one();
            });
            if !spawned {
                self.local.lock().applying.remove(plugin);
            }
        }
        Ok(())
    }
    pub(super) async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut watching: Option<WatchStream> = None;
        let nodes = self.etcd.keys().nodes();
        // One deadline across wake-ups: events that do not concern the
        // node (other nodes' statuses, as often as they publish) must not
        // put its resync off forever.
        let mut resync = tokio::time::Instant::now() + self.cfg.resync;
        loop {
            if watching.is_none() {
                let options = WatchOptions::new().with_prefix();
                watching = self
                    .etcd
                    .client()
                    .watch(self.etcd.keys().prefix(), Some(options))
                    .await
                    .ok();
            }
            let woken = tokio::select! {
                _ = stopped.changed() => return,
                () = self.wake.notified() => true,
                () = tokio::time::sleep_until(resync) => true,
                event = next_event(&mut watching) => match event {
                    // Other nodes' statuses do not concern this one.
                    Some(keys) => keys.iter().any(|k| !k.starts_with(&nodes)),
                    None => {
                        watching = None;
                        true
                    }
                },
            };
            if woken {
                // etcd out of reach: serve on, and look again at the next
                // resync.
                let _ = self.step().await;
                resync = tokio::time::Instant::now() + self.cfg.resync;
            }
        }
    }
    pub(super) async fn publish(
        self: Arc<Self>,
        mut lease: Option<i64>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(self.cfg.resync) => {}
            }
            if *stopped.borrow() {
                if let Some(id) = lease {
                    let _ = self.etcd.client().lease_revoke(id).await;
                }
                return;
            }
            self.publish_once(&mut lease).await;
        }
    }
    /// Publishes the node's status on its lease, granting a new lease if
    /// it has none or its lease expired (etcd was out of reach too long).
    pub(super) async fn publish_once(&self, lease: &mut Option<i64>) {
        let ttl = i64::try_from(self.cfg.lease_ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let key = self.etcd.keys().node(&self.cfg.node);
        let mut client = self.etcd.client();
        let fresh = lease.is_none();
        if fresh {
            *lease = client.lease_grant(ttl, None).await.ok().map(|r| r.id());
        }
        let Some(id) = *lease else { return };
        let alive = fresh
            || match client.lease_keep_alive(id).await {
                Ok((mut keeper, mut stream)) => {
                    keeper.keep_alive().await.is_ok()
                        && matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0)
                }
                Err(_) => false,
            };
        let put = alive
            && client
                .put(
                    key.as_str(),
                    encode(&self.status()),
                    Some(PutOptions::new().with_lease(id)),
                )
                .await
                .is_ok();
        if !put {
            *lease = None;
        }
    }
}

/// The keys of the next watch response, or `None` if the watch broke.
async fn next_event(watching: &mut Option<WatchStream>) -> Option<Vec<String>> {
    match watching {
        Some(stream) => match stream.message().await {
            Ok(Some(resp)) if !resp.canceled() => Some(
                resp.events()
                    .iter()
                    .filter_map(|e| {
                        e.kv()
                            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                    })
                    .collect(),
            ),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

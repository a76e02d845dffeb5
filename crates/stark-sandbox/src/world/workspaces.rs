//! Workspaces (each with its own objects and balance) and the projects that act in them.
//!
//! In Stark every project belongs to one workspace, and a project sees only its workspace's
//! invoices, transfers, logs, webhooks, events and balance: another workspace's invoice id is
//! answered exactly like an id that does not exist. Events of every workspace are signed with
//! the environment's one key and name their `workspaceId`, so a receiver must check it.

use std::collections::HashMap;

use stark_client::PublicKey;
use time::OffsetDateTime;

use super::World;
use crate::clock::timestamp;
use crate::table::Ws;

/// One workspace: its id and its balance.
#[derive(Debug, Clone)]
pub(super) struct Workspace {
    /// 16 digits, as on events' `workspaceId`.
    pub(super) id: String,
    /// Id of its balance object (`GET /v2/balance`).
    pub(super) balance_id: String,
    /// Cents available: credited invoices (net of fee) − debited transfers (with fee) −
    /// reversals, plus the configured initial balance for the default workspace.
    pub(super) balance: i64,
    /// Last change of the balance.
    pub(super) balance_updated: OffsetDateTime,
}

/// Every workspace, by index ([`Ws`]) and by id; index 0 is the configured default.
#[derive(Debug, Default)]
pub(super) struct Workspaces {
    list: Vec<Workspace>,
    by_id: HashMap<String, Ws>,
    /// project id → its workspace.
    of_project: HashMap<String, Ws>,
}

impl Workspaces {
    pub(super) fn add(&mut self, workspace: Workspace) -> Ws {
        let ws = Ws(self.list.len());
        self.by_id.insert(workspace.id.clone(), ws);
        self.list.push(workspace);
        ws
    }

    pub(super) fn get(&self, ws: Ws) -> &Workspace {
        &self.list[ws.0]
    }

    pub(super) fn get_mut(&mut self, ws: Ws) -> &mut Workspace {
        &mut self.list[ws.0]
    }

    pub(super) fn find(&self, id: &str) -> Option<Ws> {
        self.by_id.get(id).copied()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Workspace> {
        self.list.iter()
    }

    pub(super) fn project(&self, project_id: &str) -> Option<Ws> {
        self.of_project.get(project_id).copied()
    }

    pub(super) fn assign(&mut self, project_id: String, ws: Ws) {
        self.of_project.insert(project_id, ws);
    }
}

/// The default workspace: the one `SandboxConfig::workspace_id` names.
pub(super) const DEFAULT: Ws = Ws(0);

impl World {
    /// Creates a workspace with a fresh 16-digit id and a zero balance.
    pub fn new_workspace(&mut self, now: OffsetDateTime) -> String {
        let id = self.ids.next_id();
        self.add_workspace(id.clone(), 0, now);
        id
    }

    pub(super) fn add_workspace(&mut self, id: String, balance: i64, now: OffsetDateTime) -> Ws {
        let balance_id = self.ids.next_id();
        self.workspaces.add(Workspace {
            id,
            balance_id,
            balance,
            balance_updated: now,
        })
    }

    /// The workspace with this id.
    pub fn find_workspace(&self, id: &str) -> Option<Ws> {
        self.workspaces.find(id)
    }

    /// The default workspace.
    pub fn default_workspace(&self) -> Ws {
        DEFAULT
    }

    /// The id of the default workspace.
    pub fn default_workspace_id(&self) -> &str {
        &self.workspaces.get(DEFAULT).id
    }

    /// The 16-digit id of workspace `ws`.
    pub fn workspace_id(&self, ws: Ws) -> &str {
        &self.workspaces.get(ws).id
    }

    /// The workspace a registered project acts in.
    pub fn project_workspace(&self, project_id: &str) -> Option<Ws> {
        self.workspaces.project(project_id)
    }

    /// Lets `project/{id}` call the API in workspace `ws` with requests signed by `key`. A
    /// project registered again gets the new key and moves to `ws`.
    pub fn register_project_in(&mut self, id: String, key: PublicKey, ws: Ws) {
        self.workspaces.assign(id.clone(), ws);
        self.projects.insert(id, key);
    }

    /// Lets `project/{id}` call the API with `key`, in its workspace if it already has one,
    /// else in the default workspace.
    pub fn register_project(&mut self, id: String, key: PublicKey) {
        let ws = self.workspaces.project(&id).unwrap_or(DEFAULT);
        self.register_project_in(id, key, ws);
    }

    /// Cents available in workspace `ws`.
    pub fn balance_in(&self, ws: Ws) -> i64 {
        self.workspaces.get(ws).balance
    }

    /// Cents available in the default workspace.
    pub fn balance(&self) -> i64 {
        self.balance_in(DEFAULT)
    }

    /// Moves workspace `ws`'s balance by `cents` (negative: a debit).
    pub(super) fn move_balance(&mut self, ws: Ws, cents: i64, now: OffsetDateTime) {
        let workspace = self.workspaces.get_mut(ws);
        workspace.balance += cents;
        workspace.balance_updated = now;
    }

    /// Adds `cents` to workspace `ws`'s balance from outside Stark's lifecycles: what an
    /// account holder's deposit does. Refuses a non-positive amount.
    pub fn deposit(&mut self, ws: Ws, cents: i64, now: OffsetDateTime) -> Result<i64, String> {
        if cents <= 0 {
            return Err(format!("a deposit must be positive, got {cents} cents"));
        }
        self.move_balance(ws, cents, now);
        Ok(self.balance_in(ws))
    }

    /// `GET /v2/balance`'s one object for workspace `ws`, in Stark's shape.
    pub fn balance_object(&self, ws: Ws) -> serde_json::Value {
        let workspace = self.workspaces.get(ws);
        serde_json::json!({
            "id": workspace.balance_id,
            "amount": workspace.balance,
            "currency": "BRL",
            "updated": timestamp(workspace.balance_updated),
        })
    }

    /// Balance of every workspace, by workspace id.
    pub(super) fn balances(&self) -> impl Iterator<Item = (&str, i64)> {
        self.workspaces.iter().map(|w| (w.id.as_str(), w.balance))
    }
}

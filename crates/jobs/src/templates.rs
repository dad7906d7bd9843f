//! The device templates a job's checks and membership consult, read once per use: which
//! templates a job's `target` names (by template id, or by capability model id as IoT Central's
//! own article does), and their capabilities.

use std::collections::HashMap;

use flotilla_model::job::TemplateLookup;
use flotilla_model::template::Capability;
use flotilla_store::Store;

pub struct Templates {
    /// (template id, capability model id)
    ids: Vec<(String, Option<String>)>,
    capabilities: HashMap<String, Vec<Capability>>,
}

impl Templates {
    pub async fn load(store: &Store) -> flotilla_store::Result<Templates> {
        let ids = store.template_model_ids().await?;
        let mut capabilities = HashMap::new();
        for (id, _) in &ids {
            capabilities.insert(id.clone(), store.template_capabilities(id).await?);
        }
        Ok(Templates { ids, capabilities })
    }

    /// The ids of the templates a target names: the template with that id, or those whose
    /// capability model has that id.
    pub fn resolve(&self, target: &str) -> Vec<String> {
        self.ids
            .iter()
            .filter(|(id, model)| id == target || model.as_deref() == Some(target))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl TemplateLookup for Templates {
    fn capabilities(&self, target: &str) -> Option<Vec<Capability>> {
        let id = self.resolve(target).into_iter().next()?;
        self.capabilities.get(&id).cloned()
    }

    fn exists(&self, template: &str) -> bool {
        self.ids.iter().any(|(id, _)| id == template)
    }
}

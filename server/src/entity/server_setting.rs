//! Server-wide settings generated at first start (the token signing key).

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "server_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub value: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A setting's value may be a secret (the token signing key): never shown.
        f.debug_struct("ServerSetting")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_setting_debug_never_shows_its_value() {
        let setting = super::Model {
            key: "jwt_secret".into(),
            value: "signing-key-1".into(),
        };
        let shown = format!("{setting:?}");
        assert!(shown.contains("jwt_secret"), "{shown}");
        assert!(!shown.contains("signing-key-1"), "{shown}");
    }
}

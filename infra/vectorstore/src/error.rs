use crate::point_id::PointId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecError {
    pub status: u16,
    pub message: String,
}

impl VecError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// Qdrant's 422 for a body that parses but breaks a rule of the schema.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self {
            status: 422,
            message: format!("Validation error in JSON body: {}", message.into()),
        }
    }

    pub(crate) fn wrong_input(message: impl Into<String>) -> Self {
        Self::bad_request(format!("Wrong input: {}", message.into()))
    }

    pub(crate) fn no_collection(name: &str) -> Self {
        Self {
            status: 404,
            message: format!("Not found: Collection `{name}` doesn't exist!"),
        }
    }

    pub fn no_point(id: &PointId) -> Self {
        Self {
            status: 404,
            message: format!("Not found: No point with id {} found", id.to_json()),
        }
    }
}

impl From<rusqlite::Error> for VecError {
    fn from(error: rusqlite::Error) -> Self {
        tracing::error!("vector store: {error}");
        Self {
            status: 500,
            message: "Service internal error: storage failure".into(),
        }
    }
}

pub(crate) type Result<T> = std::result::Result<T, VecError>;

//! One module per command.
pub mod answers;
pub mod cancel;
pub mod dev;
pub mod docs;
pub mod estimate;
pub mod keygen;
pub mod login;
pub mod map;
pub mod new;
pub mod packaging;
pub mod result;
pub mod stats;
pub mod submit;
pub mod tasks;
pub mod token;
pub mod wait;
pub mod workers;

//! `/admin` routes: what an operator (an `admin` token) does to the whole fleet.
pub mod broadcast;
pub mod get_broadcast;

//! The control plane: connections that are not the row path. bb8-postgres pools and plain
//! tokio-postgres connections for look-ups and notifications (directory tables now; health
//! checks and replica lag come with the fan-out work).

pub mod directory;

//! The control plane (under construction).
